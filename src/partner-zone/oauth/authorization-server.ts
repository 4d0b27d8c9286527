import { createPrivateKey, createPublicKey, randomBytes, type X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance } from 'fastify';
import type { JWK } from 'jose';
import Provider, { type Adapter, type AdapterPayload, errors, type KoaContextWithOIDC } from 'oidc-provider';
import { certThumbprintS256 } from '../../pki/certificates.ts';
import { type AdapterFactory, createMemoryAdapterFactory } from './memory-adapter.ts';

/** Contract §2: the one resource server partners get tokens for (RFC 8707 `resource`, token `aud`). */
export const PARTNER_API_AUDIENCE = 'urn:smart-home:partner-api';
/** Contract §2: every scope a partner can ever be granted. */
export const PARTNER_SCOPES = ['barrier:decide', 'face:decide', 'events:write', 'audit:exchange'] as const;
export type PartnerScope = (typeof PARTNER_SCOPES)[number];

/** A partner as the registry knows it: what the token endpoint needs to authenticate and scope it. */
export type PartnerClient = {
  clientId: string;
  scopes: string[];
  /** RFC 8705 §3.1 `x5t#S256` (base64url SHA-256 of the DER) of each certificate it may present. */
  certThumbprints: string[];
  enabled: boolean;
};

export type PartnerAuthorizationServerOptions = {
  /** The partner listener's base URL (`iss` of every token); the endpoints live under `/oauth`. */
  issuer: string;
  /** ES256 (P-256) private JWK with a `kid`: signs the access tokens. */
  signingKey: JWK;
  /** Called on every token request, so a partner added, changed or disabled in the registry is seen at once. */
  findClient: (clientId: string) => Promise<PartnerClient | undefined>;
  /** Contract §2: 600. */
  accessTokenTtlSeconds?: number;
  logger?: { warn(obj: object, msg: string): void };
  /** Storage of the provider's other models; in-memory until the PostgreSQL adapter exists. */
  adapterFactory?: AdapterFactory;
};

export type PartnerAuthorizationServer = {
  provider: Provider;
  /** Serves `POST /oauth/token` and `GET /oauth/jwks` on `app`; nothing else of the provider is reachable. */
  mount(app: FastifyInstance): Promise<void>;
  /** The public signing key set (what `GET /oauth/jwks` serves), for the in-process token verifier. */
  jwks: { keys: JWK[] };
};

/** Non-standard client metadata carrying the pinned certificate thumbprints (see `certificateSubjectMatches`). */
const THUMBPRINTS = 'smart_home_x5t_s256';
/**
 * Placeholder subject value. RFC 8705 §2.1.2 makes a `tls_client_auth` client register exactly one
 * `tls_client_auth_*` subject value, and oidc-provider refuses such a client without one; every partner
 * client registers this fixed `tls_client_auth_san_uri`, and `certificateSubjectMatches` accepts it only
 * when the presented certificate's thumbprint is pinned for the client. No certificate needs this SAN.
 */
const SUBJECT_PLACEHOLDER = 'urn:smart-home:tls-client-auth:x5t-s256-pinned';
const THUMBPRINT_FORMAT = /^[A-Za-z0-9_-]{43}$/;
const OAUTH_PREFIX = '/oauth';
/** Provider routes reachable from outside, relative to the mount prefix (contract §2). */
const PUBLIC_ROUTES = new Set(['/token', '/jwks']);

/**
 * The partner authorization server (contract §2): OAuth 2.0 client credentials (RFC 6749 §4.4) with
 * PKI mutual-TLS client authentication (RFC 8705 §2.1) and certificate-bound (RFC 8705 §3) JWT access
 * tokens (RFC 9068), ES256, for the single resource `urn:smart-home:partner-api` (RFC 8707).
 */
