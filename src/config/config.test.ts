import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { type ConfigError, loadConfig } from './config.ts';
import { renderConfigurationDoc } from './config-docs.ts';

test('defaults give a runnable development configuration under ./data', () => {
  const c = loadConfig({});
  assert.equal(c.env, 'development');
  assert.equal(c.partner.port, 9443);
  assert.equal(c.database.url, undefined);
  assert.equal(c.partner.tlsCert, path.resolve('data/pki/partner-server.crt'));
  assert.ok(Object.isFrozen(c.partner));
});

test('production refuses development defaults and names every missing setting', () => {
  assert.throws(
    () => loadConfig({ NODE_ENV: 'production' }),
    (e: ConfigError) =>
      e.problems.some((p) => p.startsWith('DATABASE_URL')) &&
      e.problems.some((p) => p.startsWith('SMART_HOME_PARTNER_TLS_CERT')) &&
      e.problems.some((p) => p.startsWith('SMART_HOME_KEK')) &&
      e.problems.some((p) => p.startsWith('SMART_HOME_TOKEN_KEY_FILE')) &&
      e.problems.some((p) => p.startsWith('SMART_HOME_WITNESS_KEY_FILE')) &&
      e.problems.some((p) => p.startsWith('SMART_HOME_WITNESS_NAME')),
  );
});

test('bad values are reported together, with their variable', () => {
  assert.throws(
    () =>
      loadConfig({ SMART_HOME_PARTNER_PORT: 'x', LOG_LEVEL: 'loud', SMART_HOME_TRUSTED_PROXIES: 'nonsense' }),
    (e: ConfigError) => e.problems.length === 3 && e.problems[0]!.startsWith('LOG_LEVEL'),
  );
});

test('a config file is read, env wins over it, and unknown keys are refused', () => {
  const file = path.join(tmpdir(), `sh-config-${process.pid}.yaml`);
  writeFileSync(file, 'partner:\n  port: 10443\n  rateLimit: 7\n');
  const c = loadConfig({ SMART_HOME_CONFIG: file, SMART_HOME_PARTNER_RATE_LIMIT: '9' });
  assert.equal(c.partner.port, 10443);
  assert.equal(c.partner.rateLimit, 9);
  writeFileSync(file, 'partner:\n  prot: 10443\n');
  assert.throws(() => loadConfig({ SMART_HOME_CONFIG: file }), /unknown option "partner.prot"/);
});

test('docs/configuration.md is generated from the option table (run `npm run docs:config`)', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  assert.equal(doc, renderConfigurationDoc());
});
