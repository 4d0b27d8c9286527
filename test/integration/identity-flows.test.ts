import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import * as oidc from 'openid-client';
import { Agent, request } from 'undici';
import { Browser, csrfOf, residentSignInWalk } from '../../simulator/resident-app.ts';
import { loadConfig } from '../../src/config/config.ts';
import { sql } from '../../src/db/sql.ts';
import { createOperator } from '../../src/identity/operators.ts';
import { consoleOtpOutbox } from '../../src/identity/otp-sender.ts';
import { base32Decode, hotp, totpStep } from '../../src/identity/totp.ts';
import { PURPOSE_PII } from '../../src/registry/apply.ts';
import { createRuntime, ensureDevelopmentMaterial, type Runtime } from '../../src/server.ts';
import { freePort } from '../../src/util/free-port.ts';
import { writeOAuthClients } from '../support/oauth-clients.ts';
import { discoverClient } from '../support/oidc-client.ts';
import { createTestDb } from '../support/test-db.ts';

const REDIRECT = 'https://app.example/callback';
const APP_REDIRECT = 'ru.propdevelopment.smarthome:/oauth/callback';
const PHONE = '+79123456789';
const OP_PASSWORD = 'correct horse battery staple';

let runtime: Runtime;
let dataDir: string;
let issuer: string;
let agent: Agent;
let residentId: string;
let operatorSecret: Buffer;

const discover = (clientId: string, secret?: string) => discoverClient(issuer, agent, clientId, secret);

const newBrowser = (lang = 'en') => new Browser(issuer, agent, lang);

function nextCode(): Promise<string> {
  return new Promise((resolve) => consoleOtpOutbox.once('code', ({ code }) => resolve(code)));
}

/** Authorization request → sign-in pages → the redirect back to the client (its URL). */
function residentSignIn(authUrl: URL, browser = newBrowser()): Promise<URL> {
  return residentSignInWalk(browser, authUrl, '8 (912) 345-67-89', nextCode);
}

async function authorizationUrl(
  config: oidc.Configuration,
  redirect: string,
  extra: Record<string, string> = {},
) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirect,
    scope: 'openid offline_access api',
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    ...extra,
  });
  return { url, verifier, state };
}

async function verifyAccessToken(token: string) {
  const jwks = createLocalJWKSet(runtime.app.identity.jwks as never);
  return jwtVerify(token, jwks, {
    issuer,
    audience: 'urn:smart-home:api',
    typ: 'at+jwt',
    algorithms: ['ES256'],
  });
}

before(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'smart-home-identity-'));
  const port = await freePort();
  const clientsFile = await writeOAuthClients(dataDir, [
    { clientId: 'web-app', role: 'resident', redirectUris: [REDIRECT] },
    { clientId: 'mobile-app', role: 'resident', redirectUris: [APP_REDIRECT], dpopBoundAccessTokens: true },
    {
      clientId: 'operator-console',
      role: 'operator',
      redirectUris: [REDIRECT],
      clientSecret: 'console-secret-console-secret-console-secret',
    },
  ]);
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'silent',
    SMART_HOME_DATA_DIR: dataDir,
    SMART_HOME_PUBLIC_PORT: String(port),
    SMART_HOME_PARTNER_PORT: '0',
    SMART_HOME_OAUTH_CLIENTS_FILE: clientsFile,
    SMART_HOME_OTP_MAX_ATTEMPTS: '3',
    SMART_HOME_OPERATOR_MAX_FAILURES: '3',
    // Many sign-ins of one number from one address, back to back: the send limits have their own
    // tests (identity-hardening.test.ts).
    SMART_HOME_OTP_SEND_INTERVAL_S: '0',
    SMART_HOME_OTP_SEND_MAX_PER_PHONE: '1000',
    SMART_HOME_OTP_SEND_MAX_PER_ADDRESS: '100000',
  });
  await ensureDevelopmentMaterial(config);
  runtime = await createRuntime(config, undefined, { db: await createTestDb() });
  await runtime.app.publicApp.listen({ host: '127.0.0.1', port });
  issuer = `https://localhost:${port}`;
  agent = new Agent({ connect: { ca: await readFile(path.join(dataDir, 'pki', 'service-ca.crt'), 'utf8') } });

  residentId = randomUUID();
  const { cipher, db } = runtime;
  await db.query(sql`insert into residents (id, ref, full_name_enc, phone_enc, phone_index) values (${residentId}, 'r-1',
    ${cipher.encrypt(PURPOSE_PII, { table: 'residents', column: 'full_name_enc', rowId: residentId }, 'Иван Петров')},
    ${cipher.encrypt(PURPOSE_PII, { table: 'residents', column: 'phone_enc', rowId: residentId }, PHONE)},
    ${cipher.blindIndex(PURPOSE_PII, PHONE)})`);
  const op = await createOperator({ db, cipher }, 'duty.ops', OP_PASSWORD);
  operatorSecret = base32Decode(new URL(op.otpauthUri).searchParams.get('secret')!);
});

