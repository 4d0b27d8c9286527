// The whole path on the real runtime, as the residents' mobile app and the operator console drive it:
// sign-in on the embedded authorization server (openid-client, no-JS pages, real TLS), the real
// /api/v1 and /admin/v1 behind the real access-token check, doors through the real outbound channel to
// the simulator's intercom, and a barrier partner asking for decisions over the partner API.
import assert from 'node:assert/strict';
import { createHmac, createPublicKey, hash, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { base64url, type CryptoKey, exportJWK, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { Agent, request } from 'undici';
import type { IntercomSimulator } from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { consoleOtp, ResidentApp, type ResidentAppOptions } from '../../simulator/resident-app.ts';
import { sql } from '../../src/db/sql.ts';
import { createOperator } from '../../src/identity/operators.ts';
import { loadSigningKey } from '../../src/keys/service-keys.ts';
import { writeOAuthClients } from '../support/oauth-clients.ts';
import { createTestDb } from '../support/test-db.ts';
import { deviceId, standardIntercom, standardWorld } from '../support/world.ts';

/** Anna of the standard world: North, building 1, entrance 1. */
const PHONE = '+79001112233';
/**
 * Neighbours added here, one per sign-in beyond Anna's: sign-in codes are rate-limited per phone
 * number, so each phone signs in once.
 */
const NEIGHBOURS = {
  kira: '+79001110001',
  lev: '+79001110002',
  mira: '+79001110003',
  nina: '+79001110004',
} as const;
const WEB_REDIRECT = 'https://app.example/callback';
const APP_REDIRECT = 'ru.propdevelopment.smarthome:/oauth/callback';
const CONSOLE_SECRET = 'console-secret-console-secret-console-secret';
const OP_PASSWORD = 'correct horse battery staple';

let h: LocalStack;
let sim: IntercomSimulator;
let north: PartnerClient;
let clientsDir: string;
let agent: Agent;
let totpSecret: string;
const ids: Record<string, string> = {};
const apps: ResidentApp[] = [];

function newApp(
  clientId: 'web-app' | 'mobile-app' | 'operator-console',
  extra: Partial<ResidentAppOptions> = {},
) {
  const app = new ResidentApp({
    issuer: h.publicUrl,
    ca: h.serverCa,
    clientId,
    redirectUri: clientId === 'mobile-app' ? APP_REDIRECT : WEB_REDIRECT,
    ...(clientId === 'mobile-app' ? { dpop: true } : {}),
    ...(clientId === 'operator-console' ? { clientSecret: CONSOLE_SECRET } : {}),
    ...extra,
  });
  apps.push(app);
  return app;
}

async function residentApp(
  phone: string,
  clientId: 'web-app' | 'mobile-app',
  extra: Partial<ResidentAppOptions> = {},
) {
  const app = newApp(clientId, extra);
  await app.signIn(phone, consoleOtp(phone));
  return app;
}

// biome-ignore lint/suspicious/noExplicitAny: JSON answers of every route, asserted field by field
type Json = any;

type Answer = { status: number; headers: Record<string, string | string[] | undefined>; body: Json };

/** A raw call on the public listener with exactly the headers given. */
async function raw(
  method: 'GET' | 'POST',
  p: string,
  headers: Record<string, string>,
  body?: string,
): Promise<Answer> {
  const res = await request(`${h.publicUrl}${p}`, {
    method,
    headers,
    dispatcher: agent,
    ...(body !== undefined ? { body } : {}),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

function assertProblem(
  a: { status: number; body: Json; headers: Answer['headers'] },
  status: number,
  code: string,
) {
  assert.equal(a.status, status, JSON.stringify(a.body));
  assert.equal(a.body?.type, `urn:smart-home:problem:${code}`);
}

before(async () => {
  clientsDir = await mkdtemp(path.join(tmpdir(), 'smart-home-e2e-'));
  const clientsFile = await writeOAuthClients(clientsDir, [
    { clientId: 'web-app', role: 'resident', redirectUris: [WEB_REDIRECT] },
    { clientId: 'mobile-app', role: 'resident', redirectUris: [APP_REDIRECT], dpopBoundAccessTokens: true },
    {
      clientId: 'operator-console',
      role: 'operator',
      redirectUris: [WEB_REDIRECT],
      clientSecret: CONSOLE_SECRET,
    },
  ]);
  h = await startLocalStack({
    db: await createTestDb(),
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }, { code: 'intercom-north' }],
    env: { SMART_HOME_OAUTH_CLIENTS_FILE: clientsFile },
    document: async (identities, dataDir) => {
      const doc = standardWorld(identities);
      const intercom = await standardIntercom(identities, dataDir, ['door-b1e1'], ['north']);
      sim = intercom.sim;
      doc.partners!.push(intercom.partner);
      for (const [ref, phone] of Object.entries(NEIGHBOURS))
        doc.residents!.push({ ref, fullName: `Сосед ${ref}`, phone, apartments: ['north/b1/e1/2'] });
      doc.devices!.push({
        partner: 'intercom-north',
        externalId: 'door-b1e1',
        kind: 'door',
        name: 'Подъезд 1, корпус 1',
        complex: 'north',
        building: 'b1',
        entrance: 'e1',
      });
      return doc;
    },
  });
  north = await h.client('barrier-north');
  agent = new Agent({ connect: { ca: h.serverCa } });
  ids['anna'] = (await h.runtime.db.one<{ id: string }>(
    sql`select id from residents where ref = 'anna'`,
  ))!.id;
  for (const [k, p, e] of [
    ['gate1', 'barrier-north', 'gate-1'],
    ['gateS', 'barrier-south', 'gate-s'],
    ['door', 'intercom-north', 'door-b1e1'],
  ] as const) {
    ids[k] = await deviceId(h.runtime.db, p, e);
  }
  const op = await createOperator({ db: h.runtime.db, cipher: h.runtime.cipher }, 'duty.ops', OP_PASSWORD);
  totpSecret = new URL(op.otpauthUri).searchParams.get('secret')!;
});

after(async () => {
  await Promise.allSettled(apps.map((a) => a.close()));
  await agent?.close();
  await h?.close();
  await sim?.stop();
  if (clientsDir) await rm(clientsDir, { recursive: true, force: true });
});

describe('a resident with the mobile app (PAR, DPoP-bound tokens)', () => {
  let app: ResidentApp;
  before(async () => {
    app = await residentApp(PHONE, 'mobile-app', { par: true });
  });

  test('signs in, sees herself and her access points, opens a door; the history shows it', async () => {
    assert.equal(app.tokens!.tokenType, 'DPoP');
    const me = await app.api<Json>('GET', '/me');
    assert.equal(me.status, 200);
    assert.equal(me.body.id, ids['anna']);
    assert.equal(me.body.phone, PHONE);

    const points = await app.api<Json>('GET', '/access-points');
    assert.equal(points.status, 200);
    const byId = new Map(points.body.items.map((p: { id: string }) => [p.id, p]));
    assert.deepEqual(byId.get(ids['door']), {
      id: ids['door'],
      kind: 'door',
      name: 'Подъезд 1, корпус 1',
      enabled: true,
    });
    assert.equal((byId.get(ids['gate1']) as { kind: string }).kind, 'barrier');
    assert.ok(!byId.has(ids['gateS']), "another complex's barrier is not hers");

    const open = await app.api<Json>('POST', `/access-points/${ids['door']}/open`);
    assert.equal(open.status, 200, JSON.stringify(open.body));
    assert.equal(open.body.status, 'opened');
    assert.equal(open.body.accessPointId, ids['door']);
    const opening = sim.openings.find((o) => o.commandId === open.body.commandId);
    assert.equal(opening?.doorId, 'door-b1e1', 'the intercom acted on this very command');

    const history = await app.api<Json>('GET', '/history');
    assert.equal(history.status, 200);
    const result = history.body.items.find(
      (e: { action: string; accessPoint?: { id: string } }) =>
        e.action === 'door.open.result' && e.accessPoint?.id === ids['door'],
    );
    assert.equal(result?.result, 'opened');
  });

  test('adds a car through /api/v1; the barrier partner then lets it in', async () => {
    const before = await north.barrierRead('gate-1', 'К 777 КК 77');
    assert.equal(before.body['decision'], 'deny');
    const add = await app.api<Json>('POST', '/vehicles', { plate: 'к777кк77' });
    assert.equal(add.status, 201, JSON.stringify(add.body));
    assert.equal(add.body.plate, 'К777КК77');
    const read = await north.barrierRead('gate-1', 'К 777 КК 77');
    assert.deepEqual([read.body['decision'], read.body['reason']], ['open', 'resident_vehicle']);
  });

  test('a guest pass through /api/v1 opens the barrier it names inside its window only', async () => {
    const hour = 3600_000;
    const now = Date.now();
    const active = await app.api<Json>('POST', '/guest-passes', {
      plate: 'О 555 ОО 177',
      validUntil: new Date(now + 2 * hour).toISOString(),
      barrierIds: [ids['gate1']],
    });
    assert.equal(active.status, 201, JSON.stringify(active.body));
    assert.equal(active.body.status, 'active');
    const tomorrow = await app.api<Json>('POST', '/guest-passes', {
      plate: 'Т 321 ТТ 77',
      validFrom: new Date(now + 24 * hour).toISOString(),
      validUntil: new Date(now + 26 * hour).toISOString(),
      barrierIds: [ids['gate1']],
    });
    assert.equal(tomorrow.status, 201, JSON.stringify(tomorrow.body));
    assert.equal(tomorrow.body.status, 'scheduled');

    const inWindow = await north.barrierRead('gate-1', 'О555ОО177');
    assert.deepEqual([inWindow.body['decision'], inWindow.body['reason']], ['open', 'guest_pass']);
    const early = await north.barrierRead('gate-1', 'Т321ТТ77');
    assert.deepEqual([early.body['decision'], early.body['reason']], ['deny', 'pass_not_valid_now']);
    // The window's end, without waiting for it.
    await h.runtime.db.query(
      sql`update guest_passes set valid_from = now() - interval '2 hours', valid_until = now() - interval '1 second'
          where id = ${active.body.id}`,
    );
    const late = await north.barrierRead('gate-1', 'О555ОО177');
    assert.deepEqual([late.body['decision'], late.body['reason']], ['deny', 'pass_not_valid_now']);
  });

  test('the DPoP-bound token works only with a fresh proof by its own key', async () => {
    const token = app.accessToken;
    const url = `${h.publicUrl}/api/v1/me`;
    assert.equal((await app.api('GET', '/me')).status, 200);
    const noProof = await raw('GET', '/api/v1/me', { authorization: `DPoP ${token}` });
    assertProblem(noProof, 401, 'invalid-dpop-proof');
    const asBearer = await raw('GET', '/api/v1/me', { authorization: `Bearer ${token}` });
    assertProblem(asBearer, 401, 'invalid-token');
    const proof = await app.dpopProof('GET', url, token);
    assert.equal(
      (await raw('GET', '/api/v1/me', { authorization: `DPoP ${token}`, dpop: proof })).status,
      200,
    );
    const replayed = await raw('GET', '/api/v1/me', { authorization: `DPoP ${token}`, dpop: proof });
    assertProblem(replayed, 401, 'invalid-dpop-proof');
    const other = newApp('mobile-app');
    await other.configuration();
    const foreign = await raw('GET', '/api/v1/me', {
      authorization: `DPoP ${token}`,
      dpop: await other.dpopProof('GET', url, token),
    });
    assertProblem(foreign, 401, 'invalid-dpop-proof');
    const otherUrl = await raw('GET', '/api/v1/me', {
      authorization: `DPoP ${token}`,
      dpop: await app.dpopProof('GET', `${h.publicUrl}/api/v1/vehicles`, token),
    });
    assertProblem(otherUrl, 401, 'invalid-dpop-proof');
  });

  test('a resident token on /admin/v1 is 403', async () => {
    const res = await app.admin<Json>('GET', '/residents');
    assertProblem(res, 403, 'wrong-role');
  });
});

describe('DPoP server nonces: one secret for the authorization server and the API', () => {
  test('an old proof is answered use_dpop_nonce; with the nonce it is accepted, at the API and at the token endpoint', async () => {
    const app = await residentApp(NEIGHBOURS.kira, 'mobile-app');
    const token = app.accessToken;
    const url = `${h.publicUrl}/api/v1/me`;
    const key = app.dpopKeyPair!;
    const pubJwk = await exportJWK(key.publicKey);
    const oldProof = (nonce?: string, target = url, method = 'GET', ath: string | undefined = token) =>
      new SignJWT({
        htm: method,
        htu: target,
        ...(ath ? { ath: hash('sha256', ath, 'base64url') } : {}),
        ...(nonce ? { nonce } : {}),
      })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: pubJwk })
        .setJti(randomUUID())
        .setIssuedAt(Math.floor(Date.now() / 1000) - 3600)
        .sign(key.privateKey);

    const challenged = await raw('GET', '/api/v1/me', {
      authorization: `DPoP ${token}`,
      dpop: await oldProof(),
    });
    assertProblem(challenged, 401, 'use-dpop-nonce');
    assert.match(String(challenged.headers['www-authenticate']), /error="use_dpop_nonce"/);
    const nonce = challenged.headers['dpop-nonce'];
    assert.equal(typeof nonce, 'string');
    const accepted = await raw('GET', '/api/v1/me', {
      authorization: `DPoP ${token}`,
      dpop: await oldProof(nonce as string),
    });
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    const forged = await raw('GET', '/api/v1/me', {
      authorization: `DPoP ${token}`,
      dpop: await oldProof(base64url.encode(new Uint8Array(32))),
    });
    assertProblem(forged, 401, 'use-dpop-nonce');

    // The API's nonce is the authorization server's too (the same secret): a refresh with a proof
    // carrying it, and an iat an hour old, is accepted; a made-up nonce is not.
    const tokenEndpoint = `${h.publicUrl}/oauth/token`;
    const refresh = async (proofNonce: string) =>
      raw(
        'POST',
        '/oauth/token',
        {
          'content-type': 'application/x-www-form-urlencoded',
          dpop: await oldProof(proofNonce, tokenEndpoint, 'POST', undefined),
        },
        new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: app.refreshToken!,
          client_id: 'mobile-app',
        }).toString(),
      );
    const refused = await refresh(base64url.encode(new Uint8Array(32)));
    assert.equal(refused.body?.error, 'use_dpop_nonce', JSON.stringify(refused.body));
    const refreshed = await refresh(nonce as string);
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.equal(refreshed.body.token_type, 'DPoP');
  });

  test('a phone whose clock is an hour behind gets through by the nonce the API hands it', async () => {
    const app = newApp('mobile-app', { clockSkewSeconds: -3600 });
    await app.signIn(NEIGHBOURS.nina, consoleOtp(NEIGHBOURS.nina));
    const token = app.accessToken;
    const stale = await raw('GET', '/api/v1/me', {
      authorization: `DPoP ${token}`,
      dpop: await app.dpopProof('GET', `${h.publicUrl}/api/v1/me`, token),
    });
    assertProblem(stale, 401, 'use-dpop-nonce');
    const first = await app.api<Json>('GET', '/me');
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(app.dpopNonceRetries, 1, 'challenged once, then sent again with the nonce');
    assert.equal((await app.api('GET', '/vehicles')).status, 200);
    assert.equal(app.dpopNonceRetries, 1, 'the nonce it keeps carries the next call through');
  });
});

