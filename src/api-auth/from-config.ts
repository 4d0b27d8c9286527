import { readFileSync } from 'node:fs';
import type { JSONWebKeySet, JWTVerifyGetKey } from 'jose';
import type { Config } from '../config/config.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import type { ReplayCache } from '../http-signatures/replay-cache.ts';
import { isUuid } from '../util/uuid.ts';
import { type ApiTokenVerifier, createApiTokenVerifier } from './access-token.ts';
import { DpopNonces } from './dpop.ts';
import { createExternalIdpVerifier, fetchTrusting } from './external-idp.ts';

export type PublicApiVerifierDeps = {
  config: Config;
  db: Db;
  /** DPoP proof `jti`s (the same memory or Redis cache as the signature nonces; keys are prefixed `dpop:`). */
  replayCache: ReplayCache;
  /** The public listener's external base URL (https): DPoP `htu` is compared against it. */
  publicUrl: string;
  /** The embedded authorization server: its issuer and public keys. Unused when an external IdP is set. */
  embedded?: { issuer: string; jwks: JSONWebKeySet | JWTVerifyGetKey };
  /** oidc-provider's `features.dPoP.nonceSecret` (32 bytes): nonces it issues are accepted here too. */
  dpopNonceSecret?: Uint8Array;
  /** Every DPoP proof must carry a server nonce (mirror the AS's `requireNonce`). */
  requireDpopNonce?: boolean;
};

/**
 * The one access-token verifier of the public API, from configuration: the external IdP when
 * `SMART_HOME_EXTERNAL_IDP_ISSUER` is set, otherwise the embedded authorization server. Exactly one
 * issuer is trusted at a time (no token of the other is ever accepted), so an issuer can never
 * mint subjects of the other's namespace.
 */
export function createPublicApiVerifier(deps: PublicApiVerifierDeps): ApiTokenVerifier {
  const c = deps.config.apiAuth;
  const dpop = {
    algorithms: c.dpopAlgorithms,
    maxAgeSeconds: c.dpopProofMaxAgeSeconds,
    replayCache: deps.replayCache,
    publicUrl: deps.publicUrl,
    ...(deps.dpopNonceSecret ? { nonces: new DpopNonces(deps.dpopNonceSecret) } : {}),
    ...(deps.requireDpopNonce ? { requireNonce: true } : {}),
  };
  const common = {
    db: deps.db,
    clockToleranceSeconds: c.clockToleranceSeconds,
    verifiedCache: { ttlSeconds: c.tokenCacheSeconds, max: c.tokenCacheMax },
    requireDpop: c.requireDpop,
    dpop,
  };
  const ext = c.external;
  if (ext.issuer) {
    return createExternalIdpVerifier({
      ...common,
      issuer: ext.issuer,
      audience: ext.audience,
      algorithms: ext.algorithms,
      acceptJwtTyp: ext.acceptJwtTyp,
      claims: {
        subjectClaim: ext.subjectClaim,
        rolesClaim: ext.rolesClaim,
        operatorRole: ext.operatorRole,
        residentRole: ext.residentRole,
      },
      timeoutMs: ext.timeoutMs,
      jwksCacheMaxAgeMs: ext.jwksCacheMaxAgeMs,
      jwksCooldownMs: ext.jwksCooldownMs,
      ...(ext.caFile ? { fetch: fetchTrusting(readFileSync(ext.caFile, 'utf8')) } : {}),
    });
  }
  if (!deps.embedded) throw new TypeError('no issuer: configure the embedded AS or an external IdP');
  return createApiTokenVerifier({
    ...common,
    kind: 'embedded',
    issuer: deps.embedded.issuer,
    jwks: deps.embedded.jwks,
    algorithms: ['ES256'],
    // Operators of the embedded AS live in `operators` (migration 004): a disabled or deleted operator's
    // token stops working at once, as a removed resident's does.
    operatorActive: async (id) =>
      isUuid(id) &&
      (await deps.db.one(
        // Prepared once per connection: every operator API request runs it.
        sql`select 1 as ok from operators where id = ${id} and enabled`.named('api_operator_active'),
      )) !== undefined,
  });
}
