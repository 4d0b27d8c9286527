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

test('production refuses development certificates even when every setting is given', async () => {
  const p = (f: string) => path.join(dir, f);
  const config = loadConfig({
    NODE_ENV: 'production',
    SMART_HOME_DATA_DIR: path.join(dir, 'prod-data'),
    DATABASE_URL: 'postgres://127.0.0.1:1/never-reached',
    SMART_HOME_KEK: randomBytes(32).toString('base64'),
    SMART_HOME_PARTNER_URL: 'https://partners.example',
    SMART_HOME_PUBLIC_TLS_CERT: p('pki/public-server.crt'),
    SMART_HOME_PUBLIC_TLS_KEY: p('pki/public-server.key'),
    SMART_HOME_PARTNER_TLS_CERT: p('pki/partner-server.crt'),
    SMART_HOME_PARTNER_TLS_KEY: p('pki/partner-server.key'),
    SMART_HOME_PARTNER_CLIENT_CA: p('pki/partner-issuing-ca.crt'),
    SMART_HOME_SIGNING_KEY_FILE: p('keys/response-signing.jwk'),
    SMART_HOME_TOKEN_KEY_FILE: p('keys/token-signing.jwk'),
    SMART_HOME_JOURNAL_KEY_FILE: p('keys/journal-signing.jwk'),
    SMART_HOME_JOURNAL_ORIGIN: 'home.example/journal',
    SMART_HOME_WITNESS_KEY_FILE: p('keys/witness-cosigner.jwk'),
    SMART_HOME_WITNESS_NAME: 'home.example/witness',
    SMART_HOME_OTP_SENDER: 'webhook',
    SMART_HOME_OTP_WEBHOOK_URL: 'https://sms.example/send',
    SMART_HOME_OUTBOUND_CLIENT_CERT: p('pki/service-client.crt'),
    SMART_HOME_OUTBOUND_CLIENT_KEY: p('pki/service-client.key'),
  });
  await assert.rejects(
    createRuntime(config, createLogger({ level: 'silent' })),
    /SMART_HOME_PUBLIC_TLS_CERT is a development certificate; refused in production/,
  );
});

test('production generates no development material', async () => {
  const created = await ensureDevelopmentMaterial(
    loadConfig({
      NODE_ENV: 'production',
      SMART_HOME_DATA_DIR: path.join(dir, 'x'),
      DATABASE_URL: 'postgres://x',
      SMART_HOME_KEK: randomBytes(32).toString('base64'),
      SMART_HOME_PARTNER_URL: 'https://p',
      SMART_HOME_PUBLIC_TLS_CERT: 'a',
      SMART_HOME_PUBLIC_TLS_KEY: 'a',
      SMART_HOME_PARTNER_TLS_CERT: 'a',
      SMART_HOME_PARTNER_TLS_KEY: 'a',
      SMART_HOME_PARTNER_CLIENT_CA: 'a',
      SMART_HOME_SIGNING_KEY_FILE: 'a',
      SMART_HOME_TOKEN_KEY_FILE: 'a',
      SMART_HOME_JOURNAL_KEY_FILE: 'a',
      SMART_HOME_JOURNAL_ORIGIN: 'home.example/journal',
      SMART_HOME_WITNESS_KEY_FILE: 'a',
      SMART_HOME_WITNESS_NAME: 'home.example/witness',
      SMART_HOME_OTP_SENDER: 'webhook',
      SMART_HOME_OTP_WEBHOOK_URL: 'https://sms.example/send',
      SMART_HOME_OUTBOUND_CLIENT_CERT: 'a',
      SMART_HOME_OUTBOUND_CLIENT_KEY: 'a',
    }),
  );
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

  const prod = loadConfig({
    NODE_ENV: 'production',
    SMART_HOME_DATA_DIR: dir,
    DATABASE_URL: 'postgres://x',
    SMART_HOME_KEK: randomBytes(32).toString('base64'),
    SMART_HOME_PARTNER_URL: 'https://p',
    SMART_HOME_PUBLIC_TLS_CERT: 'a',
    SMART_HOME_PUBLIC_TLS_KEY: 'a',
    SMART_HOME_PARTNER_TLS_CERT: 'a',
    SMART_HOME_PARTNER_TLS_KEY: 'a',
    SMART_HOME_PARTNER_CLIENT_CA: 'a',
    SMART_HOME_SIGNING_KEY_FILE: 'a',
    SMART_HOME_TOKEN_KEY_FILE: 'a',
    SMART_HOME_JOURNAL_KEY_FILE: 'a',
    SMART_HOME_JOURNAL_ORIGIN: 'home.example/journal',
    SMART_HOME_WITNESS_KEY_FILE: 'a',
    SMART_HOME_WITNESS_NAME: 'home.example/witness',
    SMART_HOME_OTP_SENDER: 'webhook',
    SMART_HOME_OTP_WEBHOOK_URL: 'https://sms.example/send',
    SMART_HOME_OUTBOUND_CLIENT_CERT: 'a',
    SMART_HOME_OUTBOUND_CLIENT_KEY: 'a',
  });
  // The development file exists in this DATA_DIR, yet production does not pick it up.
  assert.equal(developmentClientsFile(prod), undefined);
  assert.equal(withDevelopmentClients(prod).identity.clientsFile, undefined);
});
