import assert from 'node:assert/strict';
import { createSecretKey, webcrypto } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  canonicalisePlate,
  isCanonicalPlate,
  MAX_PLATE_INPUT_LENGTH,
  PlateError,
  plateToken,
  plateTokenFromInput,
  validateRussianPlate,
} from './plate.ts';

// Contract §5.3: key = bytes 0x00…0x1f.
const KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
assert.equal(KEY.toString('hex'), '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');

const isPlateError = (e: unknown) => e instanceof PlateError && e.code === 'ERR_INVALID_PLATE';

describe('contract §5.3 test vectors', () => {
  const vectors: Array<[string, string, string]> = [
    ['А123ВС77', 'A123BC77', 'S934r0KVTRBcig1xzAczXAuOlUuifFLFcv1pOCJntm4'],
    ['a123bc77', 'A123BC77', 'S934r0KVTRBcig1xzAczXAuOlUuifFLFcv1pOCJntm4'],
    ['A 123 BC 777 RUS', 'A123BC777', 'Vk-rsuLYUm3YqIZWXjQOEeq75wTLji2IkKC2Vz9RWmE'],
    ['Х001ХХ99', 'X001XX99', 'kUhDNkd5Dy9ELHgPn6TsqeyAc3DQGYyoeefjd5AxbKs'],
    ['ТА12377', 'TA12377', 'TNd9EmhMvCsMvcRBRtQl3FRTKfQHBDWVDVpaEpnTkdk'],
    ['1234АВ50', '1234AB50', 'I8XezJH2VQO12ad6HuLKS5gs3dRStRUyDRebNEbanNY'],
  ];
  test('the Cyrillic vectors really are Cyrillic', () => {
    for (const input of ['А123ВС77', 'Х001ХХ99', 'ТА12377', '1234АВ50'])
      assert.match(input, /\p{Script=Cyrillic}/u);
  });
  for (const [input, canonical, token] of vectors) {
    test(`${input} → ${canonical} → ${token.slice(0, 8)}…`, async () => {
      assert.equal(canonicalisePlate(input), canonical);
      assert.equal(plateToken(KEY, canonical), token);
      assert.equal(plateTokenFromInput(KEY, input), token);
      assert.equal(plateToken(createSecretKey(KEY), canonical), token, 'a KeyObject gives the same token');
      // A second code path: WebCrypto HMAC over the §5.2 message.
      const k = await webcrypto.subtle.importKey('raw', KEY, { name: 'HMAC', hash: 'SHA-256' }, false, [
        'sign',
      ]);
      const mac = await webcrypto.subtle.sign('HMAC', k, new TextEncoder().encode(`plate/v1|${canonical}`));
      assert.equal(Buffer.from(mac).toString('base64url'), token);
    });
  }
  test('Ж123ЖЖ77 is rejected, and the error does not echo it', () => {
    assert.throws(() => canonicalisePlate('Ж123ЖЖ77'), isPlateError);
    assert.throws(() => plateTokenFromInput(KEY, 'Ж123ЖЖ77'), isPlateError);
    try {
      canonicalisePlate('Ж123ЖЖ77');
    } catch (e) {
      assert.ok(!(e as Error).message.includes('Ж') && !(e as Error).message.includes('123'));
      assert.ok(!(e as Error).stack?.includes('Ж123'));
    }
  });
});

