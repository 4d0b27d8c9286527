import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDb } from '../../test/support/test-db.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import type { StoredEvent } from '../events/model.ts';
import { type DeviceReconciler, livenessReconciler } from './reconciler.ts';
import { DeviceHealthSink } from './sink.ts';
import { sweepDevices } from './sweeper.ts';
import { seedDevices, storedEvent } from './testing.ts';

let db: Db;
const sink = new DeviceHealthSink({ maxSkewMs: 60_000 });
const T0 = Date.parse('2026-12-02T10:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000);
const apply = (events: StoredEvent[]) => db.transaction((tx) => sink.apply(tx, events));
const sweep = (s: number, reconciler: DeviceReconciler = livenessReconciler) =>
  sweepDevices(db, at(s), { reconciler });

before(async () => {
  db = await createTestDb();
});
after(() => db?.close());

const state = async (id: string) =>
  (await db.one<{ state: string }>(sql`select state from device_health where device_id = ${id}`))?.state;
const journal = (action: string, id: string) =>
  db.query<{ result: string; details: Record<string, unknown> }>(
    sql`select result, details from journal where action = ${action} and device_id = ${id} order by seq`,
  );

describe('device health sweeper', () => {
  test('offline after interval × missed heartbeats, per partner, once; a later heartbeat brings it back', async () => {
    const std = await seedDevices(db, 1); // 30 s × 3
    const fast = await seedDevices(db, 1, { intervalS: 10, missed: 2 });
    await apply([
      storedEvent(std, 0, { type: 'device.heartbeat', receivedAt: at(0) }),
      storedEvent(fast, 0, { type: 'device.heartbeat', receivedAt: at(0) }),
    ]);
    assert.deepEqual((await sweep(20)).timedOut, []);
    assert.deepEqual((await sweep(21)).timedOut, [fast.devices[0]], 'the fast partner: 10 s × 2');
    assert.equal(await state(fast.devices[0]!), 'offline');
    assert.equal(await state(std.devices[0]!), 'online');
    assert.deepEqual((await sweep(90)).timedOut, [], 'exactly 90 s is not yet past');
    assert.deepEqual((await sweep(91)).timedOut, [std.devices[0]]);
    assert.deepEqual((await sweep(200)).timedOut, [], 'once');
    const hist = await db.query<{ status: string; source: string; event_id: string | null }>(
      sql`select status, source, event_id from device_status_history where device_id = ${std.devices[0]!}`,
    );
    assert.deepEqual(hist, [{ status: 'offline', source: 'heartbeat-timeout', event_id: null }]);
    const entries = await journal('device.offline', std.devices[0]!);
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.result, 'heartbeat-timeout');
    assert.deepEqual(
      [entries[0]!.details['heartbeatIntervalS'], entries[0]!.details['heartbeatMissed']],
      [30, 3],
    );
    await apply([storedEvent(std, 0, { type: 'device.heartbeat', receivedAt: at(210) })]);
    assert.equal(await state(std.devices[0]!), 'online');
  });

  test('a heartbeat that arrives while the time-out runs keeps the device online', async () => {
    const f = await seedDevices(db, 1);
    await apply([storedEvent(f, 0, { type: 'device.heartbeat', receivedAt: at(0) })]);
    await apply([storedEvent(f, 0, { type: 'device.heartbeat', receivedAt: at(80) })]);
    assert.deepEqual((await sweep(100)).timedOut, []);
    assert.equal(await state(f.devices[0]!), 'online');
  });

  test('two sweepers at once time a device out once', async () => {
    const f = await seedDevices(db, 20);
    await apply(f.devices.map((_, i) => storedEvent(f, i, { type: 'device.heartbeat', receivedAt: at(0) })));
    const [a, b] = await Promise.all([sweep(1000), sweep(1000)]);
    const mine = [...a.timedOut, ...b.timedOut].filter((id) => f.devices.includes(id));
    assert.equal(mine.length, 20);
    assert.equal(new Set(mine).size, 20);
    const n = await db.one<{ n: number }>(sql`select count(*)::int as n from device_status_history
      where device_id = any(${f.devices}::uuid[]) and source = 'heartbeat-timeout'`);
    assert.equal(n!.n, 20);
  });

  test('a reboot is reconciled after commit: journaled with what was checked, the flag cleared, once', async () => {
    const f = await seedDevices(db, 1);
    const d = f.devices[0]!;
    await apply([storedEvent(f, 0, { type: 'device.status', status: 'reboot', receivedAt: at(5) })]);
    const r = await sweep(6);
    assert.deepEqual(r.reconciled, [d]);
    const entries = await journal('device.reconcile', d);
    assert.equal(entries.length, 1);
    assert.deepEqual(entries[0]!.details['checked'], ['liveness']);
    assert.equal(entries[0]!.details['state'], 'online');
    assert.equal(entries[0]!.details['trigger'], 'reboot');
    assert.deepEqual((await sweep(7)).reconciled, []);
    assert.equal((await journal('device.reconcile', d)).length, 1);
  });

  test('a failing reconciliation stays pending and is retried by the next sweep', async () => {
    const f = await seedDevices(db, 1);
    const d = f.devices[0]!;
    await apply([storedEvent(f, 0, { type: 'device.status', status: 'reboot', receivedAt: at(5) })]);
    const failing: DeviceReconciler = {
      async reconcile() {
        throw new Error('partner unreachable');
      },
    };
    const r = await sweep(6, failing);
    assert.ok(r.failed.includes(d));
    assert.equal((await journal('device.reconcile', d)).length, 0);
    assert.ok((await sweep(7)).reconciled.includes(d));
    assert.equal((await journal('device.reconcile', d)).length, 1);
  });
});
