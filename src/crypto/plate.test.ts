import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  canonicalisePlate,
  PlateError,
  plateToken,
  plateTokenFromInput,
  validateRussianPlate,
} from './plate.ts';

const KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => i));

describe('contract §5.3 test vectors', () => {
  const vectors: Array<[string, string, string]> = [
    ['А123ВС77', 'A123BC77', 'S934r0KVTRBcig1xzAczXAuOlUuifFLFcv1pOCJntm4'],
    ['a123bc77', 'A123BC77', 'S934r0KVTRBcig1xzAczXAuOlUuifFLFcv1pOCJntm4'],
    ['A 123 BC 777 RUS', 'A123BC777', 'Vk-rsuLYUm3YqIZWXjQOEeq75wTLji2IkKC2Vz9RWmE'],
    ['Х001ХХ99', 'X001XX99', 'kUhDNkd5Dy9ELHgPn6TsqeyAc3DQGYyoeefjd5AxbKs'],
    ['ТА12377', 'TA12377', 'TNd9EmhMvCsMvcRBRtQl3FRTKfQHBDWVDVpaEpnTkdk'],
    ['1234АВ50', '1234AB50', 'I8XezJH2VQO12ad6HuLKS5gs3dRStRUyDRebNEbanNY'],
  ];
  for (const [input, canonical, token] of vectors) {
    test(`${input} → ${canonical} → ${token.slice(0, 8)}…`, () => {
      assert.equal(canonicalisePlate(input), canonical);
      assert.equal(plateToken(KEY, canonical), token);
      assert.equal(plateTokenFromInput(KEY, input), token);
    });
  }
  test('Ж123ЖЖ77 is rejected', () => {
    assert.throws(
      () => canonicalisePlate('Ж123ЖЖ77'),
      (e: PlateError) => e.code === 'ERR_INVALID_PLATE' && !e.message.includes('Ж'),
    );
  });
});

const LATIN = 'ABEKMHOPCTYX';
const CYR = 'АВЕКМНОРСТУХ';
const plateChar = fc.constantFrom(...'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ');
const canonicalPlate = fc
  .array(plateChar, { minLength: 2, maxLength: 12 })
  .map((a) => a.join(''))
  .filter((s) => !/[0-9](RUS|RU)$/.test(s));

describe('canonicalisation properties (fast-check)', () => {
  test('idempotent, and the output always matches ^[A-Z0-9]{2,12}$', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (s) => {
        let c: string;
        try {
          c = canonicalisePlate(s);
        } catch (e) {
          return e instanceof PlateError;
        }
        return /^[A-Z0-9]{2,12}$/.test(c) && canonicalisePlate(c) === c;
      }),
      { numRuns: 2000 },
    );
  });

  test('Cyrillic look-alikes, case, separators and a RUS suffix do not change the token', () => {
    fc.assert(
      fc.property(
        canonicalPlate,
        fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }),
        fc.constantFrom(' ', '-', '.', '·', '|', '/', '_', '–'),
        fc.boolean(),
        fc.boolean(),
        (plate, flips, sep, lower, rus) => {
          let variant = [...plate]
            .map((ch, i) => {
              const j = LATIN.indexOf(ch);
              const swapped = j >= 0 && flips[i % 12] ? CYR[j]! : ch;
              return lower ? swapped.toLowerCase() : swapped;
            })
            .join(sep);
          if (rus && /[0-9]$/.test(plate)) variant += ' RUS';
          return plateTokenFromInput(KEY, variant) === plateToken(KEY, plate);
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('other Cyrillic letters, control characters, emoji, empty and over-long input are rejected', () => {
    const junk = fc.oneof(
      fc.constantFrom(
        '',
        ' ',
        '-',
        'A',
        'Ж123ЖЖ77',
        'Б001ББ99',
        'A1\u0000B2',
        'A1😀B2',
        'A'.repeat(13),
        'Ё777ЁЁ77',
      ),
      fc
        .tuple(canonicalPlate, fc.constantFrom('Ж', 'Б', 'Д', 'Щ', '😀', '\u0007', '#', '@'))
        .map(([p, bad]) => p + bad),
    );
    fc.assert(
      fc.property(junk, (s) => {
        assert.throws(() => canonicalisePlate(s), PlateError);
      }),
    );
  });

  test('different canonical plates get different tokens; another key, another token', () => {
    fc.assert(
      fc.property(
        canonicalPlate,
        canonicalPlate,
        (a, b) => a === b || plateToken(KEY, a) !== plateToken(KEY, b),
      ),
    );
    assert.notEqual(plateToken(KEY, 'A123BC77'), plateToken(Buffer.alloc(32, 7), 'A123BC77'));
  });
});

test('Russian formats are recognised for clear messages', () => {
  assert.equal(validateRussianPlate('A123BC77'), 'private');
  assert.equal(validateRussianPlate('A123BC777'), 'private');
  assert.equal(validateRussianPlate('TA12377'), 'taxi');
  assert.equal(validateRussianPlate('1234AB50'), 'motorcycle');
  assert.equal(validateRussianPlate('AB123'), undefined);
});
