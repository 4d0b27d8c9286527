/**
 * DPoP proofs at the resource server (RFC 9449 §4.3 and §7.1): the proof is a JWT signed by the key
 * the access token is bound to (`cnf.jkt`, RFC 7638 thumbprint), for this method and URL, for this
 * token (`ath`), fresh (`iat` or a server nonce) and never seen before (`jti`).
 */
import { hash, hkdfSync, timingSafeEqual } from 'node:crypto';
import { calculateJwkThumbprint, EmbeddedJWK, type JWK, jwtVerify } from 'jose';
import type { ReplayCache } from '../http-signatures/replay-cache.ts';
import { ApiAuthError, invalidProof } from './errors.ts';

/**
 * The asymmetric JWS algorithms any allowlist here may name: access tokens and DPoP proofs are never
 * `none` (RFC 8725 §3.1) nor a MAC, whose "key" a resource server would have to share.
 */
export const ASYMMETRIC_JWS_ALGORITHMS: readonly string[] = [
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
  'PS256',
  'PS384',
  'PS512',
  'RS256',
  'RS384',
  'RS512',
];

/** Refuses any algorithm outside the asymmetric set: a misconfiguration must not open `none` or HS*. */
export function checkAsymmetricAlgorithms(algs: readonly string[], what: string): string[] {
  if (algs.length === 0) throw new TypeError(`${what}: at least one algorithm is required`);
  for (const a of algs) {
    if (!ASYMMETRIC_JWS_ALGORITHMS.includes(a))
      throw new TypeError(`${what}: "${a}" is not an allowed asymmetric JWS algorithm`);
  }
  return [...algs];
}

/** oidc-provider's nonce step (lib/helpers/challenge.js): one value per 60 s, five steps accepted. */
const NONCE_STEP_SECONDS = 60;
const NONCE_INFO = 'DPoP';

/**
 * Server-issued DPoP nonces (RFC 9449 §8 and §9) derived from a shared 32-byte secret exactly as
 * oidc-provider derives them (`features.dPoP.nonceSecret`): HKDF-SHA256(secret, salt = 64-bit
 * big-endian 60-second step, info "DPoP"). Every instance and the embedded authorization server
 * configured with the same secret accept each other's nonces without shared state.
 */
export class DpopNonces {
  readonly #secret: Buffer;
  readonly #now: () => number;
  #step = Number.NaN;
  #values: Buffer[] = [];

  constructor(secret: Uint8Array, now: () => number = () => Date.now() / 1000) {
    if (secret.byteLength !== 32) throw new TypeError('the DPoP nonce secret must be 32 bytes');
    this.#secret = Buffer.from(secret);
    this.#now = now;
  }

  #window(): Buffer[] {
    const step = Math.floor(this.#now() / NONCE_STEP_SECONDS);
    if (step !== this.#step) {
      this.#step = step;
      this.#values = [step - 2, step - 1, step, step + 1, step + 2].map((s) => {
        const salt = Buffer.alloc(8);
        salt.writeBigUInt64BE(BigInt(s));
        return Buffer.from(hkdfSync('sha256', this.#secret, salt, NONCE_INFO, 32));
      });
    }
    return this.#values;
  }

  /** The nonce clients should use next (the same value oidc-provider hands out). */
  next(): string {
    return this.#window()[3]!.toString('base64url');
  }

  check(nonce: string): boolean {
    const presented = Buffer.from(nonce, 'utf8');
    let ok = false;
    for (const v of this.#window()) {
      const expected = Buffer.from(v.toString('base64url'), 'utf8');
      if (presented.length === expected.length && timingSafeEqual(presented, expected)) ok = true;
    }
    return ok;
  }
}

export type DpopOptions = {
  /** Proof algorithms accepted (asymmetric only). */
  algorithms: readonly string[];
  /** How far `iat` may be from now, seconds (RFC 9449 §11.1: "a few seconds to a few minutes"). */
  maxAgeSeconds: number;
  /** Records each proof's `jti` (keyed by the key thumbprint) so it is accepted once (RFC 9449 §11.1). */
  replayCache: ReplayCache;
  /** Server nonces; when set, a proof carrying a nonce is checked against it. */
  nonces?: DpopNonces;
  /** Every proof must carry a valid server nonce (RFC 9449 §9); needs `nonces`. */
  requireNonce?: boolean;
  now?: () => number;
};

/** Bounds the work an arbitrary header can cause; a proof is a few hundred bytes. */
const MAX_PROOF_LENGTH = 4096;

/** RFC 9449 §4.3 item 9: compare without query and fragment, after URL normalisation. */
export function normaliseHtu(value: string): string | undefined {
  const u = URL.parse(value);
  if (!u || (u.protocol !== 'https:' && u.protocol !== 'http:')) return undefined;
  u.search = '';
  u.hash = '';
  return u.href;
}