describe('§5.1 step by step', () => {
  test('step 1: NFKC (full-width forms, ligatures) then upper case', () => {
    assert.equal(canonicalisePlate('Ａ１２３ＢＣ７７'), 'A123BC77');
    assert.equal(canonicalisePlate('a123bc77'), 'A123BC77');
    assert.equal(canonicalisePlate('а123вс77'), 'A123BC77', 'lower-case Cyrillic');
    assert.equal(canonicalisePlate('\u212A123BC77'), 'K123BC77', 'KELVIN SIGN → K');
    assert.equal(canonicalisePlate('ﬀ12'), 'FF12', 'the ﬀ ligature');
    // NFKC can also turn a symbol into plate letters: the contract says so, and both sides agree.
    assert.equal(canonicalisePlate('№77'), 'NO77');
  });

  test('step 2: every listed separator and white space is deleted', () => {
    for (const sep of ['-', '‐', '‑', '‒', '–', '—', '―', '_', '.', '|', '·', '/']) {
      assert.equal(
        canonicalisePlate(`A${sep}123${sep}BC${sep}77`),
        'A123BC77',
        `U+${sep.codePointAt(0)!.toString(16)}`,
      );
    }
    for (const ws of [
      '\t',
      '\n',
      '\v',
      '\f',
      '\r',
      ' ',
      '\u0085',
      '\u00A0',
      '\u1680',
      '\u2003',
      '\u2028',
      '\u2029',
      '\u202F',
      '\u205F',
      '\u3000',
    ]) {
      assert.equal(
        canonicalisePlate(`${ws}A123${ws}BC77${ws}`),
        'A123BC77',
        `U+${ws.codePointAt(0)!.toString(16)}`,
      );
    }
    // Full-width separators become listed ones under NFKC (step 1 runs first).
    assert.equal(canonicalisePlate('A－123／BC．77'), 'A123BC77');
  });

  test('step 2: nothing else is a separator', () => {
    for (const c of ['\u2212', ',', ':', '+', '\u200B', '\uFEFF', '\u00AD', '*', '\\', '~']) {
      assert.throws(
        () => canonicalisePlate(`A123${c}BC77`),
        isPlateError,
        `U+${c.codePointAt(0)!.toString(16)}`,
      );
    }
  });

  test('step 3: RUS or RU is removed only right after a digit and only at the end', () => {
    assert.equal(canonicalisePlate('A123BC77RUS'), 'A123BC77');
    assert.equal(canonicalisePlate('A123BC77RU'), 'A123BC77');
    assert.equal(canonicalisePlate('a123bc77 rus'), 'A123BC77');
    assert.equal(canonicalisePlate('A123BC77-RU'), 'A123BC77');
    assert.equal(canonicalisePlate('A123BCRUS'), 'A123BCRUS', 'after a letter it stays');
    assert.equal(canonicalisePlate('RUS123'), 'RUS123', 'not at the end');
    assert.equal(canonicalisePlate('A123BC77RUSRUS'.slice(0, 12)), 'A123BC77RUSR', 'only a suffix counts');
    assert.equal(canonicalisePlate('12RUS'), '12');
    assert.throws(() => canonicalisePlate('1RUS'), isPlateError, 'what is left is one character');
    // Checked before step 4: a Cyrillic "РУС" is three plate letters, not a country code.
    assert.equal(canonicalisePlate('A123BC77РУС'), 'A123BC77PYC');
    // Only one suffix goes.
    assert.equal(canonicalisePlate('A123BC77RURU'), 'A123BC77RURU');
    assert.equal(canonicalisePlate('A1RUSRU'), 'A1RUSRU');
  });

  test('step 4: exactly the 12 look-alikes are replaced', () => {
    assert.equal(canonicalisePlate('АВЕКМНОРСТУХ'), 'ABEKMHOPCTYX');
    assert.equal(canonicalisePlate('авекмнорстух'), 'ABEKMHOPCTYX');
    for (const c of 'БГДЁЖЗИЙЛПФЦЧШЩЪЫЬЭЮЯ') {
      assert.throws(() => canonicalisePlate(`A123${c}C77`), isPlateError, c);
    }
  });

  test('step 5 and no guessing: O and 0 stay what they are', () => {
    assert.equal(canonicalisePlate('O000OO77'), 'O000OO77');
    assert.equal(canonicalisePlate('0000OO77'), '0000OO77');
    assert.notEqual(plateToken(KEY, 'O000OO77'), plateToken(KEY, '0000OO77'));
    assert.equal(canonicalisePlate('AB'), 'AB');
    assert.equal(canonicalisePlate('ABCDEFGHIJ12'), 'ABCDEFGHIJ12');
    for (const bad of [
      '',
      ' ',
      '-',
      'A',
      'ABCDEFGHIJ123',
      'A1\u0000B2',
      'A1😀B2',
      'Ё777ЁЁ77',
      'Ä123BC77',
      'A123BC77\u0301',
    ]) {
      assert.throws(() => canonicalisePlate(bad), isPlateError, JSON.stringify(bad));
    }
  });

  test('input length is bounded before any work (not part of the contract)', () => {
    const padded = `A123BC77${' '.repeat(MAX_PLATE_INPUT_LENGTH - 8)}`;
    assert.equal(canonicalisePlate(padded), 'A123BC77');
    assert.throws(() => canonicalisePlate(`${padded} `), isPlateError);
    assert.throws(() => canonicalisePlate('\uFDFA'.repeat(100_000)), isPlateError);
    assert.throws(() => canonicalisePlate(undefined as unknown as string), isPlateError);
    assert.throws(() => canonicalisePlate(123 as unknown as string), isPlateError);
  });
});

