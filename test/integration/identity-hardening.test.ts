import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import * as oidc from 'openid-client';
import { Agent } from 'undici';
import { Browser, csrfOf } from '../../simulator/resident-app.ts';
import { ConfigError, loadConfig } from '../../src/config/config.ts';
import type { Db } from '../../src/db/db.ts';
import { openPgDb } from '../../src/db/pg-db.ts';
import { sql } from '../../src/db/sql.ts';
import { createOperator } from '../../src/identity/operators.ts';
import { consoleOtpOutbox, type OtpSender } from '../../src/identity/otp-sender.ts';
import { createPgAdapterFactory } from '../../src/identity/pg-adapter.ts';
import { ResidentOtp } from '../../src/identity/resident-otp.ts';
import { addressKey, takeSend } from '../../src/identity/send-limits.ts';
import { base32Decode, hotp, totpStep } from '../../src/identity/totp.ts';
import { createLogger } from '../../src/logger.ts';
import { PURPOSE_PII } from '../../src/registry/apply.ts';
import { createRuntime, ensureDevelopmentMaterial, type Runtime } from '../../src/server.ts';
import { freePort } from '../../src/util/free-port.ts';
import { writeOAuthClients } from '../support/oauth-clients.ts';
import { discoverClient } from '../support/oidc-client.ts';
import { createTestDb } from '../support/test-db.ts';

/**
 * Issue 3's hardening of the people's sign-in: limits on sending one-time codes (per number, per
 * client address, shared through the database), the code's attempt limit and lockout, atomic
 * single use of codes and refresh tokens across instances, refresh lifetimes, and logs that never
 * hold a secret or a phone number even at trace level.
 */

const REDIRECT = 'https://app.example/callback';
const PHONE = '+79161234567';
const OP_PASSWORD = 'violet staple horse battery';
const CLIENT_SECRET = `console-${randomBytes(24).toString('base64url')}`;
const COOKIE_KEY = randomBytes(32).toString('base64url');
const DPOP_NONCE_SECRET = randomBytes(32).toString('base64url');
const PER_PHONE = 3;
const PER_ADDRESS = 6;
const WINDOW_S = 3600;
const INTERVAL_S = 60;

let runtime: Runtime;
let db: Db & { schema?: string };
let dataDir: string;
let issuer: string;
let agent: Agent;
let residentId: string;
let operatorSecret: Buffer;
let operatorSecretBase32: string;
const logLines: string[] = [];

const discover = (clientId: string, secret?: string) => discoverClient(issuer, agent, clientId, secret);

/** Codes the console sender prints, collected while `fn` runs. */
async function collectCodes<T>(fn: () => Promise<T>): Promise<{ result: T; codes: string[] }> {
  const codes: string[] = [];
  const listener = ({ code }: { code: string }) => void codes.push(code);
  consoleOtpOutbox.on('code', listener);
  try {
    return { result: await fn(), codes };
  } finally {
    consoleOtpOutbox.off('code', listener);
  }
}

async function authorizationUrl(config: oidc.Configuration) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT,
    scope: 'openid offline_access api',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
  });
  return { url, verifier, state };
}

/** A resident sign-in opened to its phone page. */
async function openResidentSignIn(lang = 'en') {
  const { url } = await authorizationUrl(await discover('web-app'));
  const browser = new Browser(issuer, agent, lang);
  const interaction = (await browser.go(url.href)).location!;
  const page = await browser.go(interaction);
  assert.match(page.body, /name="phone"/);
  return { browser, interaction, page };
}

const askCode = (s: Awaited<ReturnType<typeof openResidentSignIn>>, phone: string) =>
  s.browser.go(`${s.interaction}/phone`, { csrf: csrfOf(s.page.body), phone });

/** The whole resident sign-in: authorization request, phone, code, the redirect back (with the code). */
async function residentSignIn(config: oidc.Configuration) {
  const { url, verifier, state } = await authorizationUrl(config);
  const browser = new Browser(issuer, agent);
  const interaction = (await browser.go(url.href)).location!;
  const phonePage = await browser.go(interaction);
  const { result: codePage, codes } = await collectCodes(() =>
    browser.go(`${interaction}/phone`, { csrf: csrfOf(phonePage.body), phone: '8 916 123-45-67' }),
  );
  assert.equal(codePage.status, 200, codePage.body);
  assert.equal(codes.length, 1);
  const done = await browser.go(`${interaction}/code`, { csrf: csrfOf(codePage.body), code: codes[0]! });
  assert.equal(done.status, 303, done.body);
  const resumed = await browser.go(done.location!);
  return { back: new URL(resumed.location!), verifier, state, otp: codes[0]!, browser };
}