export function createPartnerAuthorizationServer(
  opts: PartnerAuthorizationServerOptions,
): PartnerAuthorizationServer {
  const ttl = opts.accessTokenTtlSeconds ?? 600;
  if (!Number.isSafeInteger(ttl) || ttl <= 0)
    throw new TypeError('accessTokenTtlSeconds must be a positive integer');
  const { privateJwk, publicJwk } = es256Keys(opts.signingKey);
  const storage = opts.adapterFactory ?? createMemoryAdapterFactory();
  const clientAdapter = partnerClientAdapter(opts.findClient);

  const provider = new Provider(opts.issuer, {
    adapter: (name: string) => (name === 'Client' ? clientAdapter : storage(name)),
    jwks: { keys: [privateJwk as never] },
    // Cookies only serve interactive flows, which are unreachable here; a random key keeps the
    // provider from falling back to its development keys.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clientAuthMethods: ['tls_client_auth'],
    scopes: [...PARTNER_SCOPES],
    responseTypes: ['none'],
    routes: { token: '/token', jwks: '/jwks' },
    ttl: { ClientCredentials: ttl },
    clientBasedCORS: () => false,
    enabledJWA: {
      idTokenSigningAlgValues: ['ES256'],
      clientAuthSigningAlgValues: ['ES256'],
    },
    extraClientMetadata: {
      properties: [THUMBPRINTS],
      validator(_ctx, key, value) {
        if (key !== THUMBPRINTS) return;
        if (!Array.isArray(value) || value.length === 0 || !value.every((t) => THUMBPRINT_FORMAT.test(t))) {
          throw new errors.InvalidClientMetadata(`${THUMBPRINTS} must be a non-empty array of x5t#S256`);
        }
      },
    },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      dPoP: { enabled: false },
      introspection: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      registration: { enabled: false },
      revocation: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      userinfo: { enabled: false },
      mTLS: {
        enabled: true,
        tlsClientAuth: true,
        selfSignedTlsClientAuth: false,
        certificateBoundAccessTokens: true,
        getCertificate: (ctx) => peerCertificate(ctx),
        // The partner listener already refuses certificates that do not chain to a partner CA
        // (contract §1); this also fails closed on a listener configured with rejectUnauthorized: false.
        certificateAuthorized: (ctx) => (ctx.socket as TLSSocket).authorized === true,
        // Partners are identified by the exact certificate, not by a subject any certificate from their
        // CA could carry (RFC 8705 §2.1 leaves the matching policy to the server). oidc-provider calls
        // this hook for the client's one registered tls_client_auth_* value; the thumbprints are part of
        // that same client's metadata (loaded for this request, so no shared state and no race), and the
        // check is synchronous as the provider requires. `self_signed_tls_client_auth` (RFC 8705 §2.2)
        // does match by thumbprint natively, but needs the certificates themselves in the client's
        // JWKS and skips the CA check; the contract names tls_client_auth.
        certificateSubjectMatches: (ctx, property, expected) => {
          if (property !== 'tls_client_auth_san_uri' || expected !== SUBJECT_PLACEHOLDER) return false;
          const cert = peerCertificate(ctx);
          const pinned = (ctx.oidc.client as unknown as Record<string, unknown> | undefined)?.[THUMBPRINTS];
          if (!cert || !Array.isArray(pinned)) return false;
          // Thumbprints are public values, so a plain comparison leaks nothing.
          return pinned.includes(certThumbprintS256(cert.raw));
        },
      },
      resourceIndicators: {
        enabled: true,
        // The contract sends `resource`; a client that omits it gets the only resource there is.
        defaultResource: () => PARTNER_API_AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => {
          if (resource !== PARTNER_API_AUDIENCE) throw new errors.InvalidTarget();
          const scope = grantedScope(ctx, client.scope);
          return {
            scope,
            audience: PARTNER_API_AUDIENCE,
            accessTokenTTL: ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256', kid: publicJwk.kid! } },
          };
        },
      },
    },
  });

  if (opts.logger) {
    const logger = opts.logger;
    // error_detail says why (e.g. "client not found"); it never carries a credential.
    const log = (msg: string) => (ctx: KoaContextWithOIDC, err: unknown) => {
      const e = err as {
        error?: string;
        error_description?: string;
        error_detail?: string;
        message?: string;
      };
      logger.warn(
        {
          error: e.error ?? e.message,
          detail: e.error_detail ?? e.error_description,
          clientId: ctx.oidc?.client?.clientId,
        },
        msg,
      );
    };
    provider.on('grant.error', log('partner token request refused'));
    provider.on('server_error', log('partner authorization server error'));
  }

  return {
    provider,
    jwks: { keys: [publicJwk] },
    async mount(app) {
      // The provider reads its own form bodies, so it takes the raw request in onRequest, before any of
      // Fastify's parsing; only the two contract endpoints reach it. Everything else under the prefix
      // (discovery, authorization, PAR, …) falls through to Fastify's 404.
      const callback = provider.callback();
      app.addHook('onRequest', (req, reply, done) => {
        const url = req.raw.url ?? '';
        if (!url.startsWith(`${OAUTH_PREFIX}/`)) return done();
        const q = url.indexOf('?');
        const route = (q === -1 ? url : url.slice(0, q)).slice(OAUTH_PREFIX.length);
        if (!PUBLIC_ROUTES.has(route)) return done();
        reply.hijack();
        // Mounted under a prefix: the provider rebuilds its own URLs from `originalUrl`.
        const raw = req.raw as IncomingMessage & { originalUrl?: string };
        raw.originalUrl = url;
        raw.url = url.slice(OAUTH_PREFIX.length);
        void callback(raw, reply.raw);
      });
    },
  };
}