after(async () => {
  await runtime?.close();
  await agent?.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe('resident: authorization code + PKCE over TLS', () => {
  test('discovery names the /oauth endpoints, S256 only, PAR, DPoP and RFC 9207 iss', async () => {
    const config = await discover('web-app');
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, issuer);
    assert.equal(meta.authorization_endpoint, `${issuer}/oauth/authorize`);
    assert.equal(meta.token_endpoint, `${issuer}/oauth/token`);
    assert.equal(meta.pushed_authorization_request_endpoint, `${issuer}/oauth/par`);
    assert.deepEqual(meta.code_challenge_methods_supported, ['S256']);
    assert.equal(meta.authorization_response_iss_parameter_supported, true);
    assert.ok(meta.dpop_signing_alg_values_supported?.includes('ES256'));
    assert.equal(meta.registration_endpoint, undefined);
    assert.equal(meta.userinfo_endpoint, undefined);
  });

  test('sign-in with phone and code yields an at+jwt for the API with role resident and sub = residents.id', async () => {
    const config = await discover('web-app');
    const { url, verifier, state } = await authorizationUrl(config, REDIRECT);
    const back = await residentSignIn(url);
    assert.equal(back.searchParams.get('iss'), issuer);
    const tokens = await oidc.authorizationCodeGrant(config, back, {
      pkceCodeVerifier: verifier,
      expectedState: state,
    });
    assert.equal(tokens.token_type.toLowerCase(), 'bearer');
    const { payload, protectedHeader } = await verifyAccessToken(tokens.access_token);
    assert.equal(protectedHeader.typ, 'at+jwt');
    assert.equal(payload.sub, residentId);
    assert.equal(payload['role'], 'resident');
    assert.equal(payload['client_id'], 'web-app');
    assert.equal(payload['scope'], 'api');
    assert.equal(payload.exp! - payload.iat!, 600);
    assert.ok(tokens.refresh_token);
    assert.equal(tokens.claims()?.sub, residentId);
    const entries = await runtime.db.query<{ result: string; actor_id: string | null; details: unknown }>(
      sql`select result, actor_id, details from journal where action = 'auth.resident.sign_in' and actor_id = ${residentId}`,
    );
    assert.ok(entries.some((e) => e.result === 'success'));
    assert.ok(!JSON.stringify(entries).includes('912'), 'no phone number in the journal');
  });
});

async function tokenError(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    const e = err as { error?: string; code?: string; cause?: { error?: string } };
    return e.error ?? e.cause?.error ?? e.code;
  }
  assert.fail('the request was expected to be refused');
}