describe('the operator console', () => {
  test('signs in with password and TOTP; /admin/v1 answers, /api/v1 is 403', async () => {
    const op = newApp('operator-console');
    await op.signInOperator('duty.ops', OP_PASSWORD, totpSecret);
    assert.equal(op.tokens!.tokenType, 'Bearer');
    const residents = await op.admin<Json>('GET', '/residents');
    assert.equal(residents.status, 200, JSON.stringify(residents.body));
    assertProblem(await op.api('GET', '/me'), 403, 'wrong-role');
  });
});

describe('refresh', () => {
  test('rotates; a replayed refresh token revokes the grant, the newest refresh token too', async () => {
    const app = await residentApp(NEIGHBOURS.lev, 'web-app');
    assert.equal(app.tokens!.tokenType, 'Bearer');
    const rt1 = app.refreshToken!;
    const at1 = app.accessToken;
    await app.refresh();
    const rt2 = app.refreshToken!;
    assert.ok(rt2 !== rt1 && app.accessToken !== at1, 'both tokens are new');
    assert.equal((await app.api('GET', '/me')).status, 200);

    await assert.rejects(app.refresh(rt1), (e: { error?: string }) => e.error === 'invalid_grant');
    await assert.rejects(app.refresh(rt2), (e: { error?: string }) => e.error === 'invalid_grant');
    // The access token in hand (a self-contained JWT, RFC 9068) names its grant (`gid`): the API refuses
    // it at once, not at its exp.
    assertProblem(await app.api('GET', '/me'), 401, 'invalid-token');
    // Only that grant: the other residents signed in by earlier tests are untouched.
    const others = apps.filter((a) => a !== app && a.tokens !== undefined);
    assert.ok(others.length > 0);
    for (const o of others) assert.notEqual((await o.api('GET', '/me')).status, 401);
  });
});

