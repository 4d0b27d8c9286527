/**
 * The device health sweeper, run in the background of every instance (like the journal sequencer):
 *
 * - heartbeat time-outs (contract §9: offline after `heartbeat_missed` missed heartbeats of
 *   `heartbeat_interval_s`, per partner): an online device whose last liveness signal was received
 *   longer ago becomes offline, once — a history row (source `heartbeat-timeout`) and a `device.offline`
 *   journal entry in the same transaction;
 * - reconciliation after a reboot: every device with `reconcile_pending` is reconciled
 *   (reconciler.ts), journaled `device.reconcile`, and the flag cleared, in one transaction per device.
 *
 * Safe on several instances: rows are claimed `for update skip locked`, so two sweepers never take the
 * same device, and a state is re-checked under the lock.
 */
import type { Logger } from 'pino';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { JOURNAL_COLUMNS, type JournalEntry, journalValues } from '../journal/journal.ts';
import { uuidv7 } from '../util/uuid.ts';
import { devicesByState, devicesTimedOut, reconciliations } from './metrics.ts';
import type { DeviceReconciler } from './reconciler.ts';

export interface SweepOptions {
  reconciler: DeviceReconciler;
  /** Most devices timed out, and most reconciled, per sweep. */
  batchMax?: number;
  /** Status history older than this many days is deleted (SMART_HOME_DEVICE_HISTORY_DAYS); absent: kept. */
  historyDays?: number | undefined;
  logger?: Logger;
}

export interface SweepResult {
  timedOut: string[];
  reconciled: string[];
  failed: string[];
  /** Status history rows deleted as past SMART_HOME_DEVICE_HISTORY_DAYS. */
  purged: number;
}

/** One sweep at `now` (our clock; tests inject it). */
export async function sweepDevices(db: Db, now: Date, opts: SweepOptions): Promise<SweepResult> {
  const batchMax = opts.batchMax ?? 1000;
  const timedOut = await timeOut(db, now, batchMax);
  const result: SweepResult = { timedOut, reconciled: [], failed: [], purged: 0 };
  const pending = await db.query<{ device_id: string }>(
    sql`select device_id from device_health where reconcile_pending
        order by reconcile_requested_at limit ${batchMax}`,
  );
  for (const { device_id } of pending) {
    try {
      if (await reconcileOne(db, device_id, now, opts.reconciler)) result.reconciled.push(device_id);
    } catch (err) {
      reconciliations.inc({ result: 'failed' });
      result.failed.push(device_id);
      opts.logger?.error({ err, deviceId: device_id }, 'device reconciliation failed; retried next sweep');
    }
  }
  if (opts.historyDays !== undefined) {
    // A bounded delete per sweep: a long backlog goes in slices instead of one long transaction.
    const cutoff = new Date(now.getTime() - opts.historyDays * 86_400_000);
    const gone = await db.query<{ id: number }>(sql`delete from device_status_history where id in (
        select id from device_status_history where received_at < ${cutoff}::timestamptz limit ${batchMax * 10})
      returning id`);
    result.purged = gone.length;
  }
  await countStates(db);
  return result;
}