const phoneSubject = (phone: string) => `phone:${runtime.cipher.blindIndex(PURPOSE_PII, phone)}`;

/** What "time passing" means to the send counters, without waiting: their clocks move back. */
async function ageSendCounters(seconds: number, what: 'interval' | 'window' = 'interval') {
  if (what === 'interval') {
    await db.query(sql`update sign_in_send_limits
      set last_sent_at = last_sent_at - make_interval(secs => ${seconds}::int)`);
  } else {
    await db.query(sql`update sign_in_send_limits
      set last_sent_at = last_sent_at - make_interval(secs => ${seconds}::int),
        window_started_at = window_started_at - make_interval(secs => ${seconds}::int)`);
  }
}

/** Another database handle, as a second instance would hold: its own pool on PostgreSQL. */
async function secondInstanceDb(): Promise<Db> {
  const url = process.env['DATABASE_URL'];
  if (!url || !db.schema) return db;
  return openPgDb({ connectionString: url, max: 10, schema: db.schema });
}

before(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'smart-home-hardening-'));
  const port = await freePort();
  const clientsFile = await writeOAuthClients(dataDir, [
    { clientId: 'web-app', role: 'resident', redirectUris: [REDIRECT] },
    { clientId: 'operator-console', role: 'operator', redirectUris: [REDIRECT], clientSecret: CLIENT_SECRET },
  ]);
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'trace',
    SMART_HOME_DATA_DIR: dataDir,
    SMART_HOME_PUBLIC_PORT: String(port),
    SMART_HOME_PARTNER_PORT: '0',
    SMART_HOME_OAUTH_CLIENTS_FILE: clientsFile,
    SMART_HOME_IDENTITY_COOKIE_KEYS: COOKIE_KEY,
    SMART_HOME_DPOP_NONCE_SECRET: DPOP_NONCE_SECRET,
    SMART_HOME_OTP_MAX_ATTEMPTS: '3',
    SMART_HOME_OTP_SEND_MAX_PER_PHONE: String(PER_PHONE),
    SMART_HOME_OTP_SEND_INTERVAL_S: String(INTERVAL_S),
    SMART_HOME_OTP_SEND_MAX_PER_ADDRESS: String(PER_ADDRESS),
    SMART_HOME_OTP_SEND_WINDOW_S: String(WINDOW_S),
    SMART_HOME_REFRESH_IDLE_S: '300',
    SMART_HOME_REFRESH_ABSOLUTE_S: '600',
  });
  await ensureDevelopmentMaterial(config);
  // Every line the service logs, at trace level, through the production logger and its redaction.
  const logger = createLogger({
    level: 'trace',
    destination: { write: (line: string) => void logLines.push(line) },
  });
  db = await createTestDb();
  runtime = await createRuntime(config, logger, { db });
  await runtime.app.publicApp.listen({ host: '127.0.0.1', port });
  issuer = `https://localhost:${port}`;
  agent = new Agent({ connect: { ca: await readFile(path.join(dataDir, 'pki', 'service-ca.crt'), 'utf8') } });

  residentId = randomUUID();
  const { cipher } = runtime;
  await db.query(sql`insert into residents (id, ref, full_name_enc, phone_enc, phone_index) values (${residentId}, 'r-h',
    ${cipher.encrypt(PURPOSE_PII, { table: 'residents', column: 'full_name_enc', rowId: residentId }, 'Ольга Смирнова')},
    ${cipher.encrypt(PURPOSE_PII, { table: 'residents', column: 'phone_enc', rowId: residentId }, PHONE)},
    ${cipher.blindIndex(PURPOSE_PII, PHONE)})`);
  const op = await createOperator({ db, cipher }, 'audit.ops', OP_PASSWORD);
  operatorSecretBase32 = new URL(op.otpauthUri).searchParams.get('secret')!;
  operatorSecret = base32Decode(operatorSecretBase32);
});