describe('JWT attacks on the real /api/v1/me', () => {
  const now = () => Math.floor(Date.now() / 1000);
  let signer: { privateKey: CryptoKey; kid: string; publicJwk: JWK };
  let idToken: string;
  let partnerToken: string;

  before(async () => {
    const key = await loadSigningKey(path.join(h.dataDir, 'keys', 'identity-token-signing.jwk'), 'ES256');
    signer = {
      privateKey: (await importJWK(key.privateJwk, 'ES256')) as CryptoKey,
      kid: key.kid,
      publicJwk: key.publicJwk,
    };
    const app = await residentApp(NEIGHBOURS.mira, 'web-app');
    idToken = app.tokens!.idToken!;
    partnerToken = await north.token('barrier:decide');
  });

  /** A token as the embedded server issues it, with `over` replacing (undefined: removing) claims. */
  async function mint(
    over: Record<string, unknown> = {},
    header: Record<string, unknown> = {},
    privateKey: CryptoKey = signer.privateKey,
  ) {
    const claims: Record<string, unknown> = {
      iss: h.publicUrl,
      aud: 'urn:smart-home:api',
      sub: ids['anna'],
      role: 'resident',
      scope: 'api',
      client_id: 'web-app',
      iat: now(),
      exp: now() + 600,
      jti: randomUUID(),
      ...over,
    };
    for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
    return new SignJWT(claims)
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: signer.kid, ...header } as { alg: string })
      .sign(privateKey);
  }

  function unsigned(alg: string, claims: Record<string, unknown>, secret?: string | Buffer) {
    const enc = (o: unknown) => base64url.encode(JSON.stringify(o));
    const input = `${enc({ alg, typ: 'at+jwt', kid: signer.kid })}.${enc(claims)}`;
    if (!secret) return `${input}.`;
    return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
  }

  function validClaims() {
    return {
      iss: h.publicUrl,
      aud: 'urn:smart-home:api',
      sub: ids['anna'],
      role: 'resident',
      scope: 'api',
      client_id: 'web-app',
      iat: now(),
      exp: now() + 600,
      jti: randomUUID(),
    };
  }

  test('each forged or misused token is 401 invalid_token; the genuine shape is accepted', async () => {
    const pem = createPublicKey({ key: signer.publicJwk as never, format: 'jwk' })
      .export({ type: 'spki', format: 'pem' })
      .toString();
    const otherKey = (await generateKeyPair('ES256')).privateKey;
    const cases: [string, () => Promise<string>][] = [
      ['alg none', async () => unsigned('none', validClaims())],
      ['HS256 keyed with the public key (PEM)', async () => unsigned('HS256', validClaims(), pem)],
      [
        'HS256 keyed with the public key (JWK JSON)',
        async () => unsigned('HS256', validClaims(), JSON.stringify(signer.publicJwk)),
      ],
      ['another audience', () => mint({ aud: 'urn:smart-home:partner-api' })],
      ['another issuer (our partner listener)', () => mint({ iss: h.partnerUrl })],
      ['no audience', () => mint({ aud: undefined })],
      ['the ID token of a real sign-in', async () => idToken],
      ['expired', () => mint({ iat: now() - 3600, exp: now() - 1800 })],
      ['nbf in the future', () => mint({ nbf: now() + 3600 })],
      ['issued in the future', () => mint({ iat: now() + 3600, exp: now() + 4200 })],
      ['signed by another key under the published kid', () => mint({}, {}, otherKey as CryptoKey)],
      ['typ JWT instead of at+jwt', () => mint({}, { typ: 'JWT' })],
      ['a partner access token of our partner listener', async () => partnerToken],
    ];
    const genuine = await raw('GET', '/api/v1/me', { authorization: `Bearer ${await mint()}` });
    assert.equal(genuine.status, 200, 'the minted shape is what the server accepts');
    assert.equal(genuine.body.id, ids['anna']);
    for (const [name, make] of cases) {
      const res = await raw('GET', '/api/v1/me', { authorization: `Bearer ${await make()}` });
      assert.equal(res.status, 401, `${name}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body?.type, 'urn:smart-home:problem:invalid-token', name);
      assert.match(String(res.headers['www-authenticate']), /error="invalid_token"/, name);
      assert.equal(res.body?.id, undefined, name);
    }
  });
});
