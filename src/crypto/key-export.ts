import type { KeyObject } from 'node:crypto';
import {
  CompactEncrypt,
  type CompactJWEHeaderParameters,
  type CryptoKey,
  calculateJwkThumbprint,
  compactDecrypt,
  importJWK,
  type JWK,
} from 'jose';

/** One secret key handed over in the ceremony, under the key id the partner will use for it. */
export interface ExportedKey {
  kid: string;
  key: Uint8Array;
}

export interface KeyThumbprint {
  kid: string;
  /** RFC 7638 JWK thumbprint (SHA-256, base64url) of the key as exported. */
  thumbprint: string;
}

export type KeyExportErrorCode =
  /** The export's inputs are unusable (no key, wrong sizes, a recipient that is not a public key). */
  | 'ERR_KEY_EXPORT'
  /** The package does not decrypt with this private key, or is not a well-formed key package. */
  | 'ERR_KEY_IMPORT'
  /** The package uses an algorithm outside the allowlist (RFC 8725 §3.1). */
  | 'ERR_KEY_IMPORT_ALG';

export class KeyExportError extends Error {
  readonly code: KeyExportErrorCode;
  constructor(message: string, code: KeyExportErrorCode = 'ERR_KEY_EXPORT') {
    super(message);
    this.name = 'KeyExportError';
    this.code = code;
  }
}

/** JWE key management: ephemeral-static ECDH with AES key wrap (RFC 7518 §4.6). */
export const KEY_PACKAGE_ALG = 'ECDH-ES+A256KW';
/** JWE content encryption (RFC 7518 §5.3). */
export const KEY_PACKAGE_ENC = 'A256GCM';
/** `cty` of the package: its plaintext is a JWK Set (RFC 7517 §5, media type §8.5). */
export const KEY_PACKAGE_CTY = 'jwk-set+json';

const USE_PLATE = 'plate-token';
const USE_PSEUDONYM = 'pseudonym';
const SECRET_KEY_BYTES = 32;
const MAX_JWE_LENGTH = 64 * 1024;
const KID = /^[\x21-\x7e]{1,100}$/;
const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

interface OctJwk extends JWK {
  kty: 'oct';
  kid: string;
  use: typeof USE_PLATE | typeof USE_PSEUDONYM;
  alg: 'HS256';
  k: string;
}

/**
 * The recipient must be the partner's registered public key-agreement key: EC P-256, or X25519
 * (both supported by jose for ECDH-ES), with a `kid`, and nothing private. A private key given here by
 * mistake would otherwise be accepted by importJWK and its secret half sit next to the package.
 */
function checkRecipient(jwk: JWK): asserts jwk is JWK & { kid: string } {
  if (typeof jwk !== 'object' || jwk === null) throw new KeyExportError('the recipient must be a JWK');
  if (PRIVATE_MEMBERS.some((m) => m in jwk)) {
    throw new KeyExportError('the recipient must be a public key; this JWK holds private material');
  }
  const ec =
    jwk.kty === 'EC' && jwk.crv === 'P-256' && typeof jwk.x === 'string' && typeof jwk.y === 'string';
  const okp = jwk.kty === 'OKP' && jwk.crv === 'X25519' && typeof jwk.x === 'string';
  if (!ec && !okp) throw new KeyExportError('the recipient must be a public EC P-256 or X25519 JWK');
  if (typeof jwk.kid !== 'string' || !KID.test(jwk.kid)) {
    throw new KeyExportError('the recipient JWK needs a kid (printable ASCII, at most 100 characters)');
  }
  if (jwk.alg !== undefined && jwk.alg !== KEY_PACKAGE_ALG) {
    throw new KeyExportError(`the recipient key is restricted to alg ${jwk.alg}, not ${KEY_PACKAGE_ALG}`);
  }
  if (jwk.use !== undefined && jwk.use !== 'enc') {
    throw new KeyExportError('the recipient key is not an encryption key (use)');
  }
  if (jwk.key_ops !== undefined && !jwk.key_ops.some((op) => op === 'deriveKey' || op === 'deriveBits')) {
    throw new KeyExportError('the recipient key does not allow key agreement (key_ops)');
  }
}

function octJwk(k: ExportedKey, use: OctJwk['use']): OctJwk {
  if (typeof k?.kid !== 'string' || !KID.test(k.kid)) {
    throw new KeyExportError('a key id is 1–100 printable ASCII characters');
  }
  if (!(k.key instanceof Uint8Array) || k.key.length !== SECRET_KEY_BYTES) {
    throw new KeyExportError(`key ${k.kid} must be ${SECRET_KEY_BYTES} bytes`);
  }
  // HS256: each key is an HMAC-SHA256 key (contract §5.2 and §7).
  return { kty: 'oct', kid: k.kid, use, alg: 'HS256', k: Buffer.from(k.key).toString('base64url') };
}