describe('resident: PAR, refresh rotation, reuse detection, revocation', () => {
  test('a pushed authorization request (RFC 9126) signs in like a plain one', async () => {
    const config = await discover('web-app');
    const verifier = oidc.randomPKCECodeVerifier();
    const url = await oidc.buildAuthorizationUrlWithPAR(config, {
      redirect_uri: REDIRECT,
      scope: 'api',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
    });
    assert.match(url.searchParams.get('request_uri') ?? '', /^urn:ietf:params:oauth:request_uri:/);
    assert.equal(url.searchParams.get('redirect_uri'), null, 'parameters travel by PAR only');
    const back = await residentSignIn(url);
    const tokens = await oidc.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier });
    const { payload } = await verifyAccessToken(tokens.access_token);
    assert.equal(payload.sub, residentId);
  });

  test('every refresh rotates the token; replaying a used one revokes the grant, the newest too', async () => {
    const config = await discover('web-app');
    const { url, verifier, state } = await authorizationUrl(config, REDIRECT);
    const tokens = await oidc.authorizationCodeGrant(config, await residentSignIn(url), {
      pkceCodeVerifier: verifier,
      expectedState: state,
    });
    const rt1 = tokens.refresh_token!;
    const second = await oidc.refreshTokenGrant(config, rt1);
    const rt2 = second.refresh_token!;
    assert.ok(rt2 && rt2 !== rt1, 'rotated');
    assert.equal((await verifyAccessToken(second.access_token)).payload['role'], 'resident');
    const third = await oidc.refreshTokenGrant(config, rt2);
    const rt3 = third.refresh_token!;
    // rt1 was used already: a thief or a replay. The whole grant goes.
    assert.equal(await tokenError(oidc.refreshTokenGrant(config, rt2)), 'invalid_grant');
    assert.equal(await tokenError(oidc.refreshTokenGrant(config, rt3)), 'invalid_grant');
  });

  test('a revoked refresh token (RFC 7009) no longer refreshes', async () => {
    const config = await discover('web-app');
    const { url, verifier, state } = await authorizationUrl(config, REDIRECT);
    const tokens = await oidc.authorizationCodeGrant(config, await residentSignIn(url), {
      pkceCodeVerifier: verifier,
      expectedState: state,
    });
    await oidc.tokenRevocation(config, tokens.refresh_token!);
    assert.equal(await tokenError(oidc.refreshTokenGrant(config, tokens.refresh_token!)), 'invalid_grant');
  });
});

describe('resident: DPoP (RFC 9449)', () => {
  test('a DPoP-bound client gets tokens bound to its key (cnf.jkt), also after refresh', async () => {
    const config = await discover('mobile-app');
    const keyPair = await oidc.randomDPoPKeyPair('ES256');
    const DPoP = oidc.getDPoPHandle(config, keyPair);
    const { url, verifier, state } = await authorizationUrl(config, APP_REDIRECT);
    const tokens = await oidc.authorizationCodeGrant(
      config,
      await residentSignIn(url),
      { pkceCodeVerifier: verifier, expectedState: state },
      undefined,
      { DPoP },
    );
    assert.equal(tokens.token_type.toLowerCase(), 'dpop');
    const { calculateJwkThumbprint, exportJWK } = await import('jose');
    const jkt = await calculateJwkThumbprint(await exportJWK(keyPair.publicKey));
    const { payload } = await verifyAccessToken(tokens.access_token);
    assert.deepEqual(payload['cnf'], { jkt });
    const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token!, undefined, { DPoP });
    assert.deepEqual(decodeJwt(refreshed.access_token)['cnf'], { jkt });
    // Another key cannot use the bound refresh token (public client: the refresh token is bound too).
    const other = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair('ES256'));
    assert.equal(
      await tokenError(oidc.refreshTokenGrant(config, refreshed.refresh_token!, undefined, { DPoP: other })),
      'invalid_grant',
    );
  });

  test('a client registered with dpop_bound_access_tokens is refused without a proof', async () => {
    const config = await discover('mobile-app');
    const { url, verifier } = await authorizationUrl(config, APP_REDIRECT);
    const back = await residentSignIn(url);
    const res = await request(`${issuer}/oauth/token`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        client_id: 'mobile-app',
        code: back.searchParams.get('code')!,
        redirect_uri: APP_REDIRECT,
        code_verifier: verifier,
      }).toString(),
    });
    const body = (await res.body.json()) as { error: string; access_token?: string };
    assert.equal(res.statusCode, 400);
    // oidc-provider answers a missing proof for such a client with invalid_grant ("DPoP proof JWT not provided").
    assert.equal(body.error, 'invalid_grant');
    assert.equal(body.access_token, undefined);
  });
});

