// Test support only: a second, independent OpenID Provider (oidc-provider) on loopback over real TLS,
// playing the "external" identity provider (a Keycloak stand-in): its own issuer, its own CA and
// RSA signing key, JWT access tokens for `urn:smart-home:api` carrying Keycloak-style
// `realm_access.roles`. Tokens come from the client credentials grant (the token's `sub` is the client
// id), optionally DPoP-bound: no interactive flow is needed to prove what the resource server accepts.
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { errors } from 'oidc-provider';
import { Agent, fetch as undiciFetch } from 'undici';
import { API_AUDIENCE } from '../../src/api-auth/principal.ts';
import { createMemoryAdapterFactory } from '../../src/partner-zone/oauth/memory-adapter.ts';
import { createCa, issueServerCert } from '../../src/pki/certificates.ts';

export type ExternalIdpClient = { clientId: string; secret: string; roles: string[] };

export type ExternalIdp = {
  /** `https://127.0.0.1:<port>/realms/test` (Keycloak-shaped, so the issuer has a path). */
  issuer: string;
  /** PEM of the CA that signed the IdP's TLS certificate (the trust anchor a verifier needs). */
  caPem: string;
  /** Client credentials grant at the IdP's token endpoint; `dpopProof` makes the token DPoP-bound. */
  token(clientId: string, opts?: { dpopProof?: string; scope?: string }): Promise<string>;
  tokenEndpoint: string;
  /** How many times its discovery document and key set were fetched. */
  fetched: { discovery: number; jwks: number };
  close(): Promise<void>;
};

export async function startExternalIdp(clients: ExternalIdpClient[]): Promise<ExternalIdp> {
  const ca = await createCa({ commonName: 'external idp test CA' });
  const tls = await issueServerCert(ca, { commonName: 'external idp', ipAddresses: ['127.0.0.1'] });
  const server: Server = createServer({ cert: tls.certPem, key: tls.keyPem, minVersion: 'TLSv1.2' });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const prefix = '/realms/test';
  const issuer = `https://127.0.0.1:${port}${prefix}`;

  // Keycloak signs with RS256 by default; a different algorithm and key type than the embedded AS.
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signingJwk: JWK = {
    ...(await exportJWK(privateKey)),
    kid: 'external-rs256',
    alg: 'RS256',
    use: 'sig',
  };
  const rolesOf = new Map(clients.map((c) => [c.clientId, c.roles]));

  const provider = new Provider(issuer, {
    adapter: createMemoryAdapterFactory(),
    ttl: { ClientCredentials: 300 },
    jwks: { keys: [signingJwk as never] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clients: clients.map((c) => ({
      client_id: c.clientId,
      client_secret: c.secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      scope: 'doors:open profile:read',
    })),
    scopes: ['doors:open', 'profile:read'],
    enabledJWA: { dPoPSigningAlgValues: ['ES256', 'EdDSA'] },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      dPoP: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => API_AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== API_AUDIENCE) throw new errors.InvalidTarget();
          return {
            scope: 'doors:open profile:read',
            audience: API_AUDIENCE,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    // What a Keycloak realm role mapper puts in access tokens.
    extraTokenClaims: async (_ctx, token) => {
      const clientId = (token as { clientId?: string }).clientId;
      return { realm_access: { roles: (clientId && rolesOf.get(clientId)) || [] } };
    },
  });

  const fetched = { discovery: 0, jwks: 0 };
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const url = req.url ?? '';
    if (!url.startsWith(`${prefix}/`)) {
      res.statusCode = 404;
      res.end();
      return;
    }
    if (url.startsWith(`${prefix}/.well-known/openid-configuration`)) fetched.discovery++;
    if (url.startsWith(`${prefix}/jwks`)) fetched.jwks++;
    // Mounted under a path: the provider rebuilds its URLs from originalUrl.
    (req as typeof req & { originalUrl?: string }).originalUrl = url;
    req.url = url.slice(prefix.length);
    void callback(req, res);
  });

  const dispatcher = new Agent({ connect: { ca: ca.certPem } });
  const tokenEndpoint = `${issuer}/token`;
  return {
    issuer,
    caPem: ca.certPem,
    tokenEndpoint,
    fetched,
    async token(clientId, opts = {}) {
      const c = clients.find((x) => x.clientId === clientId);
      if (!c) throw new Error(`unknown test client ${clientId}`);
      const res = await undiciFetch(tokenEndpoint, {
        method: 'POST',
        dispatcher,
        headers: {
          authorization: `Basic ${Buffer.from(`${c.clientId}:${c.secret}`).toString('base64')}`,
          'content-type': 'application/x-www-form-urlencoded',
          ...(opts.dpopProof ? { dpop: opts.dpopProof } : {}),
        },
        body: new URLSearchParams({
          grant_type: 'client_credentials',
          resource: API_AUDIENCE,
          scope: opts.scope ?? 'doors:open',
        }).toString(),
      });
      const body = (await res.json()) as { access_token?: string; error?: string };
      if (res.status !== 200 || !body.access_token)
        throw new Error(`external IdP token request failed: ${res.status} ${body.error}`);
      return body.access_token;
    },
    async close() {
      await dispatcher.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
