import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestDb } from '../../test/support/test-db.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import type { StoredEvent } from '../events/model.ts';
import { registry } from '../metrics/registry.ts';
import { type DeviceReconciler, livenessReconciler } from './reconciler.ts';
import { DeviceHealthSink } from './sink.ts';
import { sweepDevices } from './sweeper.ts';
import { type Fixture, seedDevices, storedEvent } from './testing.ts';

let db: Db;
const sink = new DeviceHealthSink({ maxSkewMs: 60_000 });
const T0 = Date.parse('2026-12-02T10:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000);

before(async () => {
  db = await createTestDb();
});
after(() => db?.close());

/** As the processor does: the sink inside the batch's transaction. */
const apply = (events: StoredEvent[]) => db.transaction((tx) => sink.apply(tx, events));
const sweep = (s: number, reconciler: DeviceReconciler = livenessReconciler) =>
  sweepDevices(db, at(s), { reconciler });

type Health = {
  state: string;
  last_status: string | null;
  last_seen_at: Date | null;
  last_heartbeat_at: Date | null;
  last_occurred_at: Date | null;
  skew_ms: number | null;
  skew_flagged: boolean;
  reconcile_pending: boolean;
};
const health = async (deviceId: string) =>
  db.one<Health>(sql`select state, last_status, last_seen_at, last_heartbeat_at, last_occurred_at, skew_ms,
    skew_flagged, reconcile_pending from device_health where device_id = ${deviceId}`);
const history = (deviceId: string) =>
  db.query<{ status: string; source: string; stale: boolean; event_id: string | null }>(
    sql`select status, source, stale, event_id from device_status_history where device_id = ${deviceId} order by id`,
  );
const openAlerts = (deviceId: string) =>
  db.query<{ id: string; kind: string; occurrences: number; event_id: string }>(
    sql`select id, kind, occurrences, event_id from device_alerts where device_id = ${deviceId} and resolved_at is null order by kind`,
  );
const journal = (action: string, deviceId: string) =>
  db.query<{ subject_id: string; result: string; details: Record<string, unknown>; partner_id: string }>(
    sql`select subject_id, result, details, partner_id from journal where action = ${action} and device_id = ${deviceId} order by seq`,
  );
async function metric(name: string, labels: Record<string, string>): Promise<number | undefined> {
  const m = await registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

describe('device health sink', () => {
  let f: Fixture;
  before(async () => {
    f = await seedDevices(db, 8);
  });

  test('a heartbeat makes a device online and records when it was seen; heartbeats are not status history', async () => {
    assert.equal(await health(f.devices[0]!), undefined, 'never heard from: no row (unknown)');
    await apply([storedEvent(f, 0, { type: 'device.heartbeat', receivedAt: at(1), occurredAt: at(0.5) })]);
    const h = (await health(f.devices[0]!))!;
    assert.equal(h.state, 'online');
    assert.equal(h.last_seen_at?.getTime(), at(1).getTime());
    assert.equal(h.last_heartbeat_at?.getTime(), at(1).getTime());
    assert.equal(h.last_occurred_at?.getTime(), at(0.5).getTime());
    assert.equal(h.skew_ms, 500);
    assert.equal(h.skew_flagged, false);
    assert.deepEqual(await history(f.devices[0]!), []);
  });

  test('status offline makes it offline; an older heartbeat arriving late does not bring it back, a newer one does', async () => {
    const d = f.devices[1]!;
    await apply([storedEvent(f, 1, { type: 'device.heartbeat', occurredAt: at(10), receivedAt: at(10) })]);
    await apply([
      storedEvent(f, 1, { type: 'device.status', status: 'offline', occurredAt: at(20), receivedAt: at(21) }),
    ]);
    assert.equal((await health(d))!.state, 'offline');
    await apply([storedEvent(f, 1, { type: 'device.heartbeat', occurredAt: at(15), receivedAt: at(25) })]);
    const late = (await health(d))!;
    assert.equal(late.state, 'offline', 'an older occurredAt never overwrites a newer state');
    assert.equal(late.last_seen_at?.getTime(), at(25).getTime(), 'but it was seen');
    await apply([storedEvent(f, 1, { type: 'device.heartbeat', occurredAt: at(30), receivedAt: at(30) })]);
    assert.equal((await health(d))!.state, 'online');
    assert.deepEqual(
      (await history(d)).map((r) => [r.status, r.source]),
      [['offline', 'event']],
    );
  });

  test('out of order inside one batch: the newest occurredAt wins, every status goes to history', async () => {
    const d = f.devices[2]!;
    await apply([
      storedEvent(f, 2, { type: 'device.status', status: 'offline', occurredAt: at(50), receivedAt: at(52) }),
      storedEvent(f, 2, { type: 'device.status', status: 'online', occurredAt: at(40), receivedAt: at(53) }),
    ]);
    const h = (await health(d))!;
    assert.equal(h.state, 'offline');
    assert.equal(h.last_status, 'offline');
    assert.equal(h.last_seen_at?.getTime(), at(53).getTime());
    assert.deepEqual(
      (await history(d)).map((r) => r.status),
      ['offline', 'online'],
    );
  });

  test('a device deleted after its events were stored is skipped; the rest of the batch applies', async () => {
    const gone = '0190a000-0000-7000-8000-00000000dead';
    await apply([
      {
        ...storedEvent(f, 4, { type: 'device.status', status: 'tamper', occurredAt: at(60) }),
        deviceId: gone,
      },
      storedEvent(f, 4, { type: 'device.heartbeat', occurredAt: at(61), receivedAt: at(61) }),
    ]);
    assert.equal(await health(gone), undefined);
    assert.deepEqual(await history(gone), []);
    assert.equal((await health(f.devices[4]!))?.state, 'online');
  });

  test('clock skew beyond the bound flags the device and its metric; the flag clears when skew returns', async () => {
    const d = f.devices[3]!;
    await apply([
      storedEvent(f, 3, { type: 'device.heartbeat', occurredAt: at(100), receivedAt: at(100 + 90) }),
    ]);
    let h = (await health(d))!;
    assert.equal(h.skew_ms, 90_000);
    assert.equal(h.skew_flagged, true);
    assert.equal(await metric('smart_home_device_clock_skew_seconds', { device: d }), 90);
    assert.equal(await metric('smart_home_device_clock_skew_flagged', { device: d }), 1);
    // A device clock ahead of ours is skew too.
    await apply([storedEvent(f, 3, { type: 'device.heartbeat', occurredAt: at(300), receivedAt: at(200) })]);
    assert.equal((await health(d))!.skew_flagged, true);
    await apply([storedEvent(f, 3, { type: 'device.heartbeat', occurredAt: at(229), receivedAt: at(230) })]);
    h = (await health(d))!;
    assert.equal(h.skew_ms, 1000);
    assert.equal(h.skew_flagged, false);
    assert.equal(await metric('smart_home_device_clock_skew_flagged', { device: d }), 0);
  });

  test('tamper, door_forced and door_held_open raise alerts: journal, metric, one open alert per device and kind', async () => {
    const d = f.devices[4]!;
    const before = (await metric('smart_home_device_alerts_raised_total', { kind: 'tamper' })) ?? 0;
    const first = storedEvent(f, 4, { type: 'device.status', status: 'tamper', occurredAt: at(60) });
    await apply([
      storedEvent(f, 4, { type: 'device.status', status: 'tamper', occurredAt: at(61) }),
      first,
      storedEvent(f, 4, { type: 'device.status', status: 'door_forced', occurredAt: at(62) }),
    ]);
    await apply([storedEvent(f, 4, { type: 'device.status', status: 'tamper', occurredAt: at(70) })]);
    await apply([storedEvent(f, 4, { type: 'device.status', status: 'door_held_open', occurredAt: at(80) })]);
    const alerts = await openAlerts(d);
    assert.deepEqual(
      alerts.map((a) => [a.kind, a.occurrences]),
      [
        ['door_forced', 1],
        ['door_held_open', 1],
        ['tamper', 3],
      ],
    );
    assert.equal(alerts.find((a) => a.kind === 'tamper')!.event_id, first.eventId, 'opened by the earliest');
    const raised = await journal('device.alert.raised', d);
    assert.equal(raised.length, 3, 'a repeat while open journals nothing new');
    assert.deepEqual(new Set(raised.map((r) => r.subject_id)), new Set(alerts.map((a) => a.id)));
    assert.equal(raised[0]!.partner_id, f.partnerId);
    assert.equal(raised.find((r) => r.result === 'tamper')!.details['eventId'], first.eventId);
    assert.equal(await metric('smart_home_device_alerts_raised_total', { kind: 'tamper' }), before + 1);
    assert.equal((await health(d))!.last_status, 'door_held_open');
    assert.equal((await health(d))!.state, 'online', 'a status other than offline is a sign of life');
    // Once resolved, the next tamper opens a new alert.
    await db.query(sql`update device_alerts set resolved_at = now(), resolved_by = 'op'
      where device_id = ${d} and kind = 'tamper'`);
    await apply([storedEvent(f, 4, { type: 'device.status', status: 'tamper', occurredAt: at(90) })]);
    assert.equal((await openAlerts(d)).find((a) => a.kind === 'tamper')!.occurrences, 1);
    assert.equal((await journal('device.alert.raised', d)).length, 4);
  });

  test('a reboot queues the reconciliation durably (once however many reboots)', async () => {
    const d = f.devices[5]!;
    await apply([
      storedEvent(f, 5, { type: 'device.status', status: 'reboot', occurredAt: at(1) }),
      storedEvent(f, 5, { type: 'device.status', status: 'reboot', occurredAt: at(2) }),
    ]);
    const h = (await health(d))!;
    assert.equal(h.reconcile_pending, true);
    assert.equal(h.state, 'online');
  });

  test('stale events are history and last seen only: no alert, no state, no reconciliation', async () => {
    const d = f.devices[6]!;
    await apply([
      storedEvent(f, 6, { type: 'device.status', status: 'offline', occurredAt: at(0), receivedAt: at(1) }),
    ]);
    const stale = (status: StoredEvent['status']) =>
      storedEvent(f, 6, {
        type: status ? 'device.status' : 'device.heartbeat',
        status,
        stale: true,
        occurredAt: at(-7200),
        receivedAt: at(500),
      });
    await apply([stale('tamper'), stale('reboot'), stale('online'), stale(null), stale('door_forced')]);
    const h = (await health(d))!;
    assert.equal(h.state, 'offline');
    assert.equal(h.last_status, 'offline');
    assert.equal(h.reconcile_pending, false);
    assert.equal(h.last_seen_at?.getTime(), at(500).getTime());
    assert.deepEqual(await openAlerts(d), []);
    assert.deepEqual(await journal('device.alert.raised', d), []);
    assert.deepEqual(
      (await history(d)).map((r) => [r.status, r.stale]),
      [
        ['offline', false],
        ['tamper', true],
        ['reboot', true],
        ['online', true],
        ['door_forced', true],
      ],
    );
  });

  test('access events update last seen and skew but not the state', async () => {
    const d = f.devices[7]!;
    await apply([storedEvent(f, 7, { type: 'access.granted', method: 'face', receivedAt: at(5) })]);
    const h = (await health(d))!;
    assert.equal(h.state, 'unknown');
    assert.equal(h.last_seen_at?.getTime(), at(5).getTime());
    assert.equal(h.skew_ms, 0);
  });

  test('two processors at once on the same devices: both commit, the newest state wins whatever the order', async () => {
    const g = await seedDevices(db, 20);
    const batch = (offset: number, status: 'online' | 'offline') =>
      g.devices.map((_, i) =>
        storedEvent(g, i, {
          type: 'device.status',
          status,
          occurredAt: at(offset + i),
          receivedAt: at(1000),
        }),
      );
    const a = batch(0, 'offline');
    const b = batch(100, 'online').reverse();
    // On PostgreSQL two connections; whichever commits second must not roll back the newer state
    // (PGlite runs them one after the other).
    await Promise.all([apply(a), apply(b)]);
    const states = await db.query<{ state: string; last_status: string }>(
      sql`select state, last_status from device_health where device_id = any(${g.devices}::uuid[])`,
    );
    assert.equal(states.length, 20);
    assert.ok(states.every((r) => r.state === 'online' && r.last_status === 'online'));
    const hist = await db.one<{ n: number }>(
      sql`select count(*)::int as n from device_status_history where device_id = any(${g.devices}::uuid[])`,
    );
    assert.equal(hist!.n, 40);
  });

  test('set-wise: a batch of 500 events over 50 devices in one call, each status in history once', async () => {
    const g = await seedDevices(db, 50);
    const events: StoredEvent[] = [];
    for (let i = 0; i < 500; i++) {
      const dev = i % 50;
      events.push(
        i % 10 === 9
          ? storedEvent(g, dev, { type: 'device.status', status: 'door_held_open', occurredAt: at(i) })
          : storedEvent(g, dev, { type: 'device.heartbeat', occurredAt: at(i) }),
      );
    }
    await apply(events);
    const n = await db.one<{ online: number; alerts: number; hist: number }>(sql`select
      (select count(*)::int from device_health where device_id = any(${g.devices}::uuid[]) and state = 'online') as online,
      (select count(*)::int from device_alerts where device_id = any(${g.devices}::uuid[])) as alerts,
      (select count(*)::int from device_status_history where device_id = any(${g.devices}::uuid[])) as hist`);
    assert.deepEqual(n, { online: 50, alerts: 5, hist: 50 });
  });
});

const state = async (id: string) =>
  (await db.one<{ state: string }>(sql`select state from device_health where device_id = ${id}`))?.state;
const journalOf = (action: string, id: string) =>
  db.query<{ result: string; details: Record<string, unknown> }>(
    sql`select result, details from journal where action = ${action} and device_id = ${id} order by seq`,
  );

describe('device health sweeper', () => {
  // Devices of the suite above are online too: each test looks at its own devices only.
  const own = (ids: string[], ...fs: Fixture[]) => ids.filter((id) => fs.some((f) => f.devices.includes(id)));
  test('offline after interval × missed heartbeats, per partner, once; a later heartbeat brings it back', async () => {
    const std = await seedDevices(db, 1); // 30 s × 3
    const fast = await seedDevices(db, 1, { intervalS: 10, missed: 2 });
    await apply([
      storedEvent(std, 0, { type: 'device.heartbeat', receivedAt: at(0) }),
      storedEvent(fast, 0, { type: 'device.heartbeat', receivedAt: at(0) }),
    ]);
    assert.deepEqual(own((await sweep(20)).timedOut, std, fast), []);
    assert.deepEqual(
      own((await sweep(21)).timedOut, std, fast),
      [fast.devices[0]],
      'the fast partner: 10 s × 2',
    );
    assert.equal(await state(fast.devices[0]!), 'offline');
    assert.equal(await state(std.devices[0]!), 'online');
    assert.deepEqual(own((await sweep(90)).timedOut, std, fast), [], 'exactly 90 s is not yet past');
    assert.deepEqual(own((await sweep(91)).timedOut, std, fast), [std.devices[0]]);
    assert.deepEqual(own((await sweep(200)).timedOut, std, fast), [], 'once');
    const hist = await db.query<{ status: string; source: string; event_id: string | null }>(
      sql`select status, source, event_id from device_status_history where device_id = ${std.devices[0]!}`,
    );
    assert.deepEqual(hist, [{ status: 'offline', source: 'heartbeat-timeout', event_id: null }]);
    const entries = await journalOf('device.offline', std.devices[0]!);
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
    assert.deepEqual(own((await sweep(100)).timedOut, f), []);
    assert.equal(await state(f.devices[0]!), 'online');
  });

  test('a backfilled heartbeat sets no liveness: fetched late, it does not keep a silent device online', async () => {
    const f = await seedDevices(db, 2);
    await apply([
      storedEvent(f, 0, { type: 'device.heartbeat', receivedAt: at(0) }),
      storedEvent(f, 0, {
        type: 'device.heartbeat',
        receivedAt: at(80),
        occurredAt: at(60),
        via: 'backfill',
      }),
      storedEvent(f, 1, {
        type: 'device.heartbeat',
        receivedAt: at(80),
        occurredAt: at(60),
        via: 'backfill',
      }),
    ]);
    assert.equal(await state(f.devices[0]!), 'online');
    assert.equal(await state(f.devices[1]!), 'online', 'the state follows the event');
    const r = await sweep(95);
    assert.deepEqual(new Set(own(r.timedOut, f)), new Set(f.devices), 'heard live 95 s ago, or never');
    const entry = (await journalOf('device.offline', f.devices[1]!))[0]!;
    assert.equal(entry.details['lastHeartbeatAt'], null);
  });

  test('status history older than the retention is purged by the sweep; younger rows stay', async () => {
    const f = await seedDevices(db, 1);
    const day = 86_400;
    await apply([
      storedEvent(f, 0, { type: 'device.status', status: 'online', receivedAt: at(-40 * day) }),
      storedEvent(f, 0, { type: 'device.status', status: 'tamper', receivedAt: at(-10 * day) }),
    ]);
    const r = await sweepDevices(db, at(0), { reconciler: livenessReconciler, historyDays: 30 });
    assert.ok(r.purged >= 1);
    const left = await db.query<{ status: string; source: string }>(
      sql`select status, source from device_status_history where device_id = ${f.devices[0]!} order by id`,
    );
    // The same sweep also timed the silent device out: a fresh row.
    assert.deepEqual(
      left.map((r) => [r.status, r.source]),
      [
        ['tamper', 'event'],
        ['offline', 'heartbeat-timeout'],
      ],
    );
  });

  test('two sweepers at once time a device out once', async () => {
    const f = await seedDevices(db, 20);
    await apply(f.devices.map((_, i) => storedEvent(f, i, { type: 'device.heartbeat', receivedAt: at(0) })));
    const [a, b] = await Promise.all([sweep(1000), sweep(1000)]);
    const mine = own([...a.timedOut, ...b.timedOut], f);
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
    assert.ok(r.reconciled.includes(d));
    const entries = await journalOf('device.reconcile', d);
    assert.equal(entries.length, 1);
    assert.deepEqual(entries[0]!.details['checked'], ['liveness']);
    assert.equal(entries[0]!.details['state'], 'online');
    assert.equal(entries[0]!.details['trigger'], 'reboot');
    assert.ok(!(await sweep(7)).reconciled.includes(d));
    assert.equal((await journalOf('device.reconcile', d)).length, 1);
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
    assert.equal((await journalOf('device.reconcile', d)).length, 0);
    assert.ok((await sweep(7)).reconciled.includes(d));
    assert.equal((await journalOf('device.reconcile', d)).length, 1);
  });
});
