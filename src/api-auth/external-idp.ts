/**
 * An external identity provider (Keycloak or any OpenID Provider) as the issuer of the public API's
 * access tokens: its metadata from OpenID Connect Discovery 1.0 §4, its keys from `jwks_uri`,
 * fetched with timeouts and cached (jose `createRemoteJWKSet`).
 */

import {
  type CompactJWSHeaderParameters,
  createRemoteJWKSet,
  customFetch,
  type FetchImplementation,
  type FlattenedJWSInput,
  type JWTVerifyGetKey,
} from 'jose';
import { Agent, fetch as undiciFetch } from 'undici';
import {
  type ApiTokenVerifier,
  type ApiTokenVerifierOptions,
  createApiTokenVerifier,
} from './access-token.ts';

export type ExternalIdpOptions = {
  /** The IdP's issuer URL, exactly as its tokens carry it in `iss` (https). */
  issuer: string;
  /** Per HTTP request to the IdP (discovery, key set), milliseconds. */
  timeoutMs: number;
  /** Keys are refetched at most this old, milliseconds. */
  jwksCacheMaxAgeMs: number;
  /** A token with an unknown `kid` triggers a key refetch at most this often, milliseconds. */
  jwksCooldownMs: number;
  /** Where discovery and keys are fetched from; {@link fetchTrusting} for a private CA. */
  fetch?: FetchImplementation;
};

export type ExternalIdpMetadata = { issuer: string; jwksUri: string };

/** Discovery documents are a few KB; anything far larger is refused before parsing. */
const MAX_METADATA_BYTES = 256 * 1024;

export class ExternalIdpError extends Error {
  override readonly name = 'ExternalIdpError';
  readonly code = 'ERR_EXTERNAL_IDP';
}

/** A fetch that trusts `caPem` (plus nothing else) for the IdP's TLS certificate. */
export function fetchTrusting(caPem: string): FetchImplementation {
  const dispatcher = new Agent({ connect: { ca: caPem } });
  return ((url: string, init: Record<string, unknown>) =>
    undiciFetch(url, { ...init, dispatcher } as Parameters<
      typeof undiciFetch
    >[1])) as unknown as FetchImplementation;
}

function httpsUrl(value: unknown, what: string): URL {
  const u = typeof value === 'string' ? URL.parse(value) : null;
  if (u?.protocol !== 'https:') throw new ExternalIdpError(`${what} must be an https URL`);
  return u;
}

/**
 * OpenID Connect Discovery 1.0 §4: GET `<issuer>/.well-known/openid-configuration`; the document's
 * `issuer` must equal the configured one exactly (§4.3, the mix-up defence) and `jwks_uri` be https.
 */
export async function discoverExternalIdp(
  opts: Pick<ExternalIdpOptions, 'issuer' | 'timeoutMs' | 'fetch'>,
): Promise<ExternalIdpMetadata> {
  httpsUrl(opts.issuer, 'the external IdP issuer');
  const url = `${opts.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
  const doFetch = opts.fetch ?? (fetch as unknown as FetchImplementation);
  let text: string;
  try {
    const res = await doFetch(url, {
      method: 'GET',
      headers: new Headers({ accept: 'application/json' }),
      redirect: 'manual',
      signal: AbortSignal.timeout(opts.timeoutMs),
    });
    if (res.status !== 200) throw new ExternalIdpError(`discovery answered ${res.status}`);
    text = await res.text();
  } catch (cause) {
    if (cause instanceof ExternalIdpError) throw cause;
    throw new ExternalIdpError('discovery failed', { cause });
  }
  if (text.length > MAX_METADATA_BYTES) throw new ExternalIdpError('discovery document too large');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new ExternalIdpError('discovery document is not JSON');
  }
  if (!doc || typeof doc !== 'object') throw new ExternalIdpError('discovery document is not an object');
  const meta = doc as Record<string, unknown>;
  if (meta['issuer'] !== opts.issuer)
    throw new ExternalIdpError('discovery document names another issuer (OIDC Discovery §4.3)');
  return { issuer: opts.issuer, jwksUri: httpsUrl(meta['jwks_uri'], 'jwks_uri').href };
}

/**
 * The IdP's keys as a jose key getter. Discovery runs on first use, not at start: the service starts
 * while the IdP is down and API calls are refused (401) until it answers; a failed discovery is retried
 * on a later request, no more often than the cooldown.
 */
export function externalIdpKeys(opts: ExternalIdpOptions): JWTVerifyGetKey {
  let keys: Promise<JWTVerifyGetKey> | undefined;
  let failedAt = Number.NEGATIVE_INFINITY;
  const load = async (): Promise<JWTVerifyGetKey> => {
    const meta = await discoverExternalIdp(opts);
    return createRemoteJWKSet(new URL(meta.jwksUri), {
      timeoutDuration: opts.timeoutMs,
      cacheMaxAge: opts.jwksCacheMaxAgeMs,
      cooldownDuration: opts.jwksCooldownMs,
      ...(opts.fetch ? { [customFetch]: opts.fetch } : {}),
    });
  };
  return async (header: CompactJWSHeaderParameters, token: FlattenedJWSInput) => {
    if (!keys) {
      if (performance.now() - failedAt < opts.jwksCooldownMs)
        throw new ExternalIdpError('the external IdP was unreachable moments ago');
      keys = load();
      keys.catch(() => {
        keys = undefined;
        failedAt = performance.now();
      });
    }
    return (await keys)(header, token);
  };
}

/** The verifier for an external IdP: {@link createApiTokenVerifier} with its keys and the external rules. */
export function createExternalIdpVerifier(
  opts: ExternalIdpOptions &
    Omit<ApiTokenVerifierOptions, 'issuer' | 'jwks' | 'remote' | 'kind'> & {
      claims: NonNullable<ApiTokenVerifierOptions['claims']>;
    },
): ApiTokenVerifier {
  const { timeoutMs, jwksCacheMaxAgeMs, jwksCooldownMs, fetch: f, ...rest } = opts;
  return createApiTokenVerifier({
    ...rest,
    kind: 'external',
    jwks: externalIdpKeys({
      issuer: opts.issuer,
      timeoutMs,
      jwksCacheMaxAgeMs,
      jwksCooldownMs,
      ...(f ? { fetch: f } : {}),
    }),
  });
}
