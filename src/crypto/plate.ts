import { createHmac, createSecretKey, type KeyObject } from 'node:crypto';

/** Contract §5.1: not a plate → `400 invalid-plate`. The message never echoes the input. */
export class PlateError extends Error {
  readonly code = 'ERR_INVALID_PLATE';
  constructor(message = 'not a licence plate') {
    super(message);
  }
}

// §5.1 step 2: white space and these separators are deleted.
const SEPARATORS = /[\s\-‐‑‒–—―_.|·/]/gu;
// §5.1 step 4: the 12 Cyrillic letters that look like Latin ones on Russian plates.
const CYRILLIC_TO_LATIN: Record<string, string> = {
  А: 'A',
  В: 'B',
  Е: 'E',
  К: 'K',
  М: 'M',
  Н: 'H',
  О: 'O',
  Р: 'P',
  С: 'C',
  Т: 'T',
  У: 'Y',
  Х: 'X',
};
const LOOKALIKES = /[АВЕКМНОРСТУХ]/gu;
const CANONICAL = /^[A-Z0-9]{2,12}$/;

/** Canonical form v1 of what a camera (or a person) read (contract §5.1). */
export function canonicalisePlate(input: string): string {
  if (typeof input !== 'string' || input.length > 64) throw new PlateError();
  let s = input.normalize('NFKC').toUpperCase();
  s = s.replace(SEPARATORS, '');
  // Step 3: a trailing RUS/RU country code right after a digit.
  s = s.replace(/(?<=[0-9])(RUS|RU)$/u, '');
  s = s.replace(LOOKALIKES, (c) => CYRILLIC_TO_LATIN[c] ?? c);
  if (!CANONICAL.test(s)) throw new PlateError();
  return s;
}

const keyCache = new WeakMap<Uint8Array, KeyObject>();
function hmacKey(key: Uint8Array | KeyObject): KeyObject {
  if (!(key instanceof Uint8Array)) return key;
  let k = keyCache.get(key);
  if (!k) {
    k = createSecretKey(key);
    keyCache.set(key, k);
  }
  return k;
}

/** Contract §5.2: base64url_nopad(HMAC-SHA256(K[kid], UTF-8("plate/v1|" + canonical))). */
export function plateToken(key: Uint8Array | KeyObject, canonical: string): string {
  return createHmac('sha256', hmacKey(key)).update(`plate/v1|${canonical}`, 'utf8').digest('base64url');
}

export function plateTokenFromInput(key: Uint8Array | KeyObject, input: string): string {
  return plateToken(key, canonicalisePlate(input));
}

/**
 * The Russian plate format a canonical plate matches (GOST R 50577), or undefined. Used to give a
 * person a clear message when they register a car; the decision path accepts any canonical plate,
 * since foreign cars pass barriers too.
 */
export function validateRussianPlate(canonical: string): string | undefined {
  const L = '[ABEKMHOPCTYX]';
  const R = '\\d{2,3}';
  const formats: Array<[string, RegExp]> = [
    ['private', new RegExp(`^${L}\\d{3}${L}{2}${R}$`)],
    ['taxi', new RegExp(`^${L}{2}\\d{3}${R}$`)],
    ['trailer', new RegExp(`^${L}{2}\\d{4}${R}$`)],
    ['motorcycle', new RegExp(`^\\d{4}${L}{2}${R}$`)],
    ['transit', new RegExp(`^${L}{2}\\d{3}${L}${R}$`)],
    ['police', new RegExp(`^${L}\\d{4}${R}$`)],
    ['diplomatic', new RegExp(`^\\d{3}(CD|D|T)\\d{3}${R}$`)],
  ];
  return formats.find(([, re]) => re.test(canonical))?.[0];
}
