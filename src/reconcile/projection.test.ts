import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { canonicalJson } from '../util/jcs.ts';
import { uuidv7 } from '../util/uuid.ts';
import {
  barrierDecisionProjection,
  canonicalProjection,
  differingFields,
  doorOpenProjection,
  elementHex,
  eventTime,
  indexProjections,
  type Projection,
  parseElementHex,
  parseProjection,
  parseWindow,
  projectionElement,
} from './projection.ts';

const p: Projection = {
  eventId: '0190f1a2-b3c4-7d5e-8f60-123456789abc',
  action: 'barrier.decision',
  device: 'gate-1',
  subject: null,
  result: 'allow',
  initiator: 'partner',
};

describe('the §8.3 projection', () => {
  test('the element is SHA-256 of the RFC 8785 form, members in code-unit order, extra members left out', () => {
    const canonical =
      '{"action":"barrier.decision","device":"gate-1","eventId":"0190f1a2-b3c4-7d5e-8f60-123456789abc","initiator":"partner","result":"allow","subject":null}';
    const expected = createHash('sha256').update(canonical).digest();
    assert.deepEqual(projectionElement(p), expected);
    const withExtra = { ...p, at: 123 } as Projection;
    assert.deepEqual(projectionElement(withExtra), expected);
    assert.notDeepEqual(projectionElement({ ...p, subject: 'ps_1' }), expected);
  });

  test('the time is the UUIDv7 millisecond timestamp; anything else is refused', () => {
    assert.equal(eventTime(p.eventId), 0x0190f1a2b3c4);
    const now = Date.UTC(2026, 11, 2, 3, 0, 0, 123);
    assert.equal(eventTime(uuidv7(now)), now);
    assert.throws(() => eventTime('0190f1a2-b3c4-4d5e-8f60-123456789abc'), RangeError);
  });

  test('parseProjection accepts exactly the six members with their types', () => {
    assert.deepEqual(parseProjection({ ...p }), p);
    assert.ok('error' in parseProjection({ ...p, extra: 1 }));
    assert.ok('error' in parseProjection({ ...p, action: 'door.close' }));
    assert.ok('error' in parseProjection({ ...p, subject: 7 }));
    assert.ok('error' in parseProjection({ ...p, initiator: 'someone' }));
    assert.ok('error' in parseProjection({ ...p, eventId: 'x' }));
    assert.ok('error' in parseProjection([p]));
  });

  test('differingFields names the changed fields only', () => {
    assert.deepEqual(differingFields(p, { ...p }), []);
    assert.deepEqual(differingFields(p, { ...p, result: 'deny', device: 'gate-2' }), ['device', 'result']);
  });

  test('indexProjections sorts by (time, element) and keeps one of a repeated projection', () => {
    const q = { ...p, eventId: uuidv7(Date.UTC(2020, 0, 1)) };
    const { index, items } = indexProjections([p, q, p]);
    assert.equal(index.size, 2);
    assert.equal(items[0]?.projection.eventId, q.eventId);
    assert.equal(index.time(1), eventTime(p.eventId));
    assert.deepEqual(Buffer.from(index.id(1)), projectionElement(p));
  });
});

describe('the §8.4 wire helpers', () => {
  test('elements as 64 lowercase hex digits, anything else refused', () => {
    const e = projectionElement(p);
    assert.deepEqual(parseElementHex(elementHex(e)), e);
    assert.equal(parseElementHex(elementHex(e).toUpperCase()), undefined);
    assert.equal(parseElementHex(elementHex(e).slice(2)), undefined);
    assert.equal(parseElementHex(7), undefined);
  });

  test('the window is [from, to) in ms from RFC 3339 times; reversed or malformed refused', () => {
    assert.deepEqual(parseWindow('2026-12-02T00:00:00Z', '2026-12-02T01:00:00.5+01:00'), {
      from: Date.UTC(2026, 11, 2),
      to: Date.UTC(2026, 11, 2, 0, 0, 0, 500),
    });
    assert.equal(parseWindow('2026-12-02T01:00:00Z', '2026-12-02T00:00:00Z'), undefined);
    assert.equal(parseWindow('2026-12-02', '2026-12-03T00:00:00Z'), undefined);
    assert.equal(parseWindow(undefined, '2026-12-03T00:00:00Z'), undefined);
  });

  test('a barrier decision and a door open project as both sides record them', () => {
    assert.deepEqual(
      barrierDecisionProjection({ eventId: p.eventId, barrierId: 'gate-1', decision: 'open' }),
      {
        ...p,
        result: 'open',
      },
    );
    assert.deepEqual(
      doorOpenProjection({ commandId: p.eventId, doorId: 'door-3', subject: 'ps', status: 'opened' }),
      {
        eventId: p.eventId,
        action: 'door.open',
        device: 'door-3',
        subject: 'ps',
        result: 'opened',
        initiator: 'smart-home',
      },
    );
  });
});

describe('the canonical form', () => {
  test('is byte for byte canonicalJson of the six members, for awkward strings too', () => {
    const strings = [
      '',
      'a',
      'é',
      '日本',
      '\u0000',
      '\n"\\',
      '\u2028',
      '😀',
      'z'.repeat(300),
      '\u007f',
      '</script>',
    ];
    for (const [i, s] of strings.entries()) {
      const q: Projection = {
        eventId: p.eventId,
        action: 'door.open',
        device: s,
        subject: i % 2 === 0 ? null : s,
        result: strings[(i + 3) % strings.length]!,
        initiator: 'smart-home',
      };
      assert.equal(canonicalProjection(q), canonicalJson(q));
    }
    assert.throws(() => canonicalProjection({ ...p, device: '\ud800' }), TypeError);
  });
});
