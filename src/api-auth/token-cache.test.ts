import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createLocalJWKSet, exportJWK, generateKeyPair, type JWTVerifyGetKey, SignJWT } from 'jose';
import { createTestDb } from '../../test/support/test-db.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { type ApiTokenVerifierOptions, createApiTokenVerifier } from './access-token.ts';
import { ApiAuthError } from './errors.ts';
import { API_AUDIENCE, ROLE_CLAIM } from './principal.ts';

/**
 * The verified-token cache of the access-token check (SMART_HOME_API_TOKEN_CACHE_S): a repeated token
 * skips the signature check, but never outlives its `exp` or the cache's ttl, a token that differs in
 * any byte is checked in full, and the live resident look-up still runs on every request.
 */

const ISSUER = 'https://id.test.invalid';
let db: Db;
let privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
let keyLookups = 0;
let getKey: JWTVerifyGetKey;
let clock = Math.floor(Date.now() / 1000);

async function resident(): Promise<string> {
  const id = randomUUID();
  await db.query(sql`insert into residents (id, ref, full_name_enc, phone_enc, phone_index)
    values (${id}, ${`r-${id}`}, 'v1.x.placeholder', 'v1.x.placeholder', ${`idx-${id}`})`);
  return id;
}

const mint = (sub: string, lifetimeSeconds = 600) =>
  new SignJWT({ [ROLE_CLAIM]: 'resident', client_id: 'mobile-app', scope: 'api' })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'k1' })
    .setIssuer(ISSUER)
    .setAudience(API_AUDIENCE)
    .setSubject(sub)
    .setIssuedAt(clock)
    .setJti(randomUUID())
    .setExpirationTime(clock + lifetimeSeconds)
    .sign(privateKey);

const verifier = (extra: Partial<ApiTokenVerifierOptions> = {}) =>
  createApiTokenVerifier({
    issuer: ISSUER,
    jwks: getKey,
    db,
    clockToleranceSeconds: 10,
    now: () => clock,
    verifiedCache: { ttlSeconds: 60, max: 100 },
    ...extra,
  });

const bearer = (token: string) => ({
  method: 'GET',
  url: '/api/v1/me',
  headers: { authorization: `Bearer ${token}` },
});

before(async () => {
  db = await createTestDb();
  const pair = await generateKeyPair('ES256', { extractable: true });
  privateKey = pair.privateKey;
  const local = createLocalJWKSet({
    keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256' }],
  });
  // Every full check resolves the key once; a remembered token does not.
  getKey = (header, token) => {
    keyLookups++;
    return local(header, token);
  };
});
after(() => db.close());

test('a repeated token is served from the cache; another token, or one changed in any byte, is checked in full', async () => {
  const v = verifier();
  const id = await resident();
  const token = await mint(id);
  keyLookups = 0;
  assert.equal((await v.authenticate(bearer(token))).kind, 'resident');
  assert.equal((await v.authenticate(bearer(token))).kind, 'resident');
  assert.equal(keyLookups, 1, 'the second request skipped the signature check');

  await v.authenticate(bearer(await mint(id)));
  assert.equal(keyLookups, 2, 'a different token of the same resident is checked');

  // A character inside the signature (the last one may only carry padding bits, which decode alike).
  const at = token.length - 10;
  const tampered = token.slice(0, at) + (token[at] === 'A' ? 'B' : 'A') + token.slice(at + 1);
  await assert.rejects(v.authenticate(bearer(tampered)), ApiAuthError);
  assert.equal(keyLookups, 3);
});

test('a remembered token still ends at its exp (+ leeway), and the cache ttl ends a long-lived one sooner', async () => {
  const start = clock;
  try {
    const v = verifier();
    const id = await resident();
    const short = await mint(id, 30);
    await v.authenticate(bearer(short));
    clock = start + 30 + 10; // exp + leeway: jose's own boundary
    await assert.rejects(v.authenticate(bearer(short)), (e: ApiAuthError) => e.reason === 'ERR_JWT_EXPIRED');

    clock = start;
    const long = await mint(id, 3600);
    keyLookups = 0;
    await v.authenticate(bearer(long));
    clock = start + 59;
    await v.authenticate(bearer(long));
    assert.equal(keyLookups, 1, 'within the ttl: remembered');
    clock = start + 60;
    await v.authenticate(bearer(long));
    assert.equal(keyLookups, 2, 'past the ttl: checked again');
  } finally {
    clock = start;
  }
});

test('the resident is looked up on every request: a removed resident is refused although the token is remembered', async () => {
  const v = verifier();
  const id = await resident();
  const token = await mint(id);
  await v.authenticate(bearer(token));
  await db.query(sql`delete from residents where id = ${id}`);
  await assert.rejects(v.authenticate(bearer(token)), (e: ApiAuthError) => e.reason === 'subject:unknown');
});

test('at most `max` tokens are remembered (the oldest goes first); ttl 0 turns the cache off', async () => {
  const id = await resident();
  const [a, b] = [await mint(id), await mint(id)];
  const small = verifier({ verifiedCache: { ttlSeconds: 60, max: 1 } });
  keyLookups = 0;
  await small.authenticate(bearer(a));
  await small.authenticate(bearer(b)); // a is forgotten
  await small.authenticate(bearer(b));
  assert.equal(keyLookups, 2);
  await small.authenticate(bearer(a));
  assert.equal(keyLookups, 3);

  const off = verifier({ verifiedCache: { ttlSeconds: 0, max: 100 } });
  keyLookups = 0;
  await off.authenticate(bearer(a));
  await off.authenticate(bearer(a));
  assert.equal(keyLookups, 2);
});