const thumbprintsOf = (keys: OctJwk[]): Promise<KeyThumbprint[]> =>
  Promise.all(keys.map(async (k) => ({ kid: k.kid, thumbprint: await calculateJwkThumbprint(k, 'sha256') })));

/**
 * The key ceremony, sending side (DESIGN §4 "keys travel by another channel", §5): a partner's secret
 * keys as a compact JWE (ECDH-ES+A256KW, A256GCM) to the partner's registered public encryption key,
 * written to a file and delivered on another channel — never through an API. The plaintext is a JWK Set
 * of `oct` keys (plus a `partner` member naming whom it is for); the recipient's `kid` is in the
 * protected header. The RFC 7638 thumbprints returned are read back over a second channel so both sides
 * know they hold the same keys; a thumbprint is a SHA-256 of the key and does not reveal it.
 */
export async function exportPartnerKeysAsJwe(opts: {
  plateKeys: ExportedKey[];
  pseudonymKey?: ExportedKey | undefined;
  recipient: JWK;
  partnerId: string;
}): Promise<{ jwe: string; recipientThumbprint: string; keyThumbprints: KeyThumbprint[] }> {
  if (typeof opts.partnerId !== 'string' || opts.partnerId === '') {
    throw new KeyExportError('a partner id is required');
  }
  if (!Array.isArray(opts.plateKeys) || opts.plateKeys.length === 0) {
    throw new KeyExportError('no plate key to export');
  }
  checkRecipient(opts.recipient);
  const keys = [
    ...opts.plateKeys.map((k) => octJwk(k, USE_PLATE)),
    ...(opts.pseudonymKey ? [octJwk(opts.pseudonymKey, USE_PSEUDONYM)] : []),
  ];
  // RFC 7517 §4.5: the kid is how the partner picks a key, so it must name one key only.
  if (new Set(keys.map((k) => k.kid)).size !== keys.length) {
    throw new KeyExportError('every exported key needs its own kid');
  }
  let recipientKey: CryptoKey | Uint8Array;
  try {
    recipientKey = await importJWK(opts.recipient, KEY_PACKAGE_ALG);
  } catch {
    throw new KeyExportError('the recipient JWK is not a valid public key');
  }
  const payload = new TextEncoder().encode(JSON.stringify({ partner: opts.partnerId, keys }));
  const jwe = await new CompactEncrypt(payload)
    .setProtectedHeader({
      alg: KEY_PACKAGE_ALG,
      enc: KEY_PACKAGE_ENC,
      kid: opts.recipient.kid,
      cty: KEY_PACKAGE_CTY,
    })
    .encrypt(recipientKey);
  return {
    jwe,
    recipientThumbprint: await calculateJwkThumbprint(opts.recipient, 'sha256'),
    keyThumbprints: await thumbprintsOf(keys),
  };
}

const importError = (message: string) => new KeyExportError(message, 'ERR_KEY_IMPORT');

/** Checks one JWK of the set; every member we understand must be exactly as exportPartnerKeysAsJwe writes it. */
function checkOctJwk(value: unknown, i: number): OctJwk {
  const k = value as Partial<Record<keyof OctJwk, unknown>> | null;
  if (typeof k !== 'object' || k === null || Array.isArray(k)) throw importError(`key ${i} is not a JWK`);
  if (k.kty !== 'oct') throw importError(`key ${i} is not a symmetric (oct) key`);
  if (typeof k.kid !== 'string' || !KID.test(k.kid)) throw importError(`key ${i} has no valid kid`);
  if (k.use !== USE_PLATE && k.use !== USE_PSEUDONYM) throw importError(`key ${k.kid} has an unknown use`);
  if (k.alg !== 'HS256') throw importError(`key ${k.kid} is not an HS256 key`);
  // Canonical base64url of exactly 32 bytes: Node's decoder would skip stray characters silently.
  if (typeof k.k !== 'string' || !B64URL_32.test(k.k)) throw importError(`key ${k.kid} is not 32 bytes`);
  const bytes = Buffer.from(k.k, 'base64url');
  if (bytes.length !== SECRET_KEY_BYTES || bytes.toString('base64url') !== k.k) {
    throw importError(`key ${k.kid} is not 32 bytes`);
  }
  return { kty: 'oct', kid: k.kid, use: k.use, alg: 'HS256', k: k.k };
}