/**
 * Checks one DPoP proof for a DPoP-bound access token. Resolves when every RFC 9449 §4.3 and §7.1
 * check passes (the `jti` is then recorded); rejects with `invalid_dpop_proof`, or `use_dpop_nonce`
 * carrying the nonce to use.
 */
export async function verifyDpopProof(
  opts: DpopOptions,
  input: {
    /** Every `DPoP` header value received (RFC 9449 §4.3 item 1: exactly one). */
    proofs: string[];
    method: string;
    /** This request's URL as the client addressed it (scheme, host, path). */
    url: string;
    accessToken: string;
    /** The token's `cnf.jkt`. */
    jkt: string;
  },
): Promise<void> {
  const now = opts.now ?? (() => Date.now() / 1000);
  if (input.proofs.length !== 1) throw invalidProof('dpop:count', 'exactly one DPoP proof is required');
  const proof = input.proofs[0]!;
  if (proof.length === 0 || proof.length > MAX_PROOF_LENGTH || proof.includes(','))
    throw invalidProof('dpop:format');

  let payload: Record<string, unknown>;
  let jwk: JWK;
  try {
    // typ and alg first (jose checks the header before the signature); the key is the one embedded.
    const res = await jwtVerify(proof, EmbeddedJWK, { algorithms: [...opts.algorithms], typ: 'dpop+jwt' });
    payload = res.payload as Record<string, unknown>;
    jwk = res.protectedHeader.jwk as JWK;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    throw invalidProof(`dpop:${typeof code === 'string' ? code : 'verify'}`);
  }
  if (typeof payload['jti'] !== 'string' || payload['jti'].length === 0 || payload['jti'].length > 256)
    throw invalidProof('dpop:jti');
  if (payload['htm'] !== input.method) throw invalidProof('dpop:htm', 'the DPoP proof is for another method');
  const htu = typeof payload['htu'] === 'string' ? normaliseHtu(payload['htu']) : undefined;
  if (htu === undefined || htu !== normaliseHtu(input.url))
    throw invalidProof('dpop:htu', 'the DPoP proof is for another URL');
  // RFC 9449 §7.1: ath is the base64url SHA-256 of the ASCII access token.
  if (payload['ath'] !== hash('sha256', input.accessToken, 'base64url'))
    throw invalidProof('dpop:ath', 'the DPoP proof is for another access token');
  if ((await calculateJwkThumbprint(jwk, 'sha256')) !== input.jkt)
    throw invalidProof('dpop:jkt', 'the DPoP proof is signed by a key the token is not bound to');

  const iat = payload['iat'];
  if (typeof iat !== 'number' || !Number.isFinite(iat)) throw invalidProof('dpop:iat');
  const nonce = payload['nonce'];
  if (nonce !== undefined && typeof nonce !== 'string') throw invalidProof('dpop:nonce');
  // A nonce we cannot check (no shared secret here) proves nothing: the proof is then judged by iat, as
  // if it had none. Clients do send one, learnt from the authorization server on the same origin.
  const checkedNonce = opts.nonces ? nonce : undefined;
  if (checkedNonce !== undefined) {
    if (!opts.nonces!.check(checkedNonce)) throw useNonce(opts.nonces!, 'dpop:nonce-stale');
  } else if (opts.requireNonce) {
    if (!opts.nonces) throw new TypeError('requireNonce needs a nonce secret');
    throw useNonce(opts.nonces, 'dpop:nonce-missing');
  }
  // A valid server nonce proves freshness itself (RFC 9449 §11.1, as oidc-provider does); without one,
  // iat must be recent: a proof from the future is as suspect as a stale one.
  if (checkedNonce === undefined && Math.abs(now() - iat) > opts.maxAgeSeconds) {
    if (opts.nonces) throw useNonce(opts.nonces, 'dpop:iat-window');
    throw invalidProof('dpop:iat-window', 'the DPoP proof is not recent enough');
  }

  // Recorded last, only for proofs that passed every other check, so garbage cannot fill the cache.
  // A nonce keeps a proof acceptable for up to five nonce steps, iat for twice the window.
  const ttl = Math.max(2 * opts.maxAgeSeconds, checkedNonce === undefined ? 0 : 5 * NONCE_STEP_SECONDS);
  let fresh: boolean;
  try {
    fresh = await opts.replayCache.remember(`dpop:${input.jkt}`, payload['jti'], ttl);
  } catch (cause) {
    // Fail closed (the cache cannot decide): the request is refused, as a replay would be.
    const e = invalidProof('dpop:replay-cache-unavailable', 'the DPoP proof cannot be checked now');
    (e as { cause?: unknown }).cause = cause;
    throw e;
  }
  if (!fresh) throw invalidProof('dpop:replay', 'the DPoP proof was already used');
}

function useNonce(nonces: DpopNonces, reason: string): ApiAuthError {
  const e = new ApiAuthError('use_dpop_nonce', 'the DPoP proof must carry the server nonce', reason);
  e.nonce = nonces.next();
  return e;
}