describe('resident: refused authorization and token requests', () => {
  test('a redirect URI not registered exactly is refused without redirecting', async () => {
    const config = await discover('web-app');
    for (const redirect of [`${REDIRECT}/x`, `${REDIRECT}?a=1`, 'https://evil.example/callback']) {
      const { url } = await authorizationUrl(config, redirect);
      const res = await newBrowser().go(url.href);
      assert.equal(res.status, 400, redirect);
      assert.equal(res.location, undefined);
      assert.match(res.body, /redirect_uri/);
    }
  });

  test('PKCE plain, or no PKCE at all, is refused', async () => {
    const config = await discover('web-app');
    const plain = oidc.buildAuthorizationUrl(config, {
      redirect_uri: REDIRECT,
      scope: 'openid',
      code_challenge: oidc.randomPKCECodeVerifier(),
      code_challenge_method: 'plain',
    });
    const none = oidc.buildAuthorizationUrl(config, { redirect_uri: REDIRECT, scope: 'openid' });
    for (const url of [plain, none]) {
      const res = await newBrowser().go(url.href);
      assert.equal(res.status, 303);
      const back = new URL(res.location!);
      assert.equal(back.origin + back.pathname, REDIRECT);
      assert.equal(back.searchParams.get('error'), 'invalid_request');
      assert.equal(back.searchParams.get('code'), null);
    }
  });

  test('a code is single-use: the second exchange fails and revokes what the first issued', async () => {
    const config = await discover('web-app');
    const { url, verifier, state } = await authorizationUrl(config, REDIRECT);
    const back = await residentSignIn(url);
    const tokens = await oidc.authorizationCodeGrant(config, back, {
      pkceCodeVerifier: verifier,
      expectedState: state,
    });
    assert.equal(
      await tokenError(
        oidc.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: state }),
      ),
      'invalid_grant',
    );
    assert.equal(await tokenError(oidc.refreshTokenGrant(config, tokens.refresh_token!)), 'invalid_grant');
  });

  test('an expired code is refused', async () => {
    const config = await discover('web-app');
    const { url, verifier, state } = await authorizationUrl(config, REDIRECT);
    const back = await residentSignIn(url);
    await runtime.db.query(
      sql`update oidc_models set expires_at = now() - interval '1 second' where model = 'AuthorizationCode'`,
    );
    assert.equal(
      await tokenError(
        oidc.authorizationCodeGrant(config, back, { pkceCodeVerifier: verifier, expectedState: state }),
      ),
      'invalid_grant',
    );
  });

  test('the wrong code verifier is refused', async () => {
    const config = await discover('web-app');
    const { url, state } = await authorizationUrl(config, REDIRECT);
    const back = await residentSignIn(url);
    assert.equal(
      await tokenError(
        oidc.authorizationCodeGrant(config, back, {
          pkceCodeVerifier: oidc.randomPKCECodeVerifier(),
          expectedState: state,
        }),
      ),
      'invalid_grant',
    );
  });
});

/** Opens a sign-in for the web app and returns the browser on its phone page. */
async function openResidentSignIn(lang = 'en') {
  const config = await discover('web-app');
  const { url } = await authorizationUrl(config, REDIRECT);
  const browser = newBrowser(lang);
  const start = await browser.go(url.href);
  const interaction = start.location!;
  const page = await browser.go(interaction);
  return { browser, interaction, page };
}

