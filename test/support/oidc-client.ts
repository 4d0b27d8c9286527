import * as oidc from 'openid-client';
import { type Agent, fetch as undiciFetch } from 'undici';

/**
 * The configuration of client `clientId` (confidential with `secret`: client_secret_basic) from the
 * issuer's discovery, every request over `agent` (the TLS trust of the public listener) — as
 * ResidentApp.configuration() discovers it.
 */
export function discoverClient(
  issuer: string,
  agent: Agent,
  clientId: string,
  secret?: string,
): Promise<oidc.Configuration> {
  const tlsFetch: oidc.CustomFetch = (url, options) =>
    undiciFetch(url, { ...(options as object), dispatcher: agent }) as unknown as Promise<Response>;
  return oidc.discovery(
    new URL(issuer),
    clientId,
    { id_token_signed_response_alg: 'ES256' },
    secret ? oidc.ClientSecretBasic(secret) : oidc.None(),
    { [oidc.customFetch]: tlsFetch },
  );
}