/**
 * The key ceremony, receiving side (the partner, or our simulator): decrypts with algorithm allowlists
 * (RFC 8725 §3.1: only ECDH-ES+A256KW and A256GCM, whatever the header says) and validates the package
 * strictly. Members it does not know are ignored, as RFC 7517 §4 and §5 require; every member it uses
 * must be exactly right. With `expectedPartnerId`, a package for another partner is refused.
 */
export async function importPartnerKeysFromJwe(
  jwe: string,
  privateKey: JWK | CryptoKey | KeyObject,
  opts: { expectedPartnerId?: string } = {},
): Promise<{
  partner: string;
  plateKeys: ExportedKey[];
  pseudonymKey: ExportedKey | undefined;
  keyThumbprints: KeyThumbprint[];
}> {
  if (typeof jwe !== 'string' || jwe.length > MAX_JWE_LENGTH || jwe.split('.').length !== 5) {
    throw importError('not a compact JWE');
  }
  let key: CryptoKey | KeyObject | Uint8Array;
  let privateKid: string | undefined;
  if (isJwk(privateKey)) {
    if (typeof privateKey.d !== 'string') throw importError('the private key JWK has no private part');
    privateKid = typeof privateKey.kid === 'string' ? privateKey.kid : undefined;
    try {
      key = await importJWK(privateKey, KEY_PACKAGE_ALG);
    } catch {
      throw importError('the private key JWK is not a valid EC P-256 or X25519 key');
    }
  } else {
    key = privateKey;
  }
  let plaintext: Uint8Array;
  let header: CompactJWEHeaderParameters;
  try {
    ({ plaintext, protectedHeader: header } = await compactDecrypt(
      jwe,
      (h) => {
        // A clearer refusal than a failed unwrap when the package names another key.
        if (privateKid !== undefined && h.kid !== undefined && h.kid !== privateKid) {
          throw importError(`the package is for key ${h.kid}, not for ${privateKid}`);
        }
        return key;
      },
      { keyManagementAlgorithms: [KEY_PACKAGE_ALG], contentEncryptionAlgorithms: [KEY_PACKAGE_ENC] },
    ));
  } catch (err) {
    if (err instanceof KeyExportError) throw err;
    const code = (err as { code?: unknown }).code;
    if (code === 'ERR_JOSE_ALG_NOT_ALLOWED') {
      throw new KeyExportError(
        `the package's algorithms are not ${KEY_PACKAGE_ALG} with ${KEY_PACKAGE_ENC}; refused`,
        'ERR_KEY_IMPORT_ALG',
      );
    }
    throw importError(`the key package does not decrypt with this key (${String(code ?? 'error')})`);
  }
  if (header.cty !== KEY_PACKAGE_CTY) throw importError(`the package content type is not ${KEY_PACKAGE_CTY}`);
  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plaintext));
  } catch {
    throw importError('the key package is not JSON');
  }
  const set = body as { partner?: unknown; keys?: unknown } | null;
  if (typeof set !== 'object' || set === null || Array.isArray(set)) throw importError('not a JWK Set');
  if (typeof set.partner !== 'string' || set.partner === '')
    throw importError('the package names no partner');
  if (opts.expectedPartnerId !== undefined && set.partner !== opts.expectedPartnerId) {
    throw importError(`the package is for partner ${set.partner}, not ${opts.expectedPartnerId}`);
  }
  if (!Array.isArray(set.keys) || set.keys.length === 0) throw importError('the package holds no keys');
  const keys = set.keys.map(checkOctJwk);
  if (new Set(keys.map((k) => k.kid)).size !== keys.length) throw importError('two keys share a kid');
  const plate = keys.filter((k) => k.use === USE_PLATE);
  const pseudo = keys.filter((k) => k.use === USE_PSEUDONYM);
  if (plate.length === 0) throw importError('the package holds no plate key');
  if (pseudo.length > 1) throw importError('the package holds more than one pseudonym key');
  const toKey = (k: OctJwk): ExportedKey => ({ kid: k.kid, key: Buffer.from(k.k, 'base64url') });
  return {
    partner: set.partner,
    plateKeys: plate.map(toKey),
    pseudonymKey: pseudo[0] ? toKey(pseudo[0]) : undefined,
    keyThumbprints: await thumbprintsOf(keys),
  };
}

function isJwk(k: JWK | CryptoKey | KeyObject): k is JWK {
  return typeof k === 'object' && k !== null && typeof (k as JWK).kty === 'string';
}
