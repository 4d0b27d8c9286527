import { createSecretKey, type KeyObject } from 'node:crypto';

/** Key material as the callers hold it: raw bytes, or a KeyObject made once (the fastest). */
export type SecretKeyInput = Uint8Array | KeyObject;

interface Cached {
  bytes: Buffer;
  key: KeyObject;
}

// Importing raw bytes into OpenSSL costs more than the MAC itself (≈13 µs against ≈2 µs for an
// HMAC-SHA256 with a ready KeyObject), and the hot paths pass the same Buffer again and again. The cache
// is keyed by the array object, so it dies with it; a copy of the bytes is compared on every hit
// (≈30 ns) so that an array refilled in place (a reused scratch buffer, or one zeroed after use) never
// silently keeps signing with its former contents.
const cache = new WeakMap<Uint8Array, Cached>();

/** The KeyObject of a secret key, imported once per key array (see the cache note above). */
export function secretKeyOf(key: SecretKeyInput): KeyObject {
  if (!(key instanceof Uint8Array)) {
    if (key.type !== 'secret') throw new TypeError('a secret key is required');
    return key;
  }
  const hit = cache.get(key);
  if (hit?.bytes.equals(key)) return hit.key;
  const bytes = Buffer.from(key);
  const entry = { bytes, key: createSecretKey(bytes) };
  cache.set(key, entry);
  return entry.key;
}

/** The length in bytes of a secret key, whichever form it comes in. */
export function secretKeyLength(key: SecretKeyInput): number {
  return key instanceof Uint8Array ? key.length : (key.symmetricKeySize ?? 0);
}

/** A key of the wrong size: a programming or configuration error, never the caller's input. */
export class KeyLengthError extends RangeError {
  readonly code = 'ERR_KEY_LENGTH';
}

/** Throws a KeyLengthError unless `key` has exactly `bytes` bytes; `what` names it (never its value). */
export function requireKeyLength(key: SecretKeyInput, bytes: number, what: string): void {
  if (secretKeyLength(key) !== bytes) throw new KeyLengthError(`${what} must be ${bytes} bytes`);
}
