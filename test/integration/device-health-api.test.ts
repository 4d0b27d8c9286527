import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type AdminTestServer, startAdminTestServer } from '../../src/admin-api/testing.ts';
import { FieldCipher } from '../../src/crypto/field-cipher.ts';
import { kekFromBytes } from '../../src/crypto/kek.ts';
import type { Db } from '../../src/db/db.ts';
import { sql } from '../../src/db/sql.ts';
import { DeviceHealthSink } from '../../src/device-health/sink.ts';
import { type Fixture, seedDevices, storedEvent } from '../../src/device-health/testing.ts';
import type { StoredEvent } from '../../src/events/model.ts';
import { applyDocument } from '../../src/registry/apply.ts';
import { DATA_KEY_PURPOSES } from '../../src/registry/data-key-purposes.ts';
import { DocumentError, type ProvisioningDocument, validateDocument } from '../../src/registry/document.ts';
import { createTestDb } from '../support/test-db.ts';

let db: Db;
let cipher: FieldCipher;
let server: AdminTestServer;
let op: string;
let f: Fixture;
let other: Fixture;
const OPERATOR = 'op-health';
const sink = new DeviceHealthSink({ maxSkewMs: 60_000 });
const apply = (events: StoredEvent[]) => db.transaction((tx) => sink.apply(tx, events));
const now = Date.now();
const at = (s: number) => new Date(now + s * 1000);

before(async () => {
  db = await createTestDb();
  cipher = await FieldCipher.open(db, kekFromBytes(randomBytes(32)), DATA_KEY_PURPOSES);
  server = await startAdminTestServer({ db, cipher });
  op = await server.token(OPERATOR, 'operator');
  f = await seedDevices(db, 3);
  other = await seedDevices(db, 1);
  // Door 0: online, in time, a tamper and a door held open. Door 1: online, its clock 2 min behind.
  // Door 2: never heard from. The other partner's door: offline.
  await apply([
    storedEvent(f, 0, { type: 'device.heartbeat', occurredAt: at(-10), receivedAt: at(-10) }),
    storedEvent(f, 0, { type: 'device.status', status: 'tamper', occurredAt: at(-5), receivedAt: at(-5) }),
    storedEvent(f, 1, { type: 'device.heartbeat', occurredAt: at(-120), receivedAt: at(0) }),
    storedEvent(other, 0, { type: 'device.status', status: 'offline', receivedAt: at(-3) }),
  ]);
  await apply([
    storedEvent(f, 0, {
      type: 'device.status',
      status: 'door_held_open',
      occurredAt: at(-2),
      receivedAt: at(-2),
    }),
  ]);
});
after(async () => {
  await server?.close();
  await db?.close();
});

const get = (path: string, token = op) => server.call('GET', path, { token });
const items = (r: Awaited<ReturnType<AdminTestServer['call']>>) => r.body.items ?? [];
const healthOf = (d: Record<string, unknown>) => d['health'] as Record<string, unknown>;

describe('operator API: devices with their health', () => {
  test('each device with state, last seen, skew and open alerts; never-heard-of devices are unknown', async () => {
    const r = await get(`/devices?partnerId=${f.partnerId}`);
    assert.equal(r.status, 200);
    const byId = new Map(items(r).map((d) => [d['id'], healthOf(d)]));
    assert.deepEqual(byId.get(f.devices[0]), {
      state: 'online',
      lastStatus: 'door_held_open',
      lastSeenAt: at(-2).toISOString(),
      lastHeartbeatAt: at(-2).toISOString(),
      lastOccurredAt: at(-2).toISOString(),
      skewMs: 0,
      skewFlagged: false,
      reconcilePending: false,
      openAlerts: 2,
    });
    assert.equal(byId.get(f.devices[1])!['skewMs'], 120_000);
    assert.equal(byId.get(f.devices[1])!['skewFlagged'], true);
    assert.deepEqual(
      { state: byId.get(f.devices[2])!['state'], openAlerts: byId.get(f.devices[2])!['openAlerts'] },
      { state: 'unknown', openAlerts: 0 },
    );
  });

  test('filters by state, skew flag, partner and complex', async () => {
    const ids = async (q: string) => items(await get(`/devices?limit=500&${q}`)).map((d) => d['id']);
    assert.deepEqual(await ids('flagged=true'), [f.devices[1]]);
    assert.deepEqual(await ids(`state=offline`), [other.devices[0]]);
    assert.deepEqual(await ids(`state=unknown&partnerId=${f.partnerId}`), [f.devices[2]]);
    assert.deepEqual(
      new Set(await ids(`state=online&complexId=${f.complexId}`)),
      new Set([f.devices[0], f.devices[1]]),
    );
    assert.equal((await get('/devices?state=asleep')).status, 400);
    assert.equal((await get('/devices?flagged=yes')).status, 400);
  });

  test('one device: its health, recent status history (newest first) and open alerts', async () => {
    const r = await get(`/devices/${f.devices[0]}`);
    assert.equal(r.status, 200);
    assert.equal(healthOf(r.body)['state'], 'online');
    const history = r.body['statusHistory'] as Array<Record<string, unknown>>;
    assert.deepEqual(
      history.map((h) => [h['status'], h['source']]),
      [
        ['door_held_open', 'event'],
        ['tamper', 'event'],
      ],
    );
    const alerts = r.body['alerts'] as Array<Record<string, unknown>>;
    assert.deepEqual(
      alerts.map((a) => a['kind']),
      ['door_held_open', 'tamper'],
    );
    assert.equal((await get(`/devices/${randomUUID()}`)).status, 404);
  });
});