after(async () => {
  await runtime?.close();
  await agent?.close();
  await rm(dataDir, { recursive: true, force: true });
});

beforeEach(async () => {
  // Every request of this file comes from 127.0.0.1: each test starts with fresh counters.
  await db.query(sql`delete from sign_in_send_limits`);
  await db.query(sql`delete from sign_in_lockouts`);
});

describe('sending one-time codes is limited per number and per client address', () => {
  test('a second code to the same number within the interval is refused, for a resident and an unknown number alike, and nothing is sent', async () => {
    const known = await openResidentSignIn();
    const unknown = await openResidentSignIn();
    const { result, codes } = await collectCodes(async () => ({
      k1: await askCode(known, PHONE),
      k2: await askCode(known, PHONE),
      u1: await askCode(unknown, '+79990001122'),
      u2: await askCode(unknown, '+79990001122'),
    }));
    const { k1, k2, u1, u2 } = result;
    assert.equal(codes.length, 1, 'one SMS to the resident, none to the unknown number');
    assert.equal(k1.status, 200);
    assert.equal(k2.status, 429);
    assert.match(k2.body, /Too many codes have been requested/);
    // The code sent a moment ago is still valid: its form stays.
    assert.match(k2.body, /name="code"/);
    const strip = (html: string, uid: string) => html.replace(/value="[^"]+"/g, '').replaceAll(uid, 'UID');
    assert.equal(u1.status, k1.status);
    assert.equal(u2.status, k2.status);
    assert.equal(strip(u2.body, unknown.interaction), strip(k2.body, known.interaction));
    // The first code still signs in.
    const done = await known.browser.go(`${known.interaction}/code`, {
      csrf: csrfOf(k2.body),
      code: codes[0]!,
    });
    assert.equal(done.status, 303, done.body);
    const journal = await db.query<{ result: string }>(
      sql`select result from journal where action = 'auth.resident.code_requested' and result = 'throttled'`,
    );
    assert.ok(journal.length >= 2);
  });

  test('the refusal is localised', async () => {
    const ru = await openResidentSignIn('ru-RU,ru;q=0.9');
    await askCode(ru, PHONE);
    const again = await askCode(ru, PHONE);
    assert.equal(again.status, 429);
    assert.match(again.body, /<html lang="ru">/);
    assert.match(again.body, /Слишком много запросов кода/);
    assert.doesNotMatch(again.body, /\+7916|916 123/, 'the number is not echoed');
  });

  test(`at most ${PER_PHONE} codes per number per window, even with the interval respected; a new window allows again`, async () => {
    const { codes, result } = await collectCodes(async () => {
      const statuses: number[] = [];
      for (let i = 0; i < PER_PHONE + 1; i++) {
        statuses.push((await askCode(await openResidentSignIn(), '+7 (916) 123-45-67')).status);
        await ageSendCounters(INTERVAL_S);
      }
      return statuses;
    });
    assert.deepEqual(result, [...Array(PER_PHONE).fill(200), 429]);
    assert.equal(codes.length, PER_PHONE);
    await ageSendCounters(WINDOW_S, 'window');
    const { codes: later } = await collectCodes(async () => {
      assert.equal((await askCode(await openResidentSignIn(), PHONE)).status, 200);
    });
    assert.equal(later.length, 1);
    const row = await db.one<{ sends: number }>(
      sql`select sends from sign_in_send_limits where subject = ${phoneSubject(PHONE)}`,
    );
    assert.equal(row?.sends, 1, 'the new window counts from one');
  });

  test(`at most ${PER_ADDRESS} codes requested from one address per window, whatever the numbers`, async () => {
    const numbers = Array.from(
      { length: PER_ADDRESS + 1 },
      (_, i) => `+7999000${String(i).padStart(4, '0')}`,
    );
    const statuses: number[] = [];
    for (const n of numbers) statuses.push((await askCode(await openResidentSignIn(), n)).status);
    assert.deepEqual(statuses, [...Array(PER_ADDRESS).fill(200), 429]);
    // The refused request took nothing from its number's own allowance (all or none).
    const last = await db.one(
      sql`select 1 as x from sign_in_send_limits where subject = ${phoneSubject(numbers.at(-1)!)}`,
    );
    assert.equal(last, undefined);
  });

  test('limits hold exactly under concurrency, across instances sharing the database', async () => {
    const other = await secondInstanceDb();
    try {
      const subject = `phone:test-${randomUUID()}`;
      const takes = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          takeSend(i % 2 === 0 ? db : other, [{ subject, max: 4, intervalSeconds: 0 }], WINDOW_S),
        ),
      );
      assert.equal(takes.filter(Boolean).length, 4);
      // With an interval, of concurrent requests for one number exactly one is sent.
      const spaced = `phone:test-${randomUUID()}`;
      const once = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          takeSend(i % 2 === 0 ? db : other, [{ subject: spaced, max: 4, intervalSeconds: 30 }], WINDOW_S),
        ),
      );
      assert.equal(once.filter(Boolean).length, 1);
    } finally {
      if (other !== db) await other.close();
    }
  });

  test('housekeeping forgets counters whose window has passed', async () => {
    await askCode(await openResidentSignIn(), PHONE);
    assert.ok(
      await db.one(sql`select 1 as x from sign_in_send_limits where subject = ${phoneSubject(PHONE)}`),
    );
    await runtime.app.identity.purge();
    assert.ok(
      await db.one(sql`select 1 as x from sign_in_send_limits where subject = ${phoneSubject(PHONE)}`),
      'a live counter stays',
    );
    await ageSendCounters(WINDOW_S, 'window');
    await runtime.app.identity.purge();
    assert.equal((await db.query(sql`select 1 as x from sign_in_send_limits`)).length, 0);
  });

  test('client addresses are counted by IPv4 address or IPv6 /64', () => {
    assert.equal(addressKey('203.0.113.7'), '203.0.113.7');
    assert.equal(addressKey('::ffff:203.0.113.7'), '203.0.113.7');
    assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.notEqual(addressKey('2001:db8:1:3::1'), addressKey('2001:db8:1:2::1'));
  });
});

