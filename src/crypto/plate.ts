import { createHmac } from 'node:crypto';
import { requireKeyLength, type SecretKeyInput, secretKeyOf } from './secret-key.ts';

/**
 * Contract §5.1: the value is not a plate → `400 invalid-plate`. The message never echoes the input:
 * what a camera or a person typed is personal data and must not reach logs through an error.
 */
export class PlateError extends Error {
  readonly code = 'ERR_INVALID_PLATE';
  constructor(message = 'not a licence plate') {
    super(message);
    this.name = 'PlateError';
  }
}

/**
 * Longest input looked at, in UTF-16 code units. Not part of the contract: a bound on the work done
 * for hostile input, since NFKC can expand one code point to 18 (U+FDFA). The longest plate with every
 * separator written out ("A 1 2 3 B C 7 7 7 R U S") is 23 units, so nothing real comes near it.
 */
export const MAX_PLATE_INPUT_LENGTH = 64;

// §5.1 step 2: white space (the Unicode White_Space property, not JavaScript's \s, which differs on
// U+0085 and U+FEFF) and exactly these separators: - ‐ ‑ ‒ – — ― _ . | · /
const SEPARATORS = /[\p{White_Space}\-\u2010\u2011\u2012\u2013\u2014\u2015_.|\u00B7/]/gu;
// §5.1 step 3: a trailing RUS or RU country code right after a digit (checked before step 4, so a
// Cyrillic "РУС" is not a country code: it becomes the letters PYC).
const COUNTRY_SUFFIX = /(?<=[0-9])(?:RUS|RU)$/;
// §5.1 step 4: the 12 Cyrillic plate letters and their Latin look-alikes, position for position.
const CYRILLIC = 'АВЕКМНОРСТУХ';
const LATIN = 'ABEKMHOPCTYX';
const LOOKALIKES = /[АВЕКМНОРСТУХ]/g;
const toLatin = (c: string) => LATIN[CYRILLIC.indexOf(c)]!;
// §5.1 step 5.
const CANONICAL = /^[A-Z0-9]{2,12}$/;

/**
 * The canonical form v1 of what a camera (or a person) read, exactly per contract §5.1. Both sides
 * compute it, so any deviation here silently breaks every barrier decision: change it only with a new
 * contract version. Throws PlateError for anything that is not a plate.
 */
export function canonicalisePlate(input: string): string {
  if (typeof input !== 'string' || input.length > MAX_PLATE_INPUT_LENGTH) throw new PlateError();
  // Step 1. toUpperCase is locale-independent (unlike toLocaleUpperCase), as both sides need.
  let s = input.normalize('NFKC').toUpperCase();
  s = s.replace(SEPARATORS, ''); // step 2
  s = s.replace(COUNTRY_SUFFIX, ''); // step 3
  s = s.replace(LOOKALIKES, toLatin); // step 4
  if (!CANONICAL.test(s)) throw new PlateError(); // step 5
  return s;
}

/** True when `value` is already a canonical plate (§5.1 step 5 and a fixed point of the algorithm). */
export function isCanonicalPlate(value: string): boolean {
  return typeof value === 'string' && CANONICAL.test(value) && !COUNTRY_SUFFIX.test(value);
}

/**
 * Contract §5.2: `base64url_nopad(HMAC-SHA256(K[kid], UTF-8("plate/v1|" + canonical)))` under the
 * partner's 32-byte plate key. Refuses a non-canonical plate: a token of an unnormalised string would
 * be valid-looking yet never match anything the partner sends.
 */
export function plateToken(key: SecretKeyInput, canonical: string): string {
  if (!isCanonicalPlate(canonical)) throw new PlateError('not a canonical licence plate');
  requireKeyLength(key, 32, 'a plate key');
  // Node's base64url encoding carries no padding, as §5.2 asks.
  return createHmac('sha256', secretKeyOf(key)).update(`plate/v1|${canonical}`, 'utf8').digest('base64url');
}

/** §5.1 then §5.2 on raw input. Throws PlateError when the input is not a plate. */
export function plateTokenFromInput(key: SecretKeyInput, input: string): string {
  return plateToken(key, canonicalisePlate(input));
}

/** A Russian registration plate format (GOST R 50577-2018), as recognised by validateRussianPlate. */
export type RussianPlateFormat =
  | 'private'
  | 'taxi'
  | 'trailer'
  | 'motorcycle'
  | 'transit'
  | 'police'
  | 'police-motorcycle'
  | 'diplomatic';

const L = '[ABEKMHOPCTYX]';
// Serial numbers start at 001 / 0001. Regions are 01–99, or three digits beginning with 1, 2, 7 or 9
// (102, 250, 716, 777, 977, …): the codes issued so far, and what keeps ТА 123 477 from reading as a taxi.
const N3 = '(?!000)\\d{3}';
const N4 = '(?!0000)\\d{4}';
const REGION = '(?:0[1-9]|[1-9]\\d|[1279]\\d{2})';
const FORMATS: ReadonlyArray<readonly [RussianPlateFormat, RegExp]> = (
  [
    ['private', `${L}${N3}${L}{2}`], // А 123 ВС 77, type 1
    ['taxi', `${L}{2}${N3}`], // ТА 123 77, type 1Б (taxis and route transport)
    ['trailer', `${L}{2}${N4}`], // АВ 1234 77, type 2
    ['motorcycle', `${N4}${L}{2}`], // 1234 АВ 50, type 4 (tractors, type 3, look the same)
    ['transit', `${L}{2}${N3}${L}`], // АВ 123 С 77, type 15
    ['police', `${L}${N4}`], // А 1234 77, type 20
    ['police-motorcycle', `${N4}${L}`], // 1234 А 77, type 22
    ['diplomatic', `${N3}(?:CD\\d{1,3}|[DT]${N3})`], // 001 CD 1 77, 001 D 001 77, types 9 and 10
  ] as const
).map(([name, body]) => [name, new RegExp(`^${body}${REGION}$`)] as const);

/**
 * The Russian plate format a canonical plate matches, or undefined. Only for telling a person that what
 * they registered does not look like a Russian plate; the decision path accepts any canonical plate,
 * since foreign cars pass barriers too. A few strings fit two formats (ТА 123 777 is also the trailer
 * ТА 1234 77 read differently): the first in the order above is returned.
 */
export function validateRussianPlate(canonical: string): RussianPlateFormat | undefined {
  if (!isCanonicalPlate(canonical)) return undefined;
  for (const [name, re] of FORMATS) if (re.test(canonical)) return name;
  return undefined;
}
