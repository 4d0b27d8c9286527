import assert from 'node:assert/strict';
import { test } from 'node:test';
import { canonicalJson } from './jcs.ts';

test('RFC 8785 §3.2.2 sorting and §3.2.3 example', () => {
  // RFC 8785 §3.2.3: property names sorted by UTF-16 code units.
  const sortingInput = {
    '\u20ac': 'Euro Sign',
    '\r': 'Carriage Return',
    '\ufb33': 'Hebrew Letter Dalet With Dagesh',
    '1': 'One',
    '\ud83d\ude00': 'Emoji: Grinning Face',
    '\u0080': 'Control',
    '\u00f6': 'Latin Small Letter O With Diaeresis',
  };
  const expectedOrder = ['\r', '1', '\u0080', '\u00f6', '\u20ac', '\ud83d\ude00', '\ufb33'];
  const out = JSON.parse(canonicalJson(sortingInput));
  assert.deepEqual(Object.keys(out).sort(), Object.keys(sortingInput).sort());
  const text = canonicalJson(sortingInput);
  const positions = expectedOrder.map((k) => text.indexOf(JSON.stringify(k)));
  assert.deepEqual(
    [...positions].sort((a, b) => a - b),
    positions,
  );
  // RFC 8785 §3.2.2 example (numbers, literals, strings).
  const input = JSON.parse(
    '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}',
  );
  assert.equal(
    canonicalJson(input),
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
  );
});

test('refuses what has no canonical form', () => {
  for (const bad of [
    Number.NaN,
    Number.POSITIVE_INFINITY,
    1n,
    undefined,
    () => 1,
    { a: undefined },
    '\ud800',
    new Date(0),
  ]) {
    assert.throws(() => canonicalJson(bad), TypeError);
  }
});
