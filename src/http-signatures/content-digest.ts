/**
 * RFC 9530 Content-Digest, as contract §3 uses it: `sha-256=:<base64>:` over the exact body bytes.
 */
import { hash, timingSafeEqual } from 'node:crypto';
import { type Dictionary, isInnerList, type Member, parseDictionary } from './structured-fields.ts';

/** `Content-Digest: sha-256=:<b64>:` (RFC 9530 §2, algorithm key from §5 / the IANA registry). */
export function contentDigest(body: Uint8Array): string {
  return `sha-256=:${hash('sha256', body, 'base64')}:`;
}

/**
 * Checks a Content-Digest field value against the exact bytes received (never a re-serialized body).
 *
 * - The value must be a valid RFC 8941 Dictionary (RFC 9530 §2); any syntax error, a repeated key or
 *   an inner list fails.
 * - `sha-256` must be present: contract §3 fixes that algorithm, so a message carrying only another
 *   one is rejected rather than trusted on an algorithm we did not agree to.
 * - A `sha-512` member, when also present, must match too: it is cheap, and a mismatch means the
 *   message was altered.
 * - Other algorithms are ignored, as RFC 9530 §2 allows ("MAY ignore"), including the insecure
 *   ones of §5 (md5, sha, unixsum, ...), which are never used to accept anything.
 * - Comparison is constant-time (timingSafeEqual), after a length check that reveals nothing secret.
 */
export function verifyContentDigest(header: string | undefined, body: Uint8Array): boolean {
  if (typeof header !== 'string' || !(body instanceof Uint8Array)) return false;
  let dict: Dictionary;
  try {
    dict = parseDictionary(header, { rejectDuplicateKeys: true });
  } catch {
    return false;
  }
  const sha256 = dict.get('sha-256');
  if (sha256 === undefined || !matches(sha256, 'sha256', 32, body)) return false;
  const sha512 = dict.get('sha-512');
  return sha512 === undefined || matches(sha512, 'sha512', 64, body);
}

function matches(member: Member, algorithm: 'sha256' | 'sha512', length: number, body: Uint8Array): boolean {
  if (isInnerList(member) || !(member.value instanceof Uint8Array)) return false;
  const expected = member.value;
  if (expected.byteLength !== length) return false;
  return timingSafeEqual(hash(algorithm, body, 'buffer'), expected);
}
