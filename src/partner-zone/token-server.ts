import { randomBytes, type X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import middie from '@fastify/middie';
import type { FastifyInstance } from 'fastify';
import type { JWK } from 'jose';
import Provider, { type Adapter, type AdapterPayload, errors } from 'oidc-provider';
import { certThumbprintS256 } from '../pki/certificates.ts';

export const PARTNER_AUDIENCE = 'urn:smart-home:partner-api';
export const PARTNER_SCOPES = ['barrier:decide', 'face:decide', 'events:write', 'audit:exchange'] as const;

export interface PartnerClient {
  clientId: string;
  scopes: string[];
  /** RFC 8705 x5t#S256 of each client certificate the partner may authenticate with. */
  certThumbprints: string[];
  enabled: boolean;
}

export interface PartnerTokenServerOptions {
  /** The partner listener's base URL: `iss` of every token. */
  issuer: string;
  /** ES256 private JWK with a kid. */
  signingKey: JWK;
  findClient(clientId: string): Promise<PartnerClient | undefined>;
  accessTokenTtlSeconds?: number;
  logger?: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

/**
 * Storage for the provider's short-lived models. Client credentials issue JWT access tokens that are
 * never stored, so this holds only transient state; clients come from the partner registry, so a
 * partner added or changed there is known without a restart.
 */
function adapterFactory(findClient: PartnerTokenServerOptions['findClient']) {
  const store = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  return class MemoryAdapter implements Adapter {
    readonly name: string;
    constructor(name: string) {
      this.name = name;
    }
    #key(id: string) {
      return `${this.name}:${id}`;
    }
    async upsert(id: string, payload: AdapterPayload, expiresIn: number) {
      store.set(this.#key(id), { payload, expiresAt: Date.now() + expiresIn * 1000 });
    }
    async find(id: string): Promise<AdapterPayload | undefined> {
      if (this.name === 'Client') {
        const c = await findClient(id);
        if (!c?.enabled || c.certThumbprints.length === 0) return undefined;
        return {
          client_id: c.clientId,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          token_endpoint_auth_method: 'tls_client_auth',
          // The provider requires one tls_client_auth_* property; its value is checked by
          // certificateSubjectMatches below, which compares certificate thumbprints instead (RFC 8705
          // §2.1.2 leaves the matching rule to the server).
          tls_client_auth_subject_dn: `CN=${c.clientId}`,
          tls_client_certificate_bound_access_tokens: true,
          id_token_signed_response_alg: 'ES256',
          scope: c.scopes.join(' '),
        } as unknown as AdapterPayload;
      }
      const e = store.get(this.#key(id));
      if (!e) return undefined;
      if (e.expiresAt < Date.now()) {
        store.delete(this.#key(id));
        return undefined;
      }
      return e.payload;
    }
    async findByUserCode(): Promise<undefined> {
      return undefined;
    }
    async findByUid(): Promise<undefined> {
      return undefined;
    }
    async consume(id: string) {
      const e = store.get(this.#key(id));
      if (e) e.payload.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id: string) {
      store.delete(this.#key(id));
    }
    async revokeByGrantId(grantId: string) {
      for (const [k, v] of store) if (v.payload.grantId === grantId) store.delete(k);
    }
  };
}

const peerCertificate = (ctx: { socket: unknown }): X509Certificate | undefined => {
  const socket = ctx.socket as TLSSocket;
  return typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
};

/**
 * The partner authorization server (contract §2): OAuth 2.0 client credentials (RFC 6749 §4.4) with
 * `tls_client_auth` and certificate-bound JWT access tokens (RFC 8705, RFC 9068), ES256, 600 s, scopes
 * limited to what the partner was granted. Token at `/oauth/token`, JWKS at `/oauth/jwks`.
 */
export function createPartnerTokenServer(opts: PartnerTokenServerOptions) {
  const ttl = opts.accessTokenTtlSeconds ?? 600;
  const publicJwk: JWK = {
    kty: opts.signingKey.kty,
    crv: opts.signingKey.crv,
    x: opts.signingKey.x,
    y: opts.signingKey.y,
    kid: opts.signingKey.kid,
    alg: 'ES256',
    use: 'sig',
  };
  // certificateSubjectMatches is synchronous: the thumbprints of the client being authenticated are
  // recorded when the provider loads the client through the adapter, just before it is called.
  const registeredThumbprints = new Map<string, string[]>();
  const findClient = async (id: string) => {
    const c = await opts.findClient(id);
    if (c) registeredThumbprints.set(id, c.certThumbprints);
    else registeredThumbprints.delete(id);
    return c;
  };
  const provider = new Provider(opts.issuer, {
    adapter: adapterFactory(findClient),
    jwks: { keys: [{ ...opts.signingKey, alg: 'ES256', use: 'sig' }] as never },
    // Cookies are unused by client credentials; random keys silence the development warning.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clientAuthMethods: ['tls_client_auth'],
    scopes: [...PARTNER_SCOPES],
    responseTypes: ['none'],
    routes: { token: '/token', jwks: '/jwks' },
    ttl: { ClientCredentials: ttl },
    enabledJWA: { clientAuthSigningAlgValues: ['ES256'], idTokenSigningAlgValues: ['ES256'] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        getCertificate: (ctx) => peerCertificate(ctx) as never,
        // The listener already refused certificates not chaining to the partner-issuing CA.
        certificateAuthorized: (ctx) => (ctx.socket as TLSSocket).authorized === true,
        certificateSubjectMatches: (ctx) => {
          const cert = peerCertificate(ctx);
          const clientId = ctx.oidc.client?.clientId;
          if (!cert || !clientId) return false;
          return registeredThumbprints.get(clientId)?.includes(certThumbprintS256(cert.raw)) ?? false;
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => PARTNER_AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource, client) => {
          if (resource !== PARTNER_AUDIENCE) throw new errors.InvalidTarget();
          return {
            scope: String(client.scope ?? ''),
            audience: PARTNER_AUDIENCE,
            accessTokenTTL: ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
  });
  provider.on('server_error', (_ctx, err) => opts.logger?.error({ err }, 'authorization server error'));

  return {
    provider,
    jwks: { keys: [publicJwk] },
    async mount(app: FastifyInstance) {
      // Mounted as middleware: Fastify's body parsers must not consume the provider's form bodies.
      await app.register(middie);
      app.use('/oauth', provider.callback());
    },
  };
}