describe('resident sign-in pages: one-time codes', () => {
  test('pages follow Accept-Language and switch by link', async () => {
    const ru = await openResidentSignIn('ru-RU,ru;q=0.9,en;q=0.5');
    assert.match(ru.page.body, /<html lang="ru">/);
    assert.match(ru.page.body, /Номер телефона/);
    const en = await ru.browser.go(`${ru.interaction}?lang=en`);
    assert.match(en.body, /<html lang="en">/);
    assert.match(en.body, /Phone number/);
    assert.doesNotMatch(en.body, /<script/i);
  });

  test('an unknown number gets the same page as a known one, and no code is sent', async () => {
    const known = await openResidentSignIn();
    let sent = 0;
    const count = () => sent++;
    consoleOtpOutbox.on('code', count);
    try {
      const a = await known.browser.go(`${known.interaction}/phone`, {
        csrf: csrfOf(known.page.body),
        phone: PHONE,
      });
      const unknown = await openResidentSignIn();
      const b = await unknown.browser.go(`${unknown.interaction}/phone`, {
        csrf: csrfOf(unknown.page.body),
        phone: '+79000000000',
      });
      assert.equal(a.status, b.status);
      const strip = (html: string, uid: string) => html.replace(/value="[^"]+"/g, '').replaceAll(uid, 'UID');
      assert.equal(strip(a.body, known.interaction), strip(b.body, unknown.interaction));
      assert.equal(sent, 1);
    } finally {
      consoleOtpOutbox.off('code', count);
    }
  });

  test('a malformed phone number is answered with a clear message', async () => {
    const { browser, interaction, page } = await openResidentSignIn();
    const res = await browser.go(`${interaction}/phone`, { csrf: csrfOf(page.body), phone: '12ab' });
    assert.equal(res.status, 400);
    assert.match(res.body, /The phone number is not valid/);
  });

  test('a wrong code is refused; too many lock the number, even the right code then fails', async () => {
    const { browser, interaction, page } = await openResidentSignIn();
    const code = nextCode();
    const codePage = await browser.go(`${interaction}/phone`, { csrf: csrfOf(page.body), phone: PHONE });
    const right = await code;
    const wrong = right === '000000' ? '111111' : '000000';
    const csrf = csrfOf(codePage.body);
    const first = await browser.go(`${interaction}/code`, { csrf, code: wrong });
    assert.equal(first.status, 400);
    assert.match(first.body, /The code is wrong/);
    await browser.go(`${interaction}/code`, { csrf, code: wrong });
    const third = await browser.go(`${interaction}/code`, { csrf, code: wrong });
    assert.equal(third.status, 429);
    assert.match(third.body, /Too many failed attempts/);
    const late = await browser.go(`${interaction}/code`, { csrf, code: right });
    assert.equal(late.status, 429);
    // The lock is on the number: a new sign-in cannot even ask for a code.
    const again = await openResidentSignIn();
    const refused = await again.browser.go(`${again.interaction}/phone`, {
      csrf: csrfOf(again.page.body),
      phone: PHONE,
    });
    assert.equal(refused.status, 429);
    const journal = await runtime.db.query<{ result: string }>(
      sql`select result from journal where action = 'auth.resident.sign_in' and result <> 'success'`,
    );
    assert.ok(journal.some((e) => e.result === 'wrong'));
    assert.ok(journal.some((e) => e.result === 'locked'));
    await runtime.db.query(sql`delete from sign_in_lockouts`);
  });

  test('an expired code is refused and the phone form is shown again', async () => {
    const { browser, interaction, page } = await openResidentSignIn();
    const code = nextCode();
    const codePage = await browser.go(`${interaction}/phone`, { csrf: csrfOf(page.body), phone: PHONE });
    const right = await code;
    await runtime.db.query(sql`update sign_in_codes set expires_at = now() - interval '1 second'`);
    const res = await browser.go(`${interaction}/code`, { csrf: csrfOf(codePage.body), code: right });
    assert.equal(res.status, 400);
    assert.match(res.body, /The code has expired/);
    assert.match(res.body, /name="phone"/);
  });

  test('codes are stored only as keyed hashes', async () => {
    const { browser, interaction, page } = await openResidentSignIn();
    const code = nextCode();
    await browser.go(`${interaction}/phone`, { csrf: csrfOf(page.body), phone: PHONE });
    const plain = await code;
    const rows = await runtime.db.query<{ code_hash: string }>(sql`select code_hash from sign_in_codes`);
    assert.ok(rows.length > 0);
    for (const r of rows) assert.ok(!r.code_hash.includes(plain) && r.code_hash.length === 43);
  });

  test('a form without the cookie-bound CSRF token, or with another one, is refused', async () => {
    const { browser, interaction, page } = await openResidentSignIn();
    const other = await openResidentSignIn();
    const forged = await browser.go(`${interaction}/phone`, { csrf: csrfOf(other.page.body), phone: PHONE });
    assert.equal(forged.status, 403);
    browser.jar.delete('sh_csrf');
    const noCookie = await browser.go(`${interaction}/phone`, { csrf: csrfOf(page.body), phone: PHONE });
    assert.equal(noCookie.status, 403);
    const unknownField = await other.browser.go(`${other.interaction}/phone`, {
      csrf: csrfOf(other.page.body),
      phone: PHONE,
      admin: '1',
    });
    assert.equal(unknownField.status, 400);
  });
});

