import { createPrivateKey, createPublicKey } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import type { JWK } from 'jose';
import Provider, {
  type Adapter,
  type ClientMetadata,
  errors,
  interactionPolicy,
  type KoaContextWithOIDC,
} from 'oidc-provider';
import { API_AUDIENCE, GRANT_CLAIM, ROLE_CLAIM, type Role } from '../api-auth/principal.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import type { OAuthClientSpec } from './clients.ts';
import { createPgAdapterFactory } from './pg-adapter.ts';

/** Where the provider's endpoints live on the public listener. */
export const OAUTH_PREFIX = '/oauth';
/** Non-standard client metadata: which kind of person signs in through this client. */
export const ROLE_METADATA = 'smart_home_role';
/** OpenID scopes of the people's clients: `openid` (an ID token) and `offline_access` (tolerated). */
export const PEOPLE_SCOPES = ['openid', 'offline_access'] as const;
/**
 * The scope of the public API (`urn:smart-home:api`): what a client asks for to get an access token
 * for it. What a token may do is decided by its `role` claim and, per object, by its subject.
 */
export const API_SCOPE = 'api';
/** `acr` of a sign-in, one per role: a session of one role never serves a client of the other. */
export const ACR: Record<Role, string> = {
  resident: 'urn:smart-home:acr:phone-otp',
  operator: 'urn:smart-home:acr:password-totp',
};
/** Routes that load the browser session's account (the sign-in check below then decides). */
const SESSION_ROUTES = new Set(['authorization', 'resume']);

/** Routes of the provider reachable from outside, relative to the prefix (`/authorize/<uid>` is resume). */
const PROVIDER_ROUTES = [
  '/authorize',
  '/par',
  '/token',
  '/revoke',
  '/jwks',
  '/.well-known/openid-configuration',
];
/** Discovery at the issuer's root (OIDC Discovery §4, RFC 8414 §3): served by the provider itself. */
const ROOT_DISCOVERY = new Set([
  '/.well-known/openid-configuration',
  '/.well-known/oauth-authorization-server',
]);

export type PeopleAuthorizationServerOptions = {
  /** The public listener's external URL (`iss`, RFC 9207 `iss` in authorization responses). */
  issuer: string;
  /** ES256 (P-256) private JWK with a kid. */
  signingKey: JWK;
  db: Db;
  clients: readonly OAuthClientSpec[];
  /** Keys signing the provider's cookies, newest first (rotation: add in front). */
  cookieKeys: readonly string[];
  /** RFC 9449 §8 server nonces: 32 bytes, the same on every instance. */
  dpopNonceSecret: Buffer;
  ttl: {
    accessTokenSeconds: number;
    authorizationCodeSeconds: number;
    refreshIdleSeconds: number;
    refreshAbsoluteSeconds: number;
    sessionSeconds: number;
    interactionSeconds: number;
  };
  logger?: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
};

export type PeopleAuthorizationServer = {
  provider: Provider;
  issuer: string;
  /** The public token-signing key set (what `GET /oauth/jwks` serves), for the access-token check. */
  jwks: { keys: JWK[] };
  /** Hands the provider's routes to it before Fastify parses anything; nothing else is reachable. */
  mount(app: FastifyInstance): void;
  roleOf(clientId: string): Role | undefined;
};

/**
 * The authorization server for residents and operators (issue 3): OAuth 2.0 Authorization Code
 * (RFC 6749 §4.1) with PKCE S256 (RFC 7636; oidc-provider knows no `plain`), PAR (RFC 9126), `iss` in
 * authorization responses (RFC 9207), JWT access tokens (RFC 9068) for `urn:smart-home:api`
 * (RFC 8707), refresh tokens rotated on every use with reuse detection (RFC 9700 §4.14.2) and DPoP
 * (RFC 9449). State lives in PostgreSQL/PGlite (`oidc_models`), so instances share it.
 */