async function timeOut(db: Db, now: Date, batchMax: number): Promise<string[]> {
  return db.transaction(async (tx) => {
    const rows = await tx.query<{
      device_id: string;
      partner_id: string;
      last_heartbeat_at: Date | null;
      interval_s: number;
      missed: number;
    }>(sql`with due as (
        select h.device_id, d.partner_id, p.heartbeat_interval_s as interval_s, p.heartbeat_missed as missed
        from device_health h join devices d on d.id = h.device_id join partners p on p.id = d.partner_id
        where h.state = 'online'
          -- online without a live heartbeat (only backfilled events were heard): due at once
          and coalesce(h.last_heartbeat_at, '-infinity') < ${now}::timestamptz - make_interval(secs => p.heartbeat_interval_s * p.heartbeat_missed)
        order by h.last_heartbeat_at nulls first, h.device_id
        limit ${batchMax}
        for update of h skip locked)
      update device_health h set state = 'offline', updated_at = ${now}
      from due where h.device_id = due.device_id and h.state = 'online'
      returning h.device_id, due.partner_id, h.last_heartbeat_at, due.interval_s, due.missed`);
    if (rows.length === 0) return [];
    await tx.query(sql`insert into device_status_history (device_id, status, occurred_at, received_at, event_id, source)
      select d, 'offline', ${now}::timestamptz, ${now}::timestamptz, null, 'heartbeat-timeout'
      from unnest(${rows.map((r) => r.device_id)}::uuid[]) as d`);
    const entries: Array<JournalEntry & { id: string }> = rows.map((r) => ({
      id: uuidv7(),
      actorType: 'system',
      action: 'device.offline',
      partnerId: r.partner_id,
      deviceId: r.device_id,
      subjectType: 'device',
      subjectId: r.device_id,
      result: 'heartbeat-timeout',
      details: {
        lastHeartbeatAt: r.last_heartbeat_at?.toISOString() ?? null,
        heartbeatIntervalS: r.interval_s,
        heartbeatMissed: r.missed,
      },
    }));
    await tx.query(
      sql`insert into journal (${JOURNAL_COLUMNS}) values ${sql.join(
        entries.map((e) => sql`(${journalValues(e)})`),
        ', ',
      )}`,
    );
    devicesTimedOut.inc(rows.length);
    return rows.map((r) => r.device_id);
  });
}

async function reconcileOne(db: Db, deviceId: string, now: Date, reconciler: DeviceReconciler) {
  return db.transaction(async (tx) => {
    const row = await tx.one<{ partner_id: string; reconcile_requested_at: Date }>(
      sql`select d.partner_id, h.reconcile_requested_at from device_health h join devices d on d.id = h.device_id
          where h.device_id = ${deviceId} and h.reconcile_pending for update of h skip locked`,
    );
    // Taken by another instance, or done since the list was read.
    if (!row) return false;
    const target = { deviceId, partnerId: row.partner_id, requestedAt: row.reconcile_requested_at };
    const checked = await reconciler.reconcile(tx, target, now);
    await tx.query(sql`update device_health set reconcile_pending = false, reconcile_requested_at = null,
      updated_at = ${now} where device_id = ${deviceId}`);
    const entry = {
      id: uuidv7(),
      actorType: 'system' as const,
      action: 'device.reconcile',
      partnerId: row.partner_id,
      deviceId,
      subjectType: 'device',
      subjectId: deviceId,
      result: 'ok',
      details: { ...checked, trigger: 'reboot', requestedAt: row.reconcile_requested_at.toISOString() },
    };
    await tx.query(sql`insert into journal (${JOURNAL_COLUMNS}) values (${journalValues(entry)})`);
    reconciliations.inc({ result: 'ok' });
    return true;
  });
}

async function countStates(db: Db): Promise<void> {
  const rows = await db.query<{ state: string; n: number }>(
    sql`select coalesce(h.state, 'unknown') as state, count(*)::int as n
        from devices d left join device_health h on h.device_id = d.id group by 1`,
  );
  for (const s of ['unknown', 'online', 'offline'])
    devicesByState.set({ state: s }, rows.find((r) => r.state === s)?.n ?? 0);
}

export interface DeviceSweeper {
  /** Stops after the sweep in progress (if any) has finished. */
  stop(): Promise<void>;
}

/** Sweeps every `intervalMs` (SMART_HOME_DEVICE_SWEEP_MS) until stopped. */
export function startDeviceSweeper(
  db: Db,
  opts: SweepOptions & { intervalMs: number; logger: Logger; now?: () => Date },
): DeviceSweeper {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let failing = false;
  const tick = () => {
    running = (async () => {
      try {
        await sweepDevices(db, opts.now?.() ?? new Date(), opts);
        if (failing) opts.logger.info('device health sweeper recovered');
        failing = false;
      } catch (err) {
        if (!failing) opts.logger.error({ err }, 'device health sweep failed; retrying');
        failing = true;
      }
      if (!stopped) {
        timer = setTimeout(tick, opts.intervalMs);
        timer.unref();
      }
    })();
  };
  timer = setTimeout(tick, 0);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