describe('operator: password + TOTP', () => {
  async function openOperatorSignIn() {
    const config = await discover('operator-console', 'console-secret-console-secret-console-secret');
    const { url, verifier, state } = await authorizationUrl(config, REDIRECT);
    const browser = newBrowser();
    const start = await browser.go(url.href);
    const interaction = start.location!;
    const page = await browser.go(interaction);
    assert.match(page.body, /name="password"/);
    return { config, verifier, state, browser, interaction, page };
  }
  const totpNow = () => hotp(operatorSecret, totpStep(Date.now()));

  test('password + TOTP yields a token with role operator; the same TOTP step is not accepted twice', async () => {
    const s = await openOperatorSignIn();
    const code = totpNow();
    const done = await s.browser.go(`${s.interaction}/operator`, {
      csrf: csrfOf(s.page.body),
      login: 'duty.ops',
      password: OP_PASSWORD,
      totp: code,
    });
    assert.equal(done.status, 303, done.body);
    const back = new URL((await s.browser.go(done.location!)).location!);
    const tokens = await oidc.authorizationCodeGrant(s.config, back, {
      pkceCodeVerifier: s.verifier,
      expectedState: s.state,
    });
    const { payload } = await verifyAccessToken(tokens.access_token);
    const op = await runtime.db.one<{ id: string }>(sql`select id from operators where login = 'duty.ops'`);
    assert.equal(payload.sub, op!.id);
    assert.equal(payload['role'], 'operator');
    // A disabled operator's refresh token no longer works.
    await runtime.db.query(sql`update operators set enabled = false where id = ${op!.id}`);
    try {
      assert.equal(
        await tokenError(oidc.refreshTokenGrant(s.config, tokens.refresh_token!)),
        'invalid_grant',
      );
    } finally {
      await runtime.db.query(sql`update operators set enabled = true where id = ${op!.id}`);
    }

    const again = await openOperatorSignIn();
    const replay = await again.browser.go(`${again.interaction}/operator`, {
      csrf: csrfOf(again.page.body),
      login: 'duty.ops',
      password: OP_PASSWORD,
      totp: code,
    });
    assert.equal(replay.status, 401);
    assert.match(replay.body, /Wrong login, password or code/);
  });

  test("an operator's sign-in session is never reused for a resident client", async () => {
    const s = await openOperatorSignIn();
    // The step after the one the previous test used, so this sign-in is not a replay.
    const code = hotp(operatorSecret, totpStep(Date.now()) + 1);
    const done = await s.browser.go(`${s.interaction}/operator`, {
      csrf: csrfOf(s.page.body),
      login: 'duty.ops',
      password: OP_PASSWORD,
      totp: code,
    });
    assert.equal(done.status, 303, done.body);
    await s.browser.go(done.location!);
    const config = await discover('web-app');
    const { url } = await authorizationUrl(config, REDIRECT);
    const res = await s.browser.go(url.href);
    assert.equal(res.status, 303);
    assert.match(
      res.location!,
      /^\/oauth\/interaction\//,
      'a resident sign-in is asked for, no code is issued',
    );
    const page = await s.browser.go(res.location!);
    assert.match(page.body, /name="phone"/);
  });

  test('wrong password, unknown login: the same answer; repeated failures lock the login', async () => {
    const s = await openOperatorSignIn();
    const csrf = csrfOf(s.page.body);
    const wrong = await s.browser.go(`${s.interaction}/operator`, {
      csrf,
      login: 'duty.ops',
      password: 'nope-nope-nope',
      totp: totpNow(),
    });
    const unknown = await s.browser.go(`${s.interaction}/operator`, {
      csrf,
      login: 'nobody',
      password: OP_PASSWORD,
      totp: totpNow(),
    });
    assert.equal(wrong.status, 401);
    assert.equal(unknown.status, 401);
    assert.equal(wrong.body, unknown.body);
    await s.browser.go(`${s.interaction}/operator`, {
      csrf,
      login: 'duty.ops',
      password: 'nope-nope-nope',
      totp: '123456',
    });
    const locked = await s.browser.go(`${s.interaction}/operator`, {
      csrf,
      login: 'duty.ops',
      password: 'nope',
      totp: '123456',
    });
    assert.equal(locked.status, 429);
    const journal = await runtime.db.query<{ result: string }>(
      sql`select result from journal where action = 'auth.operator.sign_in'`,
    );
    assert.ok(journal.some((e) => e.result === 'invalid'));
    assert.ok(journal.some((e) => e.result === 'locked'));
    assert.ok(!JSON.stringify(journal).includes(OP_PASSWORD));
  });
});