describe('verifying a code: attempt-limited with lockout', () => {
  const policy = {
    ttlSeconds: 300,
    digits: 6,
    maxFailures: 3,
    lockoutSeconds: 900,
    sends: { windowSeconds: 3600, perPhone: 100, phoneIntervalSeconds: 0, perAddress: 1000 },
  };
  function otpWithOutbox() {
    const sent: string[] = [];
    const sender: OtpSender = { send: async ({ code }) => void sent.push(code) };
    return { otp: new ResidentOtp({ db, cipher: runtime.cipher, sender, policy }), sent };
  }

  test('parallel wrong guesses never exceed the attempt limit; the right code then fails too', async () => {
    const { otp, sent } = otpWithOutbox();
    const uid = randomUUID();
    assert.equal(await otp.start(uid, PHONE, 'en', '192.0.2.1'), 'sent');
    const right = sent[0]!;
    const wrong = right === '000000' ? '111111' : '000000';
    const results = await Promise.all(Array.from({ length: 10 }, () => otp.verify(uid, wrong)));
    assert.ok(results.every((r) => !r.ok));
    const row = await db.one<{ attempts: number }>(
      sql`select attempts from sign_in_codes where interaction_uid = ${uid}`,
    );
    assert.equal(row?.attempts, policy.maxFailures);
    assert.deepEqual(await otp.verify(uid, right), { ok: false, reason: 'locked' });
    // The number is locked, not just this sign-in: a new one cannot even be sent a code.
    assert.equal(await otp.start(randomUUID(), PHONE, 'en', '192.0.2.1'), 'locked');
    assert.equal(sent.length, 1);
  });

  test('an unknown number goes through the same answers: wrong, wrong, locked', async () => {
    const { otp, sent } = otpWithOutbox();
    const answers = async (phone: string) => {
      const uid = randomUUID();
      await otp.start(uid, phone, 'en', '192.0.2.2');
      const out: string[] = [];
      for (let i = 0; i < 3; i++) {
        const r = await otp.verify(uid, '123456');
        out.push(r.ok ? 'ok' : r.reason);
      }
      return out;
    };
    const unknown = await answers('+79990004444');
    assert.equal(sent.length, 0);
    // A known number with a code that is not 123456 (the resident's code is random: retry if it is).
    let known = await answers(PHONE);
    if (known.includes('ok')) {
      await db.query(sql`delete from sign_in_lockouts`);
      known = await answers(PHONE);
    }
    assert.deepEqual(unknown, ['wrong', 'wrong', 'locked']);
    assert.deepEqual(known, unknown);
  });

  test('a lockout ends after its time; the right code then signs in and clears the failures', async () => {
    const { otp, sent } = otpWithOutbox();
    const uid = randomUUID();
    await otp.start(uid, PHONE, 'en', '192.0.2.3');
    for (let i = 0; i < 3; i++) await otp.verify(uid, sent[0] === '999999' ? '888888' : '999999');
    assert.equal(await otp.start(randomUUID(), PHONE, 'en', '192.0.2.3'), 'locked');
    await db.query(sql`update sign_in_lockouts set locked_until = now() - interval '1 second'`);
    const next = randomUUID();
    assert.equal(await otp.start(next, PHONE, 'en', '192.0.2.3'), 'sent');
    assert.deepEqual(await otp.verify(next, sent.at(-1)!), { ok: true, residentId });
    const counter = await db.one<{ failures: number }>(
      sql`select failures from sign_in_lockouts where subject = ${phoneSubject(PHONE)}`,
    );
    assert.equal(counter?.failures, 0);
  });
});

