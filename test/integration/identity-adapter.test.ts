import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { errors } from 'oidc-provider';
import { FieldCipher } from '../../src/crypto/field-cipher.ts';
import { kekFromBytes } from '../../src/crypto/kek.ts';
import type { Db } from '../../src/db/db.ts';
import { sql } from '../../src/db/sql.ts';
import { clearFailures, isLocked, recordFailure } from '../../src/identity/lockout.ts';
import { createOperator, verifyOperator } from '../../src/identity/operators.ts';
import { createPgAdapterFactory, purgeExpiredOidcModels } from '../../src/identity/pg-adapter.ts';
import { base32Decode, hotp, totpStep } from '../../src/identity/totp.ts';
import { DATA_KEY_PURPOSES } from '../../src/registry/data-key-purposes.ts';
import { createTestDb } from '../support/test-db.ts';

let db: Db;
let cipher: FieldCipher;
before(async () => {
  db = await createTestDb();
  cipher = await FieldCipher.open(db, kekFromBytes(randomBytes(32)), DATA_KEY_PURPOSES);
});
after(() => db?.close());

const adapter = (model: string) => createPgAdapterFactory(db, { revokedGrantRetentionSeconds: 900 })(model);

test('consume is atomic: of 20 concurrent uses of a refresh token exactly one wins, and the losers revoke its grant', async () => {
  const rt = adapter('RefreshToken');
  const grantId = randomUUID();
  const id = randomBytes(32).toString('base64url');
  await rt.upsert(id, { jti: id, grantId, kind: 'RefreshToken' }, 3600);
  await adapter('Grant').upsert(grantId, { jti: grantId, kind: 'Grant' }, 3600);
  const other = randomBytes(32).toString('base64url');
  await rt.upsert(other, { jti: other, grantId, kind: 'RefreshToken' }, 3600);

  const results = await Promise.allSettled(Array.from({ length: 20 }, () => rt.consume(id)));
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  for (const r of results) {
    if (r.status === 'rejected') assert.ok(r.reason instanceof errors.InvalidGrant);
  }
  // The replay took the whole grant with it: the sibling token and the grant itself are gone.
  assert.equal(await rt.find(other), undefined);
  assert.equal(await adapter('Grant').find(grantId), undefined);
});

test('a consumed payload reads back with `consumed`; other models consume without revoking', async () => {
  const session = adapter('Interaction');
  await session.upsert('i1', { jti: 'i1', kind: 'Interaction' }, 60);
  await session.consume('i1');
  await session.consume('i1');
  const found = await session.find('i1');
  assert.equal(typeof found?.consumed, 'number');
});

test('find, findByUid and findByUserCode honour expiry; revokeByGrantId and destroy remove rows', async () => {
  const s = adapter('Session');
  await s.upsert('s1', { jti: 's1', uid: 'u1', kind: 'Session' }, 60);
  assert.equal((await s.findByUid('u1'))?.jti, 's1');
  const dc = adapter('DeviceCode');
  await dc.upsert('d1', { jti: 'd1', userCode: 'ABCD', kind: 'DeviceCode' }, 60);
  assert.equal((await dc.findByUserCode('ABCD'))?.jti, 'd1');
  await db.query(
    sql`update oidc_models set expires_at = now() - interval '1 second' where id in ('s1', 'd1')`,
  );
  assert.equal(await s.find('s1'), undefined);
  assert.equal(await s.findByUid('u1'), undefined);
  assert.equal(await dc.findByUserCode('ABCD'), undefined);
  assert.ok((await purgeExpiredOidcModels(db, 900)) >= 2);
  assert.equal((await db.query(sql`select 1 from oidc_models where id in ('s1', 'd1')`)).length, 0);

  const code = adapter('AuthorizationCode');
  await code.upsert('c1', { jti: 'c1', grantId: 'g1', kind: 'AuthorizationCode' }, 60);
  await code.upsert('c2', { jti: 'c2', grantId: 'g2', kind: 'AuthorizationCode' }, 60);
  await code.revokeByGrantId('g1');
  assert.equal(await code.find('c1'), undefined);
  assert.equal((await code.find('c2'))?.jti, 'c2');
  await code.destroy('c2');
  assert.equal(await code.find('c2'), undefined);
  // An upsert replaces the payload of the same id.
  await code.upsert('c3', { jti: 'c3', kind: 'AuthorizationCode', scope: 'a' }, 60);
  await code.upsert('c3', { jti: 'c3', kind: 'AuthorizationCode', scope: 'b' }, 60);
  assert.equal((await code.find('c3'))?.scope, 'b');
});

test('lockout counts failures per subject and locks at the limit', async () => {
  const policy = { maxFailures: 3, lockoutSeconds: 60 };
  const subject = `phone:${randomUUID()}`;
  assert.equal(await recordFailure(db, subject, policy), false);
  await clearFailures(db, subject);
  assert.equal(await recordFailure(db, subject, policy), false);
  assert.equal(await recordFailure(db, subject, policy), false);
  assert.equal(await isLocked(db, subject), false);
  assert.equal(await recordFailure(db, subject, policy), true);
  assert.equal(await isLocked(db, subject), true);
  // Concurrent failures on a fresh subject lock it exactly once the limit is crossed.
  const racing = `phone:${randomUUID()}`;
  await Promise.all(Array.from({ length: 10 }, () => recordFailure(db, racing, policy)));
  assert.equal(await isLocked(db, racing), true);
});

test('operators: scrypt hash, encrypted TOTP secret, a step accepted once even under concurrency', async () => {
  const { id, otpauthUri } = await createOperator({ db, cipher }, 'night.ops', 'a long enough password');
  const row = await db.one<{ password_hash: string; totp_secret_enc: string }>(
    sql`select password_hash, totp_secret_enc from operators where id = ${id}`,
  );
  assert.match(row!.password_hash, /^scrypt\$32768\$8\$1\$/);
  const secret = base32Decode(new URL(otpauthUri).searchParams.get('secret')!);
  assert.ok(!row!.totp_secret_enc.includes(secret.toString('base64url')));
  await assert.rejects(
    createOperator({ db, cipher }, 'night.ops', 'a long enough password'),
    /already exists/,
  );
  await assert.rejects(createOperator({ db, cipher }, 'x', 'short'), /login/);
  await assert.rejects(createOperator({ db, cipher }, 'day.ops', 'short'), /at least 12/);

  const policy = { maxFailures: 10, lockoutSeconds: 60 };
  const now = Date.now();
  const code = hotp(secret, totpStep(now));
  const tries = await Promise.all(
    Array.from({ length: 4 }, () =>
      verifyOperator({ db, cipher, policy, now: () => now }, 'night.ops', 'a long enough password', code),
    ),
  );
  assert.equal(tries.filter((r) => r.ok).length, 1);
  // The next step's code works once the clock moves on; the previous step is then too old.
  const later = now + 30_000;
  const next = hotp(secret, totpStep(later));
  assert.equal(
    (
      await verifyOperator(
        { db, cipher, policy, now: () => later },
        'night.ops',
        'a long enough password',
        next,
      )
    ).ok,
    true,
  );
  await db.query(sql`update operators set enabled = false where id = ${id}`);
  const disabled = await verifyOperator(
    { db, cipher, policy, now: () => later + 60_000 },
    'night.ops',
    'a long enough password',
    hotp(secret, totpStep(later + 60_000)),
  );
  assert.deepEqual(disabled, { ok: false, reason: 'invalid' });
});
