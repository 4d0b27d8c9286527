import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from './config/config.ts';
import { createLogger } from './logger.ts';

test('secrets and personal data are redacted by the logger itself, at every level', () => {
  const lines: string[] = [];
  const log = createLogger({ level: 'trace', destination: { write: (s: string) => void lines.push(s) } });
  log.info(
    {
      resident: { fullName: 'Анна Петрова', phone: '+79001112233', plate: 'А123ВС77' },
      partner: { token: 'eyJhbGciOi.secret.token', secret: 'k', privateKey: 'pk' },
      decision: { candidates: [{ token: 'S934r0KVTRBcig1xzAczXAuOlUuifFLFcv1pOCJntm4' }] },
    },
    'test',
  );
  log.debug(
    {
      req: {
        method: 'POST',
        url: '/partner/v1/x?plate=A123BC77',
        id: 'r1',
        headers: { authorization: 'Bearer abc' },
      },
    },
    'req',
  );
  const out = lines.join('\n');
  for (const secret of [
    'Анна',
    '+7900',
    'А123ВС77',
    'A123BC77',
    'eyJhbGciOi',
    'S934r0KV',
    'Bearer abc',
    '"pk"',
  ]) {
    assert.ok(!out.includes(secret), `the log holds ${secret}`);
  }
  assert.match(out, /\[redacted\]/);
  assert.match(out, /"url":"\/partner\/v1\/x"/, 'query strings are dropped from logged URLs');
});

function capture(level = 'trace') {
  const lines: string[] = [];
  const log = createLogger({ level, destination: { write: (s: string) => void lines.push(s) } });
  return { log, text: () => lines.join('') };
}

test('credential headers, cookies and cookie keys are redacted at any depth', () => {
  const { log, text } = capture();
  log.debug(
    {
      upstream: {
        request: {
          headers: {
            authorization: 'DPoP at-value-123456789',
            dpop: 'proof-value-123456789',
            cookie: '_session=s3ss10n',
          },
        },
        response: { headers: { 'set-cookie': ['_interaction=1nt3r4ct10n; path=/'], location: '/x' } },
      },
      identity: { cookieKeys: ['cookie-key-0123456789abcdef'], dpopNonceSecret: 'n0nce-s3cret-value' },
      client: { client_id: 'operator-console', client_secret: 'cl13nt-s3cret' },
    },
    'headers',
  );
  const out = text();
  for (const s of [
    'at-value',
    'proof-value',
    's3ss10n',
    '1nt3r4ct10n',
    'cookie-key-0',
    'n0nce-s3cret',
    'cl13nt-s3cret',
  ]) {
    assert.ok(!out.includes(s), `the log holds ${s}`);
  }
  assert.match(out, /"client_id":"operator-console"/, 'what is not secret stays');
  assert.match(out, /"location":"\/x"/);
});

test('passwords, TOTP secrets, one-time codes and tokens in bodies are redacted; error codes stay', () => {
  const { log, text } = capture();
  const body = {
    access_token: 'opaque-access-value',
    refresh_token: 'opaque-refresh-value',
    id_token: 'opaque-id-value',
    token_type: 'DPoP',
  };
  log.trace(
    {
      form: { login: 'duty.ops', password: 'pa55w0rd-value', totp: '492039', otp: '815263' },
      operator: { totpSecret: 'JBSWY3DPEHPK3PXP', totp_secret_enc: 'v1.cipher' },
      grant: { code: 'Xq3t9w8P0aLmN2bV4cZ7yR1sT6uE5oK', user_code: '55512345', result: { tokens: body } },
      nested: {
        deeper: { still: { accessToken: 'camel-access-value', refreshToken: 'camel-refresh-value' } },
      },
      auth: { code: 'invalid-token', reason: 'ERR_JWT_EXPIRED' },
      worker: { code: 1, signal: 'SIGTERM' },
    },
    'bodies',
  );
  const out = text();
  for (const s of [
    'pa55w0rd',
    '492039',
    '815263',
    'JBSWY3DP',
    'v1.cipher',
    'Xq3t9w8P',
    '55512345',
    'opaque-',
    'camel-',
  ]) {
    assert.ok(!out.includes(s), `the log holds ${s}`);
  }
  assert.match(out, /"code":"invalid-token"/);
  assert.match(out, /"reason":"ERR_JWT_EXPIRED"/);
  assert.match(out, /"code":1/);
  assert.match(out, /"login":"duty.ops"/);
});