export function createPeopleAuthorizationServer(
  opts: PeopleAuthorizationServerOptions,
): PeopleAuthorizationServer {
  const { privateJwk, publicJwk } = es256Keys(opts.signingKey);
  if (opts.cookieKeys.length === 0) throw new TypeError('cookieKeys must not be empty');
  if (opts.dpopNonceSecret.length !== 32) throw new TypeError('dpopNonceSecret must be 32 bytes');
  const { ttl } = opts;
  if (ttl.authorizationCodeSeconds > 60) throw new TypeError('authorization codes live at most 60 s');
  const roles = new Map(opts.clients.map((c) => [c.clientId, c.role] as const));
  // A revoked grant is remembered while any of its access tokens could still be valid (+ clock leeway).
  const storage = createPgAdapterFactory(opts.db, {
    revokedGrantRetentionSeconds: opts.ttl.accessTokenSeconds + 300,
  });
  // Clients are static configuration: never looked up in, nor written to, the database.
  const noClients: Adapter = {
    find: async () => undefined,
    findByUid: async () => undefined,
    findByUserCode: async () => undefined,
    upsert: async () => undefined,
    consume: async () => undefined,
    destroy: async () => undefined,
    revokeByGrantId: async () => undefined,
  };

  const provider = new Provider(opts.issuer, {
    adapter: (name: string) => (name === 'Client' ? noClients : storage(name)),
    clients: opts.clients.map(clientMetadata),
    jwks: { keys: [privateJwk as never] },
    cookies: {
      keys: [...opts.cookieKeys],
      long: { signed: true, httpOnly: true, sameSite: 'lax' },
      short: { signed: true, httpOnly: true, sameSite: 'lax' },
    },
    clientAuthMethods: ['none', 'client_secret_basic'],
    responseTypes: ['code'],
    scopes: [...PEOPLE_SCOPES, API_SCOPE],
    claims: { openid: ['sub'] },
    pkce: { required: () => true },
    routes: {
      authorization: '/authorize',
      pushed_authorization_request: '/par',
      token: '/token',
      revocation: '/revoke',
      jwks: '/jwks',
    },
    clientBasedCORS: () => false,
    extraClientMetadata: { properties: [ROLE_METADATA] },
    allowOmittingSingleRegisteredRedirectUri: false,
    enabledJWA: {
      idTokenSigningAlgValues: ['ES256'],
      dPoPSigningAlgValues: ['ES256', 'EdDSA', 'PS256'],
      requestObjectSigningAlgValues: ['ES256'],
    },
    ttl: {
      AccessToken: ttl.accessTokenSeconds,
      IdToken: ttl.accessTokenSeconds,
      AuthorizationCode: ttl.authorizationCodeSeconds,
      Grant: ttl.refreshAbsoluteSeconds,
      Session: ttl.sessionSeconds,
      Interaction: ttl.interactionSeconds,
      PushedAuthorizationRequest: ttl.authorizationCodeSeconds,
      // Idle lifetime, cut to what is left of the absolute one (counted from the first issue, `iat`
      // of the original token, which every rotation carries on as `iiat`).
      RefreshToken: (_ctx, token) => {
        const first = (token as unknown as { iiat?: number }).iiat ?? Math.floor(Date.now() / 1000);
        const left = first + ttl.refreshAbsoluteSeconds - Math.floor(Date.now() / 1000);
        return Math.max(1, Math.min(ttl.refreshIdleSeconds, left));
      },
    },
    rotateRefreshToken: true,
    // A refresh token for every client allowed the grant type, without OIDC's prompt=consent rule for
    // offline_access: all clients are first-party apps that keep the resident signed in.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    // Token and other endpoints: the account must exist in the table of the client's role (a removed
    // resident or a disabled operator gets no more tokens). Authorization: the provider insists on an
    // account for any session it finds, so the session's account is taken as is here and the login
    // check below asks for a new sign-in when it does not belong to this client's role.
    findAccount: async (ctx, id) => {
      const account = { accountId: id, claims: async () => ({ sub: id }) };
      if (SESSION_ROUTES.has(ctx.oidc.route ?? '')) return account;
      const role = roles.get(ctx.oidc.client?.clientId ?? '');
      if (!role || !(await accountExists(opts.db, role, id))) return undefined;
      return account;
    },
    extraTokenClaims: async (_ctx, token) => {
      const role = roles.get(token.clientId ?? '');
      // `gid`: the grant, so the API can refuse the token at once when the grant is revoked.
      const grantId = (token as { grantId?: unknown }).grantId;
      return role
        ? { [ROLE_CLAIM]: role, ...(typeof grantId === 'string' ? { [GRANT_CLAIM]: grantId } : {}) }
        : undefined;
    },
    // An error the provider cannot send back to the client (bad client or redirect URI): a plain page
    // naming the OAuth error only; the request's own values are not echoed.
    renderError: async (ctx, out) => {
      const code =
        typeof out['error'] === 'string' && /^[a-z_]{1,64}$/.test(out['error'])
          ? out['error']
          : 'server_error';
      const description =
        typeof out['error_description'] === 'string' ? escapeHtml(out['error_description']) : '';
      ctx.type = 'html';
      ctx.set('cache-control', 'no-store');
      ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>${code}</title></head><body><h1>${code}</h1><p>${description}</p></body></html>`;
    },
    interactions: {
      policy: signInPolicy(opts.db, roles),
      url: (_ctx, interaction) => `${OAUTH_PREFIX}/interaction/${interaction.uid}`,
    },
    features: {
      devInteractions: { enabled: false },
      registration: { enabled: false },
      introspection: { enabled: false },
      userinfo: { enabled: false },
      rpInitiatedLogout: { enabled: false },
      revocation: { enabled: true },
      clientCredentials: { enabled: false },
      pushedAuthorizationRequests: { enabled: true, requirePushedAuthorizationRequests: false },
      dPoP: { enabled: true, nonceSecret: opts.dpopNonceSecret },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => API_AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== API_AUDIENCE) throw new errors.InvalidTarget();
          return {
            scope: API_SCOPE,
            audience: API_AUDIENCE,
            accessTokenTTL: ttl.accessTokenSeconds,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256', kid: publicJwk.kid! } },
          };
        },
      },
    },
  });

  if (opts.logger) {
    const logger = opts.logger;
    const log = (level: 'warn' | 'error', msg: string) => (ctx: KoaContextWithOIDC, err: unknown) => {
      const e = err as {
        error?: string;
        error_detail?: string;
        error_description?: string;
        message?: string;
      };
      logger[level](
        {
          error: e.error ?? e.message,
          detail: e.error_detail ?? e.error_description,
          clientId: ctx.oidc?.client?.clientId,
        },
        msg,
      );
    };
    provider.on('grant.error', log('warn', 'people token request refused'));
    provider.on('authorization.error', log('warn', 'people authorization request refused'));
    provider.on('pushed_authorization_request.error', log('warn', 'people PAR refused'));
    provider.on('server_error', log('error', 'people authorization server error'));
  }

  return {
    provider,
    issuer: opts.issuer,
    jwks: { keys: [publicJwk] },
    roleOf: (clientId) => roles.get(clientId),
    mount(app) {
      const callback = provider.callback();
      app.addHook('onRequest', (req, reply, done) => {
        const url = req.raw.url ?? '';
        const q = url.indexOf('?');
        const path = q === -1 ? url : url.slice(0, q);
        let inner: string;
        if (ROOT_DISCOVERY.has(path))
          inner = `/.well-known/openid-configuration${q === -1 ? '' : url.slice(q)}`;
        else if (path.startsWith(`${OAUTH_PREFIX}/`) && isProviderRoute(path.slice(OAUTH_PREFIX.length)))
          inner = url.slice(OAUTH_PREFIX.length);
        else return done();
        reply.hijack();
        // The provider derives its mount path from originalUrl minus url, and builds its URLs from it.
        const raw = req.raw as IncomingMessage & { originalUrl?: string };
        raw.originalUrl = OAUTH_PREFIX + inner;
        raw.url = inner;
        void callback(raw, reply.raw);
      });
    },
  };
}

/**
 * The default prompts, with one more login check: a browser session counts only for a client of the
 * same role (its `acr`) and only while its account still exists (enabled, for operators).
 */
function signInPolicy(db: Db, roles: ReadonlyMap<string, Role>) {
  const policy = interactionPolicy.base();
  const { Check } = interactionPolicy;
  policy.get('login')!.checks.add(
    new Check('smart_home_account', 'the signed-in account cannot use this client', async (ctx) => {
      const { session, client } = ctx.oidc;
      if (!session?.accountId) return Check.REQUEST_PROMPT;
      const role = roles.get(client?.clientId ?? '');
      if (!role || session.acr !== ACR[role]) return Check.REQUEST_PROMPT;
      return (await accountExists(db, role, session.accountId))
        ? Check.NO_NEED_TO_PROMPT
        : Check.REQUEST_PROMPT;
    }),
  );
  return policy;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function isProviderRoute(route: string): boolean {
  if (PROVIDER_ROUTES.includes(route)) return true;
  // The resume endpoint after an interaction: /authorize/<uid>.
  return /^\/authorize\/[A-Za-z0-9_-]{1,64}$/.test(route);
}

function clientMetadata(c: OAuthClientSpec): ClientMetadata {
  return {
    client_id: c.clientId,
    ...(c.clientSecret
      ? { client_secret: c.clientSecret, token_endpoint_auth_method: 'client_secret_basic' }
      : { token_endpoint_auth_method: 'none' }),
    redirect_uris: [...c.redirectUris],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token'],
    scope: [...PEOPLE_SCOPES, API_SCOPE].join(' '),
    application_type: c.redirectUris.every((u) => u.startsWith('https:')) ? 'web' : 'native',
    id_token_signed_response_alg: 'ES256',
    dpop_bound_access_tokens: c.dpopBoundAccessTokens === true,
    [ROLE_METADATA]: c.role,
  } as ClientMetadata;
}

async function accountExists(db: Db, role: Role, id: string): Promise<boolean> {
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id)) return false;
  const row =
    role === 'resident'
      ? await db.one(sql`select 1 as x from residents where id = ${id}`)
      : await db.one(sql`select 1 as x from operators where id = ${id} and enabled`);
  return row !== undefined;
}

function es256Keys(jwk: JWK): { privateJwk: JWK; publicJwk: JWK } {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string' || typeof jwk.kid !== 'string') {
    throw new TypeError('signingKey must be a P-256 (ES256) private JWK with a kid');
  }
  const pub = createPublicKey(createPrivateKey({ key: jwk as never, format: 'jwk' })).export({
    format: 'jwk',
  });
  return {
    privateJwk: { ...jwk, alg: 'ES256', use: 'sig' },
    publicJwk: { kty: 'EC', crv: 'P-256', x: pub.x!, y: pub.y!, kid: jwk.kid, alg: 'ES256', use: 'sig' },
  };
}
