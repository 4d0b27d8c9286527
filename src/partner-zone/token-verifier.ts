import { createHash, timingSafeEqual } from 'node:crypto';
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify } from 'jose';

export class TokenError extends Error {
  readonly code: 'ERR_TOKEN_INVALID' | 'ERR_TOKEN_EXPIRED' | 'ERR_TOKEN_CERT_MISMATCH';
  constructor(code: TokenError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

export interface VerifiedPartnerToken {
  clientId: string;
  scopes: ReadonlySet<string>;
  /** Unix seconds. */
  exp: number;
  jti: string;
  certThumbprint: string;
}

export interface AccessTokenVerifierOptions {
  issuer: string;
  audience: string;
  jwks: JSONWebKeySet;
  /** Contract §2: 10 s. */
  clockToleranceSeconds?: number;
  /** Verified tokens kept (by SHA-256 of the token) until they expire. */
  cacheMaxEntries?: number;
  now?: () => number;
}

/**
 * The resource server's check of partner access tokens (contract §2, RFC 9068, RFC 8705 §3): ES256
 * only, `typ: at+jwt`, our issuer and audience, 10 s leeway, and the certificate binding on every
 * request. A verified token is cached until it expires, so the hot path is one hash and one map
 * look-up; the binding and expiry are still checked every time.
 */
export function createAccessTokenVerifier(opts: AccessTokenVerifierOptions) {
  const keys = createLocalJWKSet(opts.jwks);
  const leeway = opts.clockToleranceSeconds ?? 10;
  const max = opts.cacheMaxEntries ?? 10_000;
  const now = opts.now ?? (() => Date.now() / 1000);
  const cache = new Map<string, VerifiedPartnerToken>();
  let jwtVerifications = 0;

  const bound = (t: VerifiedPartnerToken, presented: string) => {
    const a = Buffer.from(t.certThumbprint);
    const b = Buffer.from(presented);
    return a.length === b.length && timingSafeEqual(a, b);
  };

  return {
    /** How many tokens went through full JWT verification (the cache is observable in tests). */
    get jwtVerifications() {
      return jwtVerifications;
    },
    async verify(token: string, presentedCertThumbprint: string): Promise<VerifiedPartnerToken> {
      const key = createHash('sha256').update(token).digest('base64url');
      let t = cache.get(key);
      if (t && t.exp + leeway < now()) {
        cache.delete(key);
        t = undefined;
        throw new TokenError('ERR_TOKEN_EXPIRED', 'the access token has expired');
      }
      if (!t) {
        jwtVerifications++;
        let payload: Record<string, unknown>;
        try {
          ({ payload } = await jwtVerify(token, keys, {
            algorithms: ['ES256'],
            typ: 'at+jwt',
            issuer: opts.issuer,
            audience: opts.audience,
            clockTolerance: leeway,
            currentDate: new Date(now() * 1000),
            requiredClaims: ['exp', 'iat', 'jti', 'sub'],
          }));
        } catch (err) {
          const code = (err as { code?: string }).code;
          throw new TokenError(
            code === 'ERR_JWT_EXPIRED' ? 'ERR_TOKEN_EXPIRED' : 'ERR_TOKEN_INVALID',
            'the access token is not valid',
          );
        }
        const cnf = payload['cnf'] as Record<string, unknown> | undefined;
        const thumbprint = cnf?.['x5t#S256'];
        const clientId = payload['client_id'] ?? payload['sub'];
        if (
          typeof thumbprint !== 'string' ||
          typeof clientId !== 'string' ||
          typeof payload['exp'] !== 'number'
        ) {
          throw new TokenError('ERR_TOKEN_INVALID', 'the access token is not certificate-bound');
        }
        t = {
          clientId,
          scopes: new Set(
            typeof payload['scope'] === 'string' ? payload['scope'].split(' ').filter(Boolean) : [],
          ),
          exp: payload['exp'],
          jti: String(payload['jti']),
          certThumbprint: thumbprint,
        };
        if (cache.size >= max) cache.delete(cache.keys().next().value as string);
        cache.set(key, t);
      }
      if (!bound(t, presentedCertThumbprint)) {
        throw new TokenError('ERR_TOKEN_CERT_MISMATCH', 'the access token is bound to another certificate');
      }
      return t;
    },
  };
}
