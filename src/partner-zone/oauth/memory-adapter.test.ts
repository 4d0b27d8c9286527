import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMemoryAdapterFactory } from './memory-adapter.ts';

function setup(maxEntries?: number) {
  const clock = { now: 1_000_000 };
  const factory = createMemoryAdapterFactory({ now: () => clock.now, ...(maxEntries ? { maxEntries } : {}) });
  return { clock, factory };
}

test('rows expire after their lifetime and models do not see each other', async () => {
  const { clock, factory } = setup();
  const replay = factory('ReplayDetection');
  await replay.upsert('a', { jti: 'a' }, 60);
  assert.deepEqual(await replay.find('a'), { jti: 'a' });
  assert.equal(await factory('Session').find('a'), undefined);
  clock.now += 60_000;
  assert.equal(await replay.find('a'), undefined);
});

test('consume marks the row consumed; destroy removes it', async () => {
  const { factory } = setup();
  const codes = factory('AuthorizationCode');
  await codes.upsert('c', { grantId: 'g' }, 60);
  await codes.consume('c');
  assert.equal(typeof (await codes.find('c'))?.consumed, 'number');
  await codes.destroy('c');
  assert.equal(await codes.find('c'), undefined);
});

test('a returned payload is a copy: mutating it does not change the stored row', async () => {
  const { factory } = setup();
  const grants = factory('Grant');
  await grants.upsert('g', { accountId: 'x' }, 60);
  const p = await grants.find('g');
  if (p) p.accountId = 'y';
  assert.equal((await grants.find('g'))?.accountId, 'x');
});

test('revokeByGrantId removes every row of the grant, in every model', async () => {
  const { factory } = setup();
  const at = factory('AccessToken');
  const rt = factory('RefreshToken');
  await at.upsert('t1', { grantId: 'g1' }, 60);
  await rt.upsert('t2', { grantId: 'g1' }, 60);
  await at.upsert('t3', { grantId: 'g2' }, 60);
  await at.revokeByGrantId('g1');
  assert.equal(await at.find('t1'), undefined);
  assert.equal(await rt.find('t2'), undefined);
  assert.ok(await at.find('t3'));
});

test('findByUid and findByUserCode', async () => {
  const { factory } = setup();
  const sessions = factory('Session');
  await sessions.upsert('s', { uid: 'u1' }, 60);
  assert.ok(await sessions.findByUid('u1'));
  assert.equal(await factory('Interaction').findByUid('u1'), undefined);
  const devices = factory('DeviceCode');
  await devices.upsert('d', { userCode: 'ABCD' }, 60);
  assert.ok(await devices.findByUserCode('ABCD'));
});

test('is bounded: the oldest row is evicted first', async () => {
  const { factory } = setup(2);
  const m = factory('ReplayDetection');
  await m.upsert('1', {}, 60);
  await m.upsert('2', {}, 60);
  await m.upsert('3', {}, 60);
  assert.equal(await m.find('1'), undefined);
  assert.ok(await m.find('2'));
  assert.ok(await m.find('3'));
});