describe('plate tokens', () => {
  test('only canonical plates and 32-byte keys are accepted', () => {
    for (const bad of ['a123bc77', 'A123 BC77', 'А123ВС77', 'A123BC77RUS', 'A', '']) {
      assert.throws(() => plateToken(KEY, bad), isPlateError, bad);
    }
    assert.throws(() => plateToken(Buffer.alloc(16), 'A123BC77'), { code: 'ERR_KEY_LENGTH' });
    assert.throws(() => plateToken(createSecretKey(Buffer.alloc(31)), 'A123BC77'), {
      code: 'ERR_KEY_LENGTH',
    });
  });

  test('a key array refilled in place is not served from a stale cache', () => {
    const key = Buffer.from(KEY);
    const before = plateToken(key, 'A123BC77');
    key.fill(7);
    assert.equal(plateToken(key, 'A123BC77'), plateToken(Buffer.alloc(32, 7), 'A123BC77'));
    key.set(KEY);
    assert.equal(plateToken(key, 'A123BC77'), before);
  });

  test('tokens are base64url without padding, 43 characters', () => {
    fc.assert(fc.property(canonicalPlate(), (p) => /^[A-Za-z0-9_-]{43}$/.test(plateToken(KEY, p))));
  });

  test('different plates or different keys give different tokens', () => {
    fc.assert(
      fc.property(
        canonicalPlate(),
        canonicalPlate(),
        (a, b) => a === b || plateToken(KEY, a) !== plateToken(KEY, b),
      ),
    );
    assert.notEqual(plateToken(KEY, 'A123BC77'), plateToken(Buffer.alloc(32, 7), 'A123BC77'));
  });
});

// ---- property tests -------------------------------------------------------------------------------

const LATIN_LOOKALIKES = 'ABEKMHOPCTYX';
const CYRILLIC_LOOKALIKES = 'АВЕКМНОРСТУХ';
const PLATE_CHARS = [...'0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ'];
const SEPARATORS = ['-', '‐', '‑', '‒', '–', '—', '―', '_', '.', '|', '·', '/'];
const WHITE_SPACE = [' ', '\t', '\n', '\u00A0', '\u2009', '\u3000', '\u202F'];
const ENDS_WITH_COUNTRY = /[0-9](RUS|RU)$/;

/** Any canonical plate: the fixed points of §5.1 (no digit + RU/RUS ending, which step 3 would strip). */
function canonicalPlate() {
  return fc
    .array(fc.constantFrom(...PLATE_CHARS), { minLength: 2, maxLength: 12 })
    .map((a) => a.join(''))
    .filter((s) => !ENDS_WITH_COUNTRY.test(s));
}

/** A mostly plate-like string: plate characters in any case and script, separators, RUS, and noise. */
const messyInput = fc
  .array(
    fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...PLATE_CHARS, ...'abcxyz') },
      { weight: 4, arbitrary: fc.constantFrom(...CYRILLIC_LOOKALIKES, ...CYRILLIC_LOOKALIKES.toLowerCase()) },
      { weight: 2, arbitrary: fc.constantFrom(...SEPARATORS, ...WHITE_SPACE) },
      { weight: 1, arbitrary: fc.constantFrom('RUS', 'RU', 'rus', 'Ａ', '７') },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 1 }) },
    ),
    { maxLength: 20 },
  )
  .map((a) => a.join(''));

/**
 * §5.1 written again, differently: per code point, with explicit tables (Unicode 16 White_Space), as a
 * partner might write it. Agreement on random input is what the contract needs.
 */