test('credentials and phone numbers inside strings: URLs with code=, JWTs, Authorization values, messages', () => {
  const { log, text } = capture();
  const jwt = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl';
  log.info(
    {
      redirect: 'https://app.example/cb?code=AuthzC0de-value-0123456789&state=st4te&iss=https%3A%2F%2Fh',
      form: 'grant_type=refresh_token&refresh_token=R3fresh-value&client_secret=S3cret-value',
      detail: `token ${jwt} was rejected`,
      header: 'Authorization: Bearer b34rer-value-0123',
      sms: [
        'sent to +7 916 123-45-67',
        'sent to +79161234567',
        'sent to 8 (916) 123-45-67',
        'sent to 89161234567',
      ],
    },
    'redirecting with code=%s for %s',
    'AnotherC0de-value',
    '+79161234567',
  );
  const out = text();
  for (const s of ['AuthzC0de', 'R3fresh', 'S3cret', 'eyJhbGci', 'b34rer', '916', 'AnotherC0de', '+7916']) {
    assert.ok(!out.includes(s), `the log holds ${s}`);
  }
  assert.match(out, /state=st4te/, 'parameters that are not credentials stay');
  assert.match(out, /code=\[redacted\]/);
});

test('errors (oidc-provider refusals included) are logged with their type, credentials scrubbed from message and fields', () => {
  const { log, text } = capture();
  class InvalidGrant extends Error {
    error = 'invalid_grant';
    error_detail = 'refresh token eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ4In0.c2ln already used';
    params = { refresh_token: 'R3fresh-in-params', client_id: 'web-app' };
  }
  const err = new InvalidGrant('grant request is invalid: code=C0de-in-message-0123456789');
  log.error({ err }, 'people token request refused');
  log.warn({ error: err }, 'nested');
  const out = text();
  assert.match(out, /"type":"InvalidGrant"/);
  assert.match(out, /"error":"invalid_grant"/);
  assert.match(out, /"client_id":"web-app"/);
  for (const s of ['eyJhbGci', 'R3fresh', 'C0de-in-message'])
    assert.ok(!out.includes(s), `the log holds ${s}`);
  // The caller's objects are copied, never changed.
  assert.equal(err.params.refresh_token, 'R3fresh-in-params');
});

test('the whole configuration can be logged without its secrets', () => {
  const { log, text } = capture();
  const config = loadConfig({
    NODE_ENV: 'test',
    DATABASE_URL: 'postgres://smart:Db-pa55word@db.internal:5432/smart',
    REDIS_URL: 'redis://:R3dis-pa55@cache.internal:6379/0',
    SMART_HOME_KEK: 'a'.repeat(43),
    SMART_HOME_IDENTITY_COOKIE_KEYS:
      'cookie-key-one-0123456789abcdef0123,cookie-key-two-0123456789abcdef0123',
    SMART_HOME_DPOP_NONCE_SECRET: 'bm9uY2Utc2VjcmV0LW5vbmNlLXNlY3JldC1ub25jZS1z',
  });
  log.info({ config }, 'configuration');
  const out = text();
  for (const s of ['Db-pa55word', 'R3dis-pa55', 'a'.repeat(43), 'cookie-key-', 'bm9uY2Ut']) {
    assert.ok(!out.includes(s), `the log holds ${s}`);
  }
  assert.match(out, /db\.internal:5432/, 'the rest of the URL stays');
});
