import {
  canonicalisePlate,
  MAX_PLATE_INPUT_LENGTH,
  PlateError,
  type RussianPlateFormat,
  validateRussianPlate,
} from './plate.ts';

/**
 * What a person registers (a car, a guest's car) must look like a Russian plate (GOST R 50577-2018);
 * barrier reads accept any canonical plate (§5.1), since foreign cars pass barriers too. The message
 * of a refusal names what is wrong, by position and rule, and never repeats the input: a plate is
 * personal data and an error body may end up in a log.
 */
export interface CheckedPlate {
  /** Contract §5.1 canonical form (Latin look-alikes): what is encrypted and tokenised. */
  canonical: string;
  format: RussianPlateFormat;
}

const PLATE_LETTERS = 'А, В, Е, К, М, Н, О, Р, С, Т, У, Х';
const ALLOWED_LETTERS = new Set([...'АВЕКМНОРСТУХABEKMHOPCTYX']);
// The separators of §5.1 step 2 (white space and - ‐ ‑ ‒ – — ― _ . | · /).
const SEPARATOR = /^[\p{White_Space}\-\u2010\u2011\u2012\u2013\u2014\u2015_.|\u00B7/]$/u;
const FORMAT_EXAMPLES =
  'private car А123ВС77 or А123ВС777, taxi ТА12377, trailer АВ123477, motorcycle 1234АВ77, transit АВ123С77, police А123477, diplomatic 001CD177 or 001D00177';

// The same shapes as validateRussianPlate with any serial and any 2–3 digit region, to tell "wrong
// region" and "serial 000" apart from "not a plate shape at all".
const L = '[ABEKMHOPCTYX]';
const LOOSE: ReadonlyArray<{ re: RegExp; serial: number }> = [
  { re: new RegExp(`^${L}(\\d{3})${L}{2}(\\d{2,3})$`), serial: 1 },
  { re: new RegExp(`^${L}{2}(\\d{3})(\\d{2,3})$`), serial: 1 },
  { re: new RegExp(`^${L}{2}(\\d{4})(\\d{2,3})$`), serial: 1 },
  { re: new RegExp(`^(\\d{4})${L}{2}(\\d{2,3})$`), serial: 1 },
  { re: new RegExp(`^${L}{2}(\\d{3})${L}(\\d{2,3})$`), serial: 1 },
  { re: new RegExp(`^${L}(\\d{4})(\\d{2,3})$`), serial: 1 },
  { re: new RegExp(`^(\\d{4})${L}(\\d{2,3})$`), serial: 1 },
];
const REGION = /^(?:0[1-9]|[1-9]\d|[1279]\d{2})$/;

/**
 * The first character of `input` that no Russian plate can hold, as a sentence naming its position
 * (1-based, counted in the input as typed), or undefined.
 */
function badCharacter(input: string): string | undefined {
  // A trailing country code (RUS, RU) is §5.1 step 3, not part of the plate.
  const body = input.replace(/(?<=[0-9][\p{White_Space}\-_.|\u00B7/]*)(?:RUS|RU)\p{White_Space}*$/iu, '');
  let position = 0;
  for (const ch of body) {
    position++;
    const n = ch.normalize('NFKC').toUpperCase();
    if (SEPARATOR.test(n) || n === '') continue;
    for (const c of n) {
      if (/^[0-9]$/.test(c) || ALLOWED_LETTERS.has(c)) continue;
      if (/^\p{L}$/u.test(c)) {
        return `character ${position} is not one of the 12 letters used on Russian plates (${PLATE_LETTERS}, or their Latin look-alikes)`;
      }
      return `character ${position} is neither a letter, a digit nor a separator`;
    }
  }
  return undefined;
}

/** Why `input` is not a plate at all (§5.1 failed), as a sentence without the input in it. */
function whyNotAPlate(input: string): string {
  if (input.length > MAX_PLATE_INPUT_LENGTH)
    return `a licence plate is at most ${MAX_PLATE_INPUT_LENGTH} characters`;
  const bad = badCharacter(input);
  if (bad) return bad;
  let significant = 0;
  for (const ch of input.normalize('NFKC')) if (/^[0-9\p{L}]$/u.test(ch)) significant++;
  if (significant === 0) return 'a licence plate is required';
  if (significant < 2) return 'a licence plate has at least 2 letters or digits';
  return 'a licence plate has at most 12 letters and digits';
}

/** Why a canonical plate matches no Russian format. */
function whyNotRussian(canonical: string): string {
  for (const { re, serial } of LOOSE) {
    const m = re.exec(canonical);
    if (!m) continue;
    const number = m[serial]!;
    const region = m[serial + 1]!;
    if (/^0+$/.test(number)) return `the registration number cannot be all zeros (${number.length} digits)`;
    if (!REGION.test(region))
      return 'the region code must be 01–99, or three digits starting with 1, 2, 7 or 9 (102, 750, 777, 977, …)';
  }
  return `the letters and digits do not form a Russian plate: expected ${FORMAT_EXAMPLES}`;
}

/**
 * Checks a plate typed by a person: first the contract's canonical form (§5.1), then a Russian format.
 * Throws PlateError whose message says what is wrong.
 */
export function checkRussianPlate(input: string): CheckedPlate {
  if (typeof input !== 'string') throw new PlateError('a licence plate is required');
  let canonical: string;
  try {
    canonical = canonicalisePlate(input);
  } catch (err) {
    if (err instanceof PlateError) throw new PlateError(whyNotAPlate(input));
    throw err;
  }
  const format = validateRussianPlate(canonical);
  if (!format) {
    // Latin letters without a Cyrillic twin (D, Z, …) appear only in diplomatic series.
    const bad = /^\d{3}(?:CD|D|T)\d/.test(canonical) ? undefined : badCharacter(input);
    throw new PlateError(bad ?? whyNotRussian(canonical));
  }
  return { canonical, format };
}

const CYRILLIC = 'АВЕКМНОРСТУХ';
const LATIN = 'ABEKMHOPCTYX';

/** A canonical plate written as on the plate itself (Cyrillic letters), for showing it to its owner. */
export function displayPlate(canonical: string): string {
  // Diplomatic series letters (CD, D, T) are Latin on the plate.
  if (/^\d{3}(?:CD|D|T)/.test(canonical)) return canonical;
  return canonical.replace(/[ABEKMHOPCTYX]/g, (c) => CYRILLIC[LATIN.indexOf(c)]!);
}