describe('codes and refresh tokens: single use across instances, lifetimes', () => {
  test('two instances consuming the same code or refresh token: exactly one wins, every time', async () => {
    const other = await secondInstanceDb();
    try {
      const a = createPgAdapterFactory(db, { revokedGrantRetentionSeconds: 900 });
      const b = createPgAdapterFactory(other, { revokedGrantRetentionSeconds: 900 });
      for (const model of ['AuthorizationCode', 'RefreshToken']) {
        for (let round = 0; round < 10; round++) {
          const id = randomBytes(32).toString('base64url');
          const grantId = randomUUID();
          await a(model).upsert(id, { jti: id, grantId, kind: model }, 60);
          const results = await Promise.allSettled([a(model).consume(id), b(model).consume(id)]);
          assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `${model} round ${round}`);
        }
      }
    } finally {
      if (other !== db) await other.close();
    }
  });

  test('authorization codes live at most 60 s, and a lifetime over 60 s is refused by configuration', async () => {
    const config = await discover('web-app');
    const signIn = await residentSignIn(config);
    const code = signIn.back.searchParams.get('code')!;
    const row = await db.one<{ ttl: number }>(sql`select extract(epoch from expires_at - now())::int as ttl
      from oidc_models where model = 'AuthorizationCode' and id = ${code}`);
    assert.ok(row && row.ttl > 0 && row.ttl <= 60, `code lifetime ${row?.ttl}`);
    assert.throws(
      () => loadConfig({ NODE_ENV: 'test', SMART_HOME_AUTH_CODE_TTL_S: '61' }),
      (err: unknown) => err instanceof ConfigError && /SMART_HOME_AUTH_CODE_TTL_S/.test(err.message),
    );
  });

  test('a refresh token lives the idle lifetime, never past the absolute one counted from the sign-in', async () => {
    const config = await discover('web-app');
    const { back, verifier, state } = await residentSignIn(config);
    const tokens = await oidc.authorizationCodeGrant(config, back, {
      pkceCodeVerifier: verifier,
      expectedState: state,
    });
    const ttlOf = async (token: string) =>
      (await db.one<{ ttl: number }>(sql`select extract(epoch from expires_at - now())::int as ttl
        from oidc_models where model = 'RefreshToken' and id = ${token}`))!.ttl;
    const first = await ttlOf(tokens.refresh_token!);
    assert.ok(first > 280 && first <= 300, `idle lifetime ${first}`);
    // The sign-in happened 500 s ago (of the 600 s absolute lifetime): the rotated token gets the rest.
    await db.query(sql`update oidc_models
      set payload = jsonb_set(payload, '{iiat}', to_jsonb(extract(epoch from now())::int - 500))
      where model = 'RefreshToken' and id = ${tokens.refresh_token!}`);
    const rotated = await oidc.refreshTokenGrant(config, tokens.refresh_token!);
    const second = await ttlOf(rotated.refresh_token!);
    // About 100 s (give or take the rounding of two clocks), not the idle 300 s.
    assert.ok(second > 80 && second < 110, `absolute remainder ${second}`);
  });
});

