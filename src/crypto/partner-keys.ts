import { createHmac, createSecretKey, hkdfSync, type KeyObject, randomBytes } from 'node:crypto';

/** A partner's master secret: 32 random bytes, stored encrypted, one per key version (DESIGN §5). */
export function createPartnerSecret(): Buffer {
  return randomBytes(32);
}

// HKDF (RFC 5869) with an empty salt: the master secret is already uniformly random, and the info
// labels keep the derived keys independent of each other.
const derive = (master: Uint8Array, info: string) =>
  Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), info, 32));

export function derivePartnerKeys(master: Uint8Array): { plateKey: Buffer; pseudonymKey: Buffer } {
  return {
    plateKey: derive(master, 'smart-home/plate-key/v1'),
    pseudonymKey: derive(master, 'smart-home/pseudonym-key/v1'),
  };
}

const keys = new WeakMap<Uint8Array, KeyObject>();

/** Contract §7: base64url_nopad(HMAC-SHA256(pseudonymKey[partner], "subject/v1|" + residentId)). */
export function pseudonym(pseudonymKey: Uint8Array, residentId: string): string {
  let k = keys.get(pseudonymKey);
  if (!k) {
    k = createSecretKey(pseudonymKey);
    keys.set(pseudonymKey, k);
  }
  return createHmac('sha256', k).update(`subject/v1|${residentId}`, 'utf8').digest('base64url');
}
