import { hash, timingSafeEqual } from 'node:crypto';
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyGetKey, jwtVerify } from 'jose';

export type TokenErrorCode =
  | 'ERR_TOKEN_MISSING'
  | 'ERR_TOKEN_INVALID'
  | 'ERR_TOKEN_EXPIRED'
  | 'ERR_TOKEN_CERT_MISMATCH';

/** A refused access token. Neither the message nor `reason` ever contains the token or its claims. */
export class TokenError extends Error {
  override readonly name = 'TokenError';
  readonly code: TokenErrorCode;
  /** For logs: the underlying check that failed (a jose error code, or the claim at fault). */
  readonly reason: string | undefined;
  constructor(code: TokenErrorCode, message: string, reason?: string) {
    super(message);
    this.code = code;
    this.reason = reason;
  }
}

export type VerifiedPartnerToken = {
  /** `sub` (= `client_id`, contract §2). */
  clientId: string;
  /** Shared by every request presenting the same token (it is cached): read-only. */
  scopes: ReadonlySet<string>;
  /** Unix seconds. */
  exp: number;
  jti: string;
};

export type AccessTokenVerifierOptions = {
  /** Expected `iss`: the partner authorization server's issuer. */
  issuer: string;
  /** Expected `aud`: `urn:smart-home:partner-api`. */
  audience: string;
  /**
   * The authorization server's public keys, in process (its `jwks`), or a jose key getter. Never a
   * remote URL: issuer and resource server are the same service.
   */
  jwks: JSONWebKeySet | JWTVerifyGetKey;
  /** Leeway on `exp`/`nbf`, seconds. Contract §2: 10. */
  clockToleranceSeconds?: number;
  /** Verified tokens kept (keyed by SHA-256 of the token) until they expire. */
  cacheMaxEntries?: number;
  /** Current time in seconds; for tests. */
  now?: () => number;
  /** Called before each full JWT verification (a cache miss); for metrics and tests. */
  onJwtVerify?: () => void;
};

export type AccessTokenVerifier = {
  verify(token: string, presentedCertThumbprint: string): Promise<VerifiedPartnerToken>;
};

type CacheEntry = { token: VerifiedPartnerToken; cnf: Buffer };

/** Far above any token we issue (~700 bytes); bounds the work an arbitrary header can cause. */
const MAX_TOKEN_LENGTH = 8192;
const THUMBPRINT_FORMAT = /^[A-Za-z0-9_-]{43}$/;

/**
 * The resource server's check of partner access tokens (contract §2): an RFC 9068 JWT access token,
 * `typ: at+jwt` (§4 of it), ES256 only, our issuer and audience, 10 s leeway, certificate-bound
 * (RFC 8705 §3: `cnf.x5t#S256` equals the thumbprint of this connection's client certificate).
 *
 * A verified token is cached until its `exp`, so the hot path is one SHA-256 and one map look-up; the
 * certificate binding and the expiry are still checked on every call.
 */
export function createAccessTokenVerifier(opts: AccessTokenVerifierOptions): AccessTokenVerifier {
  const getKey = typeof opts.jwks === 'function' ? opts.jwks : createLocalJWKSet(opts.jwks);
  const leeway = opts.clockToleranceSeconds ?? 10;
  const maxEntries = opts.cacheMaxEntries ?? 10_000;
  const now = opts.now ?? (() => Date.now() / 1000);
  const cache = new Map<string, CacheEntry>();

  async function verifyJwt(token: string): Promise<CacheEntry> {
    opts.onJwtVerify?.();
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        algorithms: ['ES256'],
        typ: 'at+jwt',
        issuer: opts.issuer,
        audience: opts.audience,
        clockTolerance: leeway,
        currentDate: new Date(now() * 1000),
        requiredClaims: ['sub', 'exp', 'iat', 'jti'],
      }));
    } catch (err) {
      const e = err as { code?: unknown; claim?: unknown };
      const code = typeof e.code === 'string' ? e.code : 'ERR_UNKNOWN';
      const reason = typeof e.claim === 'string' ? `${code}:${e.claim}` : code;
      if (code === 'ERR_JWT_EXPIRED')
        throw new TokenError('ERR_TOKEN_EXPIRED', 'the access token has expired', reason);
      throw new TokenError('ERR_TOKEN_INVALID', 'the access token is not valid', reason);
    }
    const { sub, jti, exp, scope, cnf } = payload;
    const clientId = payload['client_id'];
    const thumbprint = (cnf as Record<string, unknown> | null | undefined)?.['x5t#S256'];
    const invalid = (claim: string) =>
      new TokenError('ERR_TOKEN_INVALID', 'the access token is not valid', `claim:${claim}`);
    if (typeof sub !== 'string' || sub.length === 0) throw invalid('sub');
    // RFC 9068 §2.2: client_id names the client; for client credentials it is also the subject.
    if (clientId !== undefined && clientId !== sub) throw invalid('client_id');
    if (typeof jti !== 'string' || jti.length === 0) throw invalid('jti');
    if (typeof exp !== 'number') throw invalid('exp');
    if (scope !== undefined && typeof scope !== 'string') throw invalid('scope');
    // RFC 8705 §3: without the confirmation claim the token is a bearer token, which the contract refuses.
    if (typeof thumbprint !== 'string' || !THUMBPRINT_FORMAT.test(thumbprint)) throw invalid('cnf');
    const verified: VerifiedPartnerToken = Object.freeze({
      clientId: sub,
      scopes: new Set(typeof scope === 'string' ? scope.split(' ').filter(Boolean) : []),
      exp,
      jti,
    });
    return { token: verified, cnf: Buffer.from(thumbprint) };
  }

  return {
    async verify(token, presentedCertThumbprint) {
      if (typeof token !== 'string' || token.length === 0) {
        throw new TokenError('ERR_TOKEN_MISSING', 'an access token is required');
      }
      if (token.length > MAX_TOKEN_LENGTH) {
        throw new TokenError('ERR_TOKEN_INVALID', 'the access token is not valid', 'length');
      }
      const key = hash('sha256', token, 'base64url');
      let entry = cache.get(key);
      // Same rule as jose: expired once exp is `leeway` seconds in the past.
      if (entry && entry.token.exp <= now() - leeway) {
        cache.delete(key);
        throw new TokenError('ERR_TOKEN_EXPIRED', 'the access token has expired', 'cached');
      }
      if (!entry) {
        entry = await verifyJwt(token);
        // Insertion order is expiry order (every token lives the same 600 s), so dropping the oldest
        // drops the one closest to expiry.
        while (cache.size >= maxEntries) {
          const oldest = cache.keys().next().value;
          if (oldest === undefined) break;
          cache.delete(oldest);
        }
        cache.set(key, entry);
      }
      const presented = Buffer.from(
        typeof presentedCertThumbprint === 'string' ? presentedCertThumbprint : '',
      );
      // Thumbprints are fixed-length (43 chars), so only equal lengths can match and the length leaks nothing.
      if (presented.length !== entry.cnf.length || !timingSafeEqual(presented, entry.cnf)) {
        throw new TokenError(
          'ERR_TOKEN_CERT_MISMATCH',
          'the access token is bound to another client certificate (RFC 8705 §3)',
        );
      }
      return entry.token;
    },
  };
}