describe('logs hold no secret and no personal data, at trace level', () => {
  test('a resident and an operator sign in, refresh, replay and fail: the captured log names none of it', async () => {
    const from = logLines.length;
    const secrets: string[] = [COOKIE_KEY, DPOP_NONCE_SECRET, CLIENT_SECRET, OP_PASSWORD];

    // Resident: phone + code, tokens, rotation, a replayed refresh token and a reused code.
    const web = await discover('web-app');
    const r = await residentSignIn(web);
    const code = r.back.searchParams.get('code')!;
    const tokens = await oidc.authorizationCodeGrant(web, r.back, {
      pkceCodeVerifier: r.verifier,
      expectedState: r.state,
    });
    const rotated = await oidc.refreshTokenGrant(web, tokens.refresh_token!);
    await assert.rejects(oidc.refreshTokenGrant(web, tokens.refresh_token!));
    await assert.rejects(
      oidc.authorizationCodeGrant(web, r.back, { pkceCodeVerifier: r.verifier, expectedState: r.state }),
    );
    // A wrong code typed on the page, and a code request refused by the limit.
    await ageSendCounters(INTERVAL_S);
    const s = await openResidentSignIn();
    const codePage = await askCode(s, PHONE);
    await s.browser.go(`${s.interaction}/code`, { csrf: csrfOf(codePage.body), code: '000001' });
    await askCode(s, PHONE);
    secrets.push(r.otp, code, tokens.access_token, tokens.refresh_token!, tokens.id_token!);
    secrets.push(rotated.access_token, rotated.refresh_token!);
    // The browser's session id and the cookies' signatures; the interaction's own id is in its URL
    // by design (it is worth nothing without its signed cookie).
    for (const [name, v] of r.browser.jar) if (!/^_interaction(_resume)?$/.test(name)) secrets.push(v);

    // Operator: password + TOTP, a confidential client with its secret.
    const console = await discover('operator-console', CLIENT_SECRET);
    const { url, verifier, state } = await authorizationUrl(console);
    const browser = new Browser(issuer, agent);
    const interaction = (await browser.go(url.href)).location!;
    const page = await browser.go(interaction);
    const totp = hotp(operatorSecret, totpStep(Date.now()));
    const done = await browser.go(`${interaction}/operator`, {
      csrf: csrfOf(page.body),
      login: 'audit.ops',
      password: OP_PASSWORD,
      totp,
    });
    assert.equal(done.status, 303, done.body);
    const back = new URL((await browser.go(done.location!)).location!);
    const opTokens = await oidc.authorizationCodeGrant(console, back, {
      pkceCodeVerifier: verifier,
      expectedState: state,
    });
    // A wrong client secret at the token endpoint.
    const badClient = await discover('operator-console', `${CLIENT_SECRET}x`);
    await assert.rejects(oidc.refreshTokenGrant(badClient, opTokens.refresh_token!));
    secrets.push(opTokens.access_token, opTokens.refresh_token!, back.searchParams.get('code')!);
    secrets.push(operatorSecret.toString('base64'), operatorSecret.toString('hex'));
    secrets.push(operatorSecretBase32);

    const log = logLines.slice(from).join('');
    assert.match(log, /"url":"\/oauth\/interaction\/[^"]+\/code"/, 'every request was logged');
    assert.match(log, /people token request refused/, 'the refusals were logged');
    for (const secret of secrets) {
      assert.ok(!log.includes(secret), `the log holds a secret: ${secret.slice(0, 6)}…`);
    }
    // The phone number in any spelling, and the one-time code as a JSON value.
    for (const phone of [PHONE, PHONE.slice(1), '9161234567', '916 123-45-67', '916%20123']) {
      assert.ok(!log.includes(phone), `the log holds the phone number (${phone})`);
    }
    assert.ok(!log.includes(`"${r.otp}"`) && !log.includes(`=${r.otp}`), 'the log holds the code');
    assert.ok(!log.includes(totp), 'the log holds the TOTP code');
  });
});