function referenceCanonical(input: string): string | undefined {
  const whiteSpace = new Set([
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005,
    0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
  ]);
  const separators = new Set([
    0x2d, 0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x5f, 0x2e, 0x7c, 0xb7, 0x2f,
  ]);
  const upper = input.normalize('NFKC').toUpperCase();
  let s = '';
  for (const ch of upper) {
    const cp = ch.codePointAt(0)!;
    if (!whiteSpace.has(cp) && !separators.has(cp)) s += ch;
  }
  for (const suffix of ['RUS', 'RU']) {
    if (s.endsWith(suffix) && /[0-9]/.test(s.charAt(s.length - suffix.length - 1))) {
      s = s.slice(0, -suffix.length);
      break;
    }
  }
  let out = '';
  for (const ch of s) {
    const i = CYRILLIC_LOOKALIKES.indexOf(ch);
    out += i >= 0 ? LATIN_LOOKALIKES[i] : ch;
  }
  if (out.length < 2 || out.length > 12) return undefined;
  for (const ch of out) if (!PLATE_CHARS.includes(ch)) return undefined;
  return out;
}

function tryCanonical(s: string): string | undefined {
  try {
    return canonicalisePlate(s);
  } catch (e) {
    assert.ok(isPlateError(e), 'only PlateError is thrown');
    return undefined;
  }
}