/**
 * Scopes of the token: the requested ones, each of which must have been granted to the partner —
 * anything else (another partner scope, an unknown one) is `invalid_scope` (RFC 6749 §5.2) rather than
 * silently dropped, and so is a request without `scope`: the contract always names the scopes, and a
 * token with none would only fail later, on every route.
 */
function grantedScope(ctx: KoaContextWithOIDC, clientScope: string | undefined): string {
  const allowed = new Set((clientScope ?? '').split(' ').filter(Boolean));
  const requestedParam = ctx.oidc.params?.['scope'];
  const requested = typeof requestedParam === 'string' ? requestedParam.split(' ').filter(Boolean) : [];
  if (requested.length === 0) throw new errors.InvalidScope('scope is required', '');
  for (const s of requested) {
    if (!allowed.has(s)) throw new errors.InvalidScope('requested scope is not allowed', s);
  }
  return [...new Set(requested)].join(' ');
}

function peerCertificate(ctx: KoaContextWithOIDC): X509Certificate | undefined {
  const socket = ctx.socket as Partial<TLSSocket>;
  return typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
}

/**
 * The `Client` model, read live from the partner registry (the provider caches the parsed client by a
 * hash of this payload, so a changed registry entry becomes a new client at once). Registration is off,
 * so the provider never writes clients.
 */
function partnerClientAdapter(findClient: PartnerAuthorizationServerOptions['findClient']): Adapter {
  const readOnly = async () => {
    throw new Error('partner clients are managed in the partner registry');
  };
  return {
    async find(id) {
      const c = await findClient(id);
      if (!c?.enabled || c.clientId !== id || c.certThumbprints.length === 0) return undefined;
      const scopes = PARTNER_SCOPES.filter((s) => c.scopes.includes(s));
      return {
        client_id: c.clientId,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_uri: SUBJECT_PLACEHOLDER,
        tls_client_certificate_bound_access_tokens: true,
        id_token_signed_response_alg: 'ES256',
        ...(scopes.length > 0 ? { scope: scopes.join(' ') } : {}),
        [THUMBPRINTS]: [...c.certThumbprints],
      } as AdapterPayload;
    },
    findByUid: async () => undefined,
    findByUserCode: async () => undefined,
    upsert: readOnly,
    consume: readOnly,
    destroy: readOnly,
    revokeByGrantId: async () => undefined,
  };
}

/** Checks the signing key is what contract §2 needs (ES256, with a kid) and derives its public half. */
function es256Keys(jwk: JWK): { privateJwk: JWK; publicJwk: JWK } {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string') {
    throw new TypeError('signingKey must be a P-256 (ES256) private JWK');
  }
  if (typeof jwk.kid !== 'string' || jwk.kid.length === 0) throw new TypeError('signingKey must have a kid');
  if (jwk.alg !== undefined && jwk.alg !== 'ES256') throw new TypeError('signingKey alg must be ES256');
  const key = createPrivateKey({ key: jwk as never, format: 'jwk' });
  const pub = createPublicKey(key).export({ format: 'jwk' });
  return {
    privateJwk: { ...jwk, alg: 'ES256', use: 'sig' },
    publicJwk: { kty: 'EC', crv: 'P-256', x: pub.x!, y: pub.y!, kid: jwk.kid, alg: 'ES256', use: 'sig' },
  };
}
