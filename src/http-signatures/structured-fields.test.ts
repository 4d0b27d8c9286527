import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Decimal,
  type InnerList,
  type Item,
  isInnerList,
  parseDictionary,
  parseItem,
  StructuredFieldError,
  serializeDictionary,
  serializeItem,
  serializeString,
  Token,
} from './structured-fields.ts';

describe('RFC 8941 dictionary parsing', () => {
  it('parses a Signature-Input member: inner list of strings with parameters (RFC 9421 §4.1)', () => {
    const dict = parseDictionary(
      'sig1=("@method" "@target-uri" "signature";req;key="sig1");created=1700000000;keyid="k1";alg="ed25519"',
    );
    const member = dict.get('sig1') as InnerList;
    assert.ok(isInnerList(member));
    assert.deepEqual(
      member.items.map((i) => i.value),
      ['@method', '@target-uri', 'signature'],
    );
    assert.deepEqual(
      [...member.items[2]!.params],
      [
        ['req', true],
        ['key', 'sig1'],
      ],
    );
    assert.deepEqual(
      [...member.params],
      [
        ['created', 1700000000],
        ['keyid', 'k1'],
        ['alg', 'ed25519'],
      ],
    );
  });

  it('parses byte sequences, tokens, booleans, integers, decimals and bare keys', () => {
    const dict = parseDictionary('a=:AQID:, b=tok/en:x, c=?0, d=-42, e=1.5, f;p=1, g=*');
    const bytes = (dict.get('a') as Item).value;
    assert.ok(bytes instanceof Uint8Array);
    assert.deepEqual([...bytes], [1, 2, 3]);
    assert.ok((dict.get('b') as Item).value instanceof Token);
    assert.equal(((dict.get('b') as Item).value as Token).value, 'tok/en:x');
    assert.equal((dict.get('c') as Item).value, false);
    assert.equal((dict.get('d') as Item).value, -42);
    assert.ok((dict.get('e') as Item).value instanceof Decimal);
    assert.equal(((dict.get('e') as Item).value as Decimal).value, 1.5);
    assert.deepEqual(dict.get('f'), { value: true, params: new Map([['p', 1]]) });
    assert.equal(((dict.get('g') as Item).value as Token).value, '*');
  });

  it('accepts OWS around commas, surrounding SP, and combined field lines', () => {
    const dict = parseDictionary('  a=1 ,\tb=2,c=3  ');
    assert.deepEqual([...dict.keys()], ['a', 'b', 'c']);
  });

  it('unescapes strings', () => {
    assert.equal(parseItem('"a\\"b\\\\c"').value, 'a"b\\c');
  });

  it('lets a repeated key overwrite (RFC 8941 §4.2.2) unless duplicates are rejected', () => {
    assert.equal((parseDictionary('a=1, a=2').get('a') as Item).value, 2);
    assert.throws(() => parseDictionary('a=1, a=2', { rejectDuplicateKeys: true }), StructuredFieldError);
    assert.throws(() => parseDictionary('a=1;p;p', { rejectDuplicateKeys: true }), StructuredFieldError);
  });

  const invalid: Array<[string, string]> = [
    ['trailing comma', 'a=1,'],
    ['empty member', 'a=1,,b=2'],
    ['upper-case key', 'A=1'],
    ['key starting with a digit', '1a=1'],
    ['unterminated string', 'a="abc'],
    ['invalid escape', 'a="\\n"'],
    ['control character in string', 'a="a\tb"'],
    ['non-ASCII in string', 'a="é"'],
    ['integer of 16 digits', 'a=1234567890123456'],
    ['decimal with 4 fractional digits', 'a=1.2345'],
    ['decimal with 13 integer digits', 'a=1234567890123.1'],
    ['decimal ending with a dot', 'a=1.'],
    ['lone minus', 'a=-'],
    ['unterminated inner list', 'a=(1 2'],
    ['inner list items not separated by SP', 'a=("x""y")'],
    ['unterminated byte sequence', 'a=:AQID'],
    ['base64url in byte sequence', 'a=:-_8=:'],
    ['unpadded base64', 'a=:AQI:'],
    ['non-canonical base64 bits', 'a=:AQJ=:'],
    ['invalid boolean', 'a=?2'],
    ['garbage after a member', 'a=1 b=2'],
    ['leading HTAB', '\ta=1'],
    ['date item (RFC 9651, not 8941)', 'a=@1659578233'],
    ['display string (RFC 9651, not 8941)', 'a=%"x"'],
  ];
  for (const [what, input] of invalid) {
    it(`rejects ${what}`, () => {
      assert.throws(() => parseDictionary(input), StructuredFieldError);
    });
  }
});

describe('RFC 8941 serialization', () => {
  it('round-trips a dictionary in canonical form', () => {
    const canonical = 'a=:AQID:;x=?0, b=("s" tok 7);p=1.25, c, d="q\\"uote"';
    assert.equal(serializeDictionary(parseDictionary(canonical)), canonical);
  });

  it('normalises whitespace and writes true parameters as bare keys', () => {
    assert.equal(
      serializeDictionary(parseDictionary('a=(  "x"   "y" );req=?1 ,  b=?1')),
      'a=("x" "y");req, b',
    );
  });

  it('escapes strings and refuses non-printable characters', () => {
    assert.equal(serializeString('a"b\\c'), '"a\\"b\\\\c"');
    assert.throws(() => serializeString('a\nb'), StructuredFieldError);
    assert.throws(() => serializeString('é'), StructuredFieldError);
  });

  it('refuses integers outside RFC 8941 range and non-integers passed as integers', () => {
    assert.throws(() => serializeItem({ value: 1e15, params: new Map() }), StructuredFieldError);
    assert.throws(() => serializeItem({ value: 1.5, params: new Map() }), StructuredFieldError);
    assert.equal(serializeItem({ value: -999_999_999_999_999, params: new Map() }), '-999999999999999');
  });

  it('serializes decimals with at most three fractional digits', () => {
    assert.equal(serializeItem({ value: new Decimal(2), params: new Map() }), '2.0');
    assert.equal(serializeItem({ value: new Decimal(0.1), params: new Map() }), '0.1');
    assert.equal(serializeItem({ value: new Decimal(-1.23456), params: new Map() }), '-1.235');
  });

  it('refuses invalid keys and tokens', () => {
    assert.throws(() => serializeDictionary(new Map([['Bad', { value: 1, params: new Map() }]])));
    assert.throws(() => new Token('1abc'));
  });
});