describe('canonicalisation properties (fast-check)', () => {
  test('agrees with an independent implementation of §5.1', () => {
    fc.assert(
      fc.property(fc.oneof(messyInput, fc.string({ unit: 'binary', maxLength: 16 })), (s) => {
        assert.equal(tryCanonical(s), referenceCanonical(s));
      }),
      { numRuns: 5000 },
    );
  });

  test('idempotent, and every output matches ^[A-Z0-9]{2,12}$ and is a canonical plate', () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof(messyInput, fc.string({ maxLength: 16 })), (s) => {
        const c = tryCanonical(s);
        if (c === undefined) return;
        accepted++;
        assert.match(c, /^[A-Z0-9]{2,12}$/);
        assert.equal(canonicalisePlate(c), c);
        assert.ok(isCanonicalPlate(c));
      }),
      { numRuns: 5000 },
    );
    assert.ok(accepted > 1000, `the generator reaches valid plates (${accepted})`);
  });

  test('isCanonicalPlate is exactly "canonicalisation leaves it unchanged"', () => {
    fc.assert(
      fc.property(fc.oneof(canonicalPlate(), messyInput), (s) => {
        assert.equal(isCanonicalPlate(s), tryCanonical(s) === s);
      }),
      { numRuns: 3000 },
    );
  });

  test('Cyrillic look-alikes, case, separators, white space, full width and a RUS suffix do not matter', () => {
    fc.assert(
      fc.property(
        canonicalPlate(),
        fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 13, maxLength: 13 }),
        fc.array(fc.constantFrom('', ...SEPARATORS, ...WHITE_SPACE), { minLength: 13, maxLength: 13 }),
        fc.constantFrom('', 'RUS', 'RU', ' RUS', '-rus', ' ru'),
        (plate, styles, seps, suffix) => {
          let variant = seps[0]!;
          [...plate].forEach((ch, i) => {
            const j = LATIN_LOOKALIKES.indexOf(ch);
            const style = styles[i]!;
            let out = ch;
            if (style === 1 && j >= 0) out = CYRILLIC_LOOKALIKES[j]!;
            else if (style === 2 && j >= 0) out = CYRILLIC_LOOKALIKES[j]!.toLowerCase();
            else if (style === 3) out = ch.toLowerCase();
            else if (style === 4) out = String.fromCodePoint(ch.codePointAt(0)! + 0xfee0); // full width
            variant += out + seps[i + 1]!;
          });
          if (/[0-9]$/.test(plate)) variant += suffix;
          if (variant.length > MAX_PLATE_INPUT_LENGTH) return;
          assert.equal(canonicalisePlate(variant), plate);
          assert.equal(plateTokenFromInput(KEY, variant), plateToken(KEY, plate));
        },
      ),
      { numRuns: 2000 },
    );
  });

  test('other Cyrillic letters anywhere make it no plate', () => {
    const otherCyrillic = fc
      .integer({ min: 0x400, max: 0x4ff })
      .map((cp) => String.fromCodePoint(cp))
      .filter((c) => /\p{L}/u.test(c) && !CYRILLIC_LOOKALIKES.includes(c.normalize('NFKC').toUpperCase()));
    fc.assert(
      fc.property(canonicalPlate(), otherCyrillic, fc.nat(), (plate, c, at) => {
        const i = at % (plate.length + 1);
        assert.throws(() => canonicalisePlate(plate.slice(0, i) + c + plate.slice(i)), isPlateError);
      }),
      { numRuns: 2000 },
    );
  });

  test('control characters (other than white space), emoji and symbols make it no plate', () => {
    const control = fc
      .oneof(fc.integer({ min: 0, max: 0x1f }), fc.integer({ min: 0x7f, max: 0x9f }))
      .map((cp) => String.fromCodePoint(cp))
      .filter((c) => !/\p{White_Space}/u.test(c));
    const emoji = fc.integer({ min: 0x1f300, max: 0x1f64f }).map((cp) => String.fromCodePoint(cp));
    const symbol = fc.constantFrom('#', '@', '!', '?', '€', '§', '\u200D', '\uFFFD', '\uD800');
    fc.assert(
      fc.property(canonicalPlate(), fc.oneof(control, emoji, symbol), fc.nat(), (plate, c, at) => {
        const i = at % (plate.length + 1);
        assert.throws(() => canonicalisePlate(plate.slice(0, i) + c + plate.slice(i)), isPlateError);
      }),
      { numRuns: 2000 },
    );
  });

  test('empty, separators only, one character, and more than 12 characters are no plate', () => {
    const tooLong = fc
      .array(fc.constantFrom(...PLATE_CHARS), { minLength: 13, maxLength: 40 })
      .map((a) => a.join(''))
      .filter((s) => !ENDS_WITH_COUNTRY.test(s) || s.length > 15);
    const nothing = fc
      .array(fc.constantFrom(...SEPARATORS, ...WHITE_SPACE), { maxLength: 10 })
      .map((a) => a.join(''));
    const single = fc.constantFrom(...PLATE_CHARS, ...CYRILLIC_LOOKALIKES);
    fc.assert(
      fc.property(fc.oneof(tooLong, nothing, single), (s) => {
        assert.throws(() => canonicalisePlate(s), isPlateError);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('Russian plate formats (messages only)', () => {
  test('each format is recognised', () => {
    const cases: Array<[string, string | undefined]> = [
      ['A123BC77', 'private'],
      ['A123BC777', 'private'],
      ['X001XX99', 'private'],
      ['TA12377', 'taxi'],
      ['AB123477', 'trailer'],
      ['1234AB50', 'motorcycle'],
      ['AB123C77', 'transit'],
      ['A123477', 'police'],
      ['1234A77', 'police-motorcycle'],
      ['001CD177', 'diplomatic'],
      ['001D12377', 'diplomatic'],
      ['001T123777', 'diplomatic'],
    ];
    for (const [plate, format] of cases) assert.equal(validateRussianPlate(plate), format, plate);
  });

  test('anything else is not recognised', () => {
    for (const plate of [
      'AB123', // no region
      'A000BC77', // serial 000 is not issued
      'A123BC00', // region 00 does not exist
      'A123BC7', // one-digit region
      'A123BC7777', // four-digit region
      'D123BC77', // D is not a plate letter
      'A123BZ77',
      'ABC123',
      'a123bc77', // not canonical
      'A123BC77RUS',
    ]) {
      assert.equal(validateRussianPlate(plate), undefined, plate);
    }
  });

  test('every recognised plate is canonical, and the §5.3 vectors are recognised', () => {
    for (const v of ['A123BC77', 'A123BC777', 'X001XX99', 'TA12377', '1234AB50']) {
      assert.ok(validateRussianPlate(v), v);
    }
    fc.assert(
      fc.property(canonicalPlate(), (p) => {
        const f = validateRussianPlate(p);
        if (f) assert.ok(isCanonicalPlate(p));
      }),
    );
  });
});