describe('operator API: alerts', () => {
  test('open alerts newest first, paged with a cursor; filters by device, partner and kind', async () => {
    const all = await get('/alerts');
    assert.equal(all.status, 200);
    assert.deepEqual(
      items(all).map((a) => a['kind']),
      ['door_held_open', 'tamper'],
    );
    const p1 = await get('/alerts?limit=1');
    assert.equal(items(p1).length, 1);
    const p2 = await get(`/alerts?limit=1&cursor=${p1.body['nextCursor']}`);
    assert.deepEqual(
      [...items(p1), ...items(p2)].map((a) => a['id']),
      items(all).map((a) => a['id']),
    );
    assert.equal(p2.body['nextCursor'], null);
    assert.equal(items(await get(`/alerts?kind=tamper&deviceId=${f.devices[0]}`)).length, 1);
    assert.equal(items(await get(`/alerts?partnerId=${other.partnerId}`)).length, 0);
    assert.equal((await get('/alerts?cursor=bm9wZQ')).status, 400);
    assert.equal((await get('/alerts?state=closed')).status, 400);
  });

  test('resolve: journaled with the operator in the same transaction, the note kept off the journal; twice is 409', async () => {
    const tamper = items(await get('/alerts?kind=tamper'))[0]!;
    const note = 'Корпус вскрыт монтажником, закрыт';
    const r = await server.call('POST', `/alerts/${tamper['id']}/resolve`, { token: op, body: { note } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body['resolvedBy'], OPERATOR);
    assert.equal(r.body['note'], note);
    assert.ok(r.body['resolvedAt']);
    const entries = await db.query<{
      actor_type: string;
      actor_id: string;
      request_id: string;
      details: unknown;
    }>(
      sql`select actor_type, actor_id, request_id, details from journal
          where action = 'device.alert.resolved' and subject_id = ${String(tamper['id'])}`,
    );
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.actor_type, 'operator');
    assert.equal(entries[0]!.actor_id, OPERATOR);
    assert.ok(entries[0]!.request_id);
    assert.ok(!JSON.stringify(entries[0]!.details).includes('монтажником'));
    const again = await server.call('POST', `/alerts/${tamper['id']}/resolve`, { token: op, body: {} });
    assert.equal(again.status, 409);
    assert.equal(again.body['type'], 'urn:smart-home:problem:alert-resolved');
    assert.equal(
      (await db.query(sql`select 1 from journal where action = 'device.alert.resolved'`)).length,
      1,
      'the refused resolve journals nothing',
    );
    assert.deepEqual(
      items(await get('/alerts?state=resolved')).map((a) => a['id']),
      [tamper['id']],
    );
    assert.equal(items(await get('/alerts?state=all')).length, 2);
    assert.equal(healthOf((await get(`/devices/${f.devices[0]}`)).body)['openAlerts'], 1);
  });

  test('bad input: unknown alert 404, unknown field 400, empty note 400', async () => {
    const open = items(await get('/alerts'))[0]!;
    const unknown = await server.call('POST', `/alerts/${randomUUID()}/resolve`, { token: op, body: {} });
    assert.equal(unknown.status, 404);
    const extra = await server.call('POST', `/alerts/${open['id']}/resolve`, {
      token: op,
      body: { note: 'x', severity: 'low' },
    });
    assert.equal(extra.status, 400);
    const empty = await server.call('POST', `/alerts/${open['id']}/resolve`, {
      token: op,
      body: { note: '' },
    });
    assert.equal(empty.status, 400);
    assert.equal(items(await get('/alerts')).length, 1, 'still open');
  });

  test('a resident token is refused (403) on every device health route; no token is 401', async () => {
    const resident = await server.token('resident-1', 'resident');
    const open = items(await get('/alerts'))[0]!;
    for (const [method, path] of [
      ['GET', '/devices'],
      ['GET', `/devices/${f.devices[0]}`],
      ['GET', '/alerts'],
      ['POST', `/alerts/${open['id']}/resolve`],
    ] as const) {
      const r = await server.call(method, path, {
        token: resident,
        ...(method === 'POST' ? { body: {} } : {}),
      });
      assert.equal(r.status, 403, `${method} ${path}`);
      assert.equal(r.body['type'], 'urn:smart-home:problem:wrong-role');
      assert.equal((await server.call(method, path, method === 'POST' ? { body: {} } : {})).status, 401);
    }
    assert.equal(items(await get('/alerts')).length, 1, 'the resident resolved nothing');
  });
});

