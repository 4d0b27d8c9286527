import { readFileSync } from 'node:fs';
import { type Static, Type as T } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import YAML from 'yaml';
import type { Role } from '../api-auth/principal.ts';

/**
 * OAuth clients of the people's authorization server (the mobile app, the operator console), declared
 * in the file named by SMART_HOME_OAUTH_CLIENTS_FILE. Each client serves one role: its sign-in page is
 * the phone + code form (resident) or the password + TOTP form (operator), and its tokens carry that
 * `role`. All are first-party, so no consent page is shown.
 */
const RedirectUri = T.String({ minLength: 1, maxLength: 2000 });
export const OAuthClientSpec = T.Object(
  {
    clientId: T.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' }),
    role: T.Union([T.Literal('resident'), T.Literal('operator')]),
    /** Exact-match redirect URIs (RFC 9700 §4.1.3). */
    redirectUris: T.Array(RedirectUri, { minItems: 1, maxItems: 20 }),
    /** RFC 9449 §5.2 `dpop_bound_access_tokens`: every token request must carry a DPoP proof. */
    dpopBoundAccessTokens: T.Optional(T.Boolean()),
    /**
     * A confidential client (server-side console): `client_secret_basic`. Absent: a public client
     * (`token_endpoint_auth_method: none`), protected by PKCE (and DPoP where required).
     */
    clientSecret: T.Optional(T.String({ minLength: 32, maxLength: 256 })),
  },
  { additionalProperties: false },
);
export type OAuthClientSpec = Static<typeof OAuthClientSpec>;

export const OAuthClientsFile = T.Object(
  { clients: T.Array(OAuthClientSpec, { maxItems: 100 }) },
  { additionalProperties: false },
);

export class OAuthClientsError extends Error {
  readonly code = 'ERR_OAUTH_CLIENTS';
}

export function parseOAuthClients(data: unknown, where = 'OAuth clients'): OAuthClientSpec[] {
  if (!Value.Check(OAuthClientsFile, data)) {
    const first = Value.Errors(OAuthClientsFile, data).First();
    throw new OAuthClientsError(`${where}: ${first?.path || '/'} ${first?.message ?? 'is not valid'}`);
  }
  const seen = new Set<string>();
  for (const c of data.clients) {
    if (seen.has(c.clientId)) throw new OAuthClientsError(`${where}: client ${c.clientId} is declared twice`);
    seen.add(c.clientId);
    for (const uri of c.redirectUris) {
      let u: URL;
      try {
        u = new URL(uri);
      } catch {
        throw new OAuthClientsError(`${where}: ${c.clientId}: redirect URI is not a URL`);
      }
      // RFC 9700 §4.1.3 and §2.1: no fragments; plain http only to loopback (native apps, RFC 8252 §7.3).
      if (u.hash) throw new OAuthClientsError(`${where}: ${c.clientId}: a redirect URI has no fragment`);
      if (u.protocol === 'http:' && !['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname)) {
        throw new OAuthClientsError(`${where}: ${c.clientId}: http redirect URIs only on loopback`);
      }
    }
  }
  return data.clients;
}

export function loadOAuthClientsFile(file: string): OAuthClientSpec[] {
  let data: unknown;
  try {
    const text = readFileSync(file, 'utf8');
    data = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  } catch (err) {
    throw new OAuthClientsError(`${file}: cannot read (${(err as Error).message.split('\n')[0]})`);
  }
  return parseOAuthClients(data, file);
}

export type { Role };
