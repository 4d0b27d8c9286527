import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { OAuthClientSpec } from '../../src/identity/clients.ts';

/**
 * The OAuth clients file a suite signs in with (SMART_HOME_OAUTH_CLIENTS_FILE): `oauth-clients.yaml` in
 * `dir`, declaring `clients` (as JSON, which is YAML). Resolves with its path.
 */
export async function writeOAuthClients(dir: string, clients: OAuthClientSpec[]): Promise<string> {
  const file = path.join(dir, 'oauth-clients.yaml');
  await writeFile(file, JSON.stringify({ clients }, null, 2));
  return file;
}