describe('per-partner heartbeat settings (contract §9: both figures configurable per partner)', () => {
  const b64 = (c: string) => c.repeat(43);
  const doc = (heartbeat?: Record<string, number>): ProvisioningDocument =>
    validateDocument({
      version: 1,
      complexes: [{ code: 'hb', name: 'HB', buildings: [] }],
      partners: [
        {
          code: 'hb-doors',
          name: 'Doors',
          scopes: ['events:write'],
          complexes: ['hb'],
          networks: ['127.0.0.1/32'],
          certificates: [b64('A')],
          signingKeys: [{ kty: 'OKP', crv: 'Ed25519', x: b64('B'), kid: 'hb-1' }],
          encryptionKeys: [],
          ...(heartbeat ? { heartbeat } : {}),
        },
      ],
    });
  const stored = async () =>
    db.one<{ heartbeat_interval_s: number; heartbeat_missed: number }>(
      sql`select heartbeat_interval_s, heartbeat_missed from partners where code = 'hb-doors'`,
    );

  test('the provisioning document sets them (absent: 30 s and 3) and refuses insane ones', async () => {
    const actor = { type: 'system' as const, id: 'test' };
    await applyDocument({ db, cipher }, doc(), actor);
    assert.deepEqual(await stored(), { heartbeat_interval_s: 30, heartbeat_missed: 3 });
    const s = await applyDocument({ db, cipher }, doc({ intervalSeconds: 60, missed: 5 }), actor);
    assert.deepEqual(s.changes, ['partner hb-doors updated']);
    assert.deepEqual(await stored(), { heartbeat_interval_s: 60, heartbeat_missed: 5 });
    assert.equal(
      (await applyDocument({ db, cipher }, doc({ intervalSeconds: 60, missed: 5 }), actor)).updated,
      0,
    );
    for (const [hb, path] of [
      [{ intervalSeconds: 1 }, '/partners/0/heartbeat/intervalSeconds'],
      [{ missed: 0 }, '/partners/0/heartbeat/missed'],
      [{ missed: 2.5 }, '/partners/0/heartbeat/missed'],
      [{ every: 10 }, '/partners/0/heartbeat/every'],
    ] as const) {
      assert.throws(
        () => doc(hb as Record<string, number>),
        (err: unknown) => err instanceof DocumentError && err.path === path,
        JSON.stringify(hb),
      );
    }
  });

  test('the operator partner API shows and changes them, within bounds', async () => {
    const id = (await db.one<{ id: string }>(sql`select id from partners where code = 'hb-doors'`))!.id;
    const shown = await get(`/partners/${id}`);
    assert.deepEqual(shown.body['heartbeat'], { intervalSeconds: 60, missed: 5 });
    const patched = await server.call('PATCH', `/partners/${id}`, {
      token: op,
      body: { heartbeat: { intervalSeconds: 15, missed: 4 } },
    });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.deepEqual(patched.body['heartbeat'], { intervalSeconds: 15, missed: 4 });
    assert.deepEqual(await stored(), { heartbeat_interval_s: 15, heartbeat_missed: 4 });
    for (const heartbeat of [
      { intervalSeconds: 4000, missed: 3 },
      { intervalSeconds: 30 },
      { intervalSeconds: 30, missed: 0 },
    ]) {
      const r = await server.call('PATCH', `/partners/${id}`, { token: op, body: { heartbeat } });
      assert.equal(r.status, 400, JSON.stringify(heartbeat));
      assert.match(String(r.body['detail']), /^body\/heartbeat/);
    }
    assert.deepEqual(await stored(), { heartbeat_interval_s: 15, heartbeat_missed: 4 });
  });
});
