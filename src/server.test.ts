import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from './config/config.ts';
import { loadOAuthClientsFile } from './identity/clients.ts';
import { createLogger } from './logger.ts';
import {
  createRuntime,
  developmentClientsFile,
  ensureDevelopmentMaterial,
  withDevelopmentClients,
} from './server.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'smart-home-prod-'));
  await ensureDevelopmentMaterial(loadConfig({ SMART_HOME_DATA_DIR: dir }));
});
after(() => rm(dir, { recursive: true, force: true }));

/**
 * Every setting production requires, its data directory `dataDir`; each file setting is `file(name)` of
 * the file development material would use (by default 'a': the file is never read).
 */
function productionEnv(dataDir: string, file: (name: string) => string = () => 'a'): Record<string, string> {
  return {
    NODE_ENV: 'production',
    SMART_HOME_DATA_DIR: dataDir,
    DATABASE_URL: 'postgres://x',
    SMART_HOME_KEK: randomBytes(32).toString('base64'),
    SMART_HOME_PARTNER_URL: 'https://p',
    SMART_HOME_PUBLIC_TLS_CERT: file('pki/public-server.crt'),
    SMART_HOME_PUBLIC_TLS_KEY: file('pki/public-server.key'),
    SMART_HOME_PARTNER_TLS_CERT: file('pki/partner-server.crt'),
    SMART_HOME_PARTNER_TLS_KEY: file('pki/partner-server.key'),
    SMART_HOME_PARTNER_CLIENT_CA: file('pki/partner-issuing-ca.crt'),
    SMART_HOME_SIGNING_KEY_FILE: file('keys/response-signing.jwk'),
    SMART_HOME_TOKEN_KEY_FILE: file('keys/token-signing.jwk'),
    SMART_HOME_JOURNAL_KEY_FILE: file('keys/journal-signing.jwk'),
    SMART_HOME_JOURNAL_ORIGIN: 'home.example/journal',
    SMART_HOME_WITNESS_KEY_FILE: file('keys/witness-cosigner.jwk'),
    SMART_HOME_WITNESS_NAME: 'home.example/witness',
    SMART_HOME_OTP_SENDER: 'webhook',
    SMART_HOME_OTP_WEBHOOK_URL: 'https://sms.example/send',
    SMART_HOME_OUTBOUND_CLIENT_CERT: file('pki/service-client.crt'),
    SMART_HOME_OUTBOUND_CLIENT_KEY: file('pki/service-client.key'),
  };
}

test('production refuses development certificates even when every setting is given', async () => {
  const config = loadConfig({
    ...productionEnv(path.join(dir, 'prod-data'), (f) => path.join(dir, f)),
    DATABASE_URL: 'postgres://127.0.0.1:1/never-reached',
    SMART_HOME_PARTNER_URL: 'https://partners.example',
  });
  await assert.rejects(
    createRuntime(config, createLogger({ level: 'silent' })),
    /SMART_HOME_PUBLIC_TLS_CERT is a development certificate; refused in production/,
  );
});

test('production generates no development material', async () => {
  const created = await ensureDevelopmentMaterial(loadConfig(productionEnv(path.join(dir, 'x'))));
  assert.deepEqual(created, []);
});

test('development offers sign-in clients when none are configured; production and an explicit file get none', async () => {
  const dev = loadConfig({ SMART_HOME_DATA_DIR: dir });
  const file = path.join(dir, 'oauth-clients.yaml');
  assert.equal(developmentClientsFile(dev), file);
  // Created by the before() hook's first start, and what `start` then serves with.
  assert.equal(withDevelopmentClients(dev).identity.clientsFile, file);
  const clients = loadOAuthClientsFile(file);
  const app = clients.find((c) => c.clientId === 'mobile-app');
  assert.deepEqual(app, {
    clientId: 'mobile-app',
    role: 'resident',
    redirectUris: ['ru.propdevelopment.smarthome:/oauth/callback'],
    dpopBoundAccessTokens: true,
  });
  assert.deepEqual(clients.map((c) => [c.clientId, c.role]).sort(), [
    ['dev-operator', 'operator'],
    ['dev-resident', 'resident'],
    ['mobile-app', 'resident'],
  ]);
  assert.ok(
    clients.every((c) => c.clientSecret === undefined),
    'no secret is written into a development file',
  );

  const own = loadConfig({ SMART_HOME_DATA_DIR: dir, SMART_HOME_OAUTH_CLIENTS_FILE: '/etc/own.yaml' });
  assert.equal(developmentClientsFile(own), undefined);
  assert.equal(withDevelopmentClients(own).identity.clientsFile, '/etc/own.yaml');

  const prod = loadConfig(productionEnv(dir));
  // The development file exists in this DATA_DIR, yet production does not pick it up.
  assert.equal(developmentClientsFile(prod), undefined);
  assert.equal(withDevelopmentClients(prod).identity.clientsFile, undefined);
});
