import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { requireKeyLength, type SecretKeyInput, secretKeyOf } from './secret-key.ts';

/** Size of a partner master secret and of every key derived from it. */
export const PARTNER_KEY_BYTES = 32;

/** HKDF info labels (RFC 5869 §3.2): one per derived key, versioned so a new derivation is a new label. */
export const PLATE_KEY_INFO = 'smart-home/plate-key/v1';
export const PSEUDONYM_KEY_INFO = 'smart-home/pseudonym-key/v1';

/** A partner's master secret: 32 random bytes, stored encrypted, one per key version (DESIGN §5). */
export function createPartnerSecret(): Buffer {
  return randomBytes(PARTNER_KEY_BYTES);
}

// HKDF-SHA256 with an EMPTY salt (RFC 5869 §2.2: treated as HashLen zero bytes). A salt adds strength
// when the input key material is not uniformly random (§3.1); the master secret is 32 bytes from the
// CSPRNG, so it already is, and an empty salt keeps the derivation reproducible by a partner from the
// master secret and the info labels alone. The info labels separate the keys (§3.2): knowing one
// derived key tells nothing about another.
function derive(master: Uint8Array, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), info, PARTNER_KEY_BYTES));
}

/** The per-partner keys of one master-secret version (DESIGN §5). */
export function derivePartnerKeys(master: Uint8Array): { plateKey: Buffer; pseudonymKey: Buffer } {
  requireKeyLength(master, PARTNER_KEY_BYTES, 'a partner master secret');
  return { plateKey: derive(master, PLATE_KEY_INFO), pseudonymKey: derive(master, PSEUDONYM_KEY_INFO) };
}

/**
 * Contract §7: the `subject` a partner sees for a resident,
 * `base64url_nopad(HMAC-SHA256(pseudonymKey[partner], "subject/v1|" + residentId))` — stable for one
 * partner, unlinkable across partners (DESIGN §3), and not reversible without the key.
 */
export function pseudonym(pseudonymKey: SecretKeyInput, residentId: string): string {
  requireKeyLength(pseudonymKey, PARTNER_KEY_BYTES, 'a pseudonym key');
  if (typeof residentId !== 'string' || residentId === '') {
    throw new TypeError('a resident id is a non-empty string');
  }
  return createHmac('sha256', secretKeyOf(pseudonymKey))
    .update(`subject/v1|${residentId}`, 'utf8')
    .digest('base64url');
}
