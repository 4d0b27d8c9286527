/**
 * Device health from processed partner events (issue 5, contract §9). The event processor calls
 * {@link DeviceHealthSink.apply} inside its own transaction, once per processed batch and exactly once
 * per event, so an event's journal entry, its health effect and its "processed" mark commit together.
 *
 * Set-wise: the batch is folded per device in memory, then written with at most four statements
 * (health upsert, status history, alerts, their journal entries) whatever the batch size.
 *
 * - every event: last seen (receivedAt), newest occurredAt, clock skew of the newest received event,
 *   flagged beyond `maxSkewMs`;
 * - heartbeats and statuses: online (status `offline`: offline), unless an event with a newer
 *   (occurredAt, seq) already set the state — events arrive late and out of order;
 * - every status: a history row;
 * - `tamper`, `door_forced`, `door_held_open`: an open operator alert (one per device and kind; a repeat
 *   while open counts on it), a `device.alert.raised` journal entry and a metric;
 * - `reboot`: the device's reconciliation is queued durably (`reconcile_pending`), run by the sweeper
 *   after commit;
 * - stale events (too old to act upon, issue 5) are history and last-seen only: no alert, no state,
 *   no reconciliation.
 */
import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { ALERT_STATUSES, type DeviceEventSink, type StoredEvent } from '../events/model.ts';
import { JOURNAL_COLUMNS, type JournalEntry, journalValues } from '../journal/journal.ts';
import { uuidv7 } from '../util/uuid.ts';
import { alertsRaised, skewFlagged, skewSeconds } from './metrics.ts';

export type AlertKind = (typeof ALERT_STATUSES)[number];
const ALERT_KINDS = new Set<string>(ALERT_STATUSES);

export interface DeviceHealthOptions {
  /** |receivedAt − occurredAt| beyond this flags the device (SMART_HOME_DEVICE_MAX_SKEW_MS). */
  maxSkewMs: number;
}

/** (occurredAt or receivedAt, seq): the order in which two events of one device are compared. */
type Stamp = { at: number; seq: number };
const newer = (a: Stamp, b: Stamp | undefined) => !b || a.at > b.at || (a.at === b.at && a.seq > b.seq);

interface DeviceFold {
  deviceId: string;
  state?: { value: 'online' | 'offline' } & Stamp;
  status?: { value: string } & Stamp;
  lastSeen: number;
  lastHeartbeat?: number;
  lastOccurred: number;
  skew?: { ms: number } & Stamp;
  rebootAt?: number;
}

interface AlertFold {
  id: string;
  deviceId: string;
  partnerId: string;
  kind: AlertKind;
  event: StoredEvent;
  lastOccurred: number;
  occurrences: number;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

export class DeviceHealthSink implements DeviceEventSink {
  readonly #opts: DeviceHealthOptions;
  constructor(opts: DeviceHealthOptions) {
    this.#opts = opts;
  }

  /**
   * Folds a processed batch into device state. A device deleted since its events were stored (the inbox
   * has no foreign key, migration 016) is skipped: its events are journaled all the same.
   */
  async apply(tx: Queryable, batch: readonly StoredEvent[]): Promise<void> {
    if (batch.length === 0) return;
    const live = new Set(
      (
        await tx.query<{ id: string }>(
          sql`select id::text as id from devices where id = any(${[...new Set(batch.map((e) => e.deviceId))]}::uuid[])`,
        )
      ).map((r) => r.id),
    );
    const events = batch.filter((e) => live.has(e.deviceId));
    if (events.length === 0) return;
    const devices = new Map<string, DeviceFold>();
    const alerts = new Map<string, AlertFold>();
    const history: Array<Record<string, unknown>> = [];
    for (const e of events) {
      const occurred = e.occurredAt.getTime();
      const received = e.receivedAt.getTime();
      let d = devices.get(e.deviceId);
      if (!d) {
        d = { deviceId: e.deviceId, lastSeen: received, lastOccurred: occurred };
        devices.set(e.deviceId, d);
      }
      d.lastSeen = Math.max(d.lastSeen, received);
      d.lastOccurred = Math.max(d.lastOccurred, occurred);
      const byReceipt = { at: received, seq: e.seq };
      if (newer(byReceipt, d.skew)) d.skew = { ms: e.skewMs, ...byReceipt };
      const status = e.type === 'device.status' ? e.status : null;
      if (status) {
        history.push({
          device_id: e.deviceId,
          status,
          occurred_at: e.occurredAt.toISOString(),
          received_at: e.receivedAt.toISOString(),
          event_id: e.eventId,
          stale: e.stale,
        });
      }
      // Issue 5: events too old to act upon are stored and journaled but never trigger actions.
      if (e.stale) continue;
      const byOccurrence = { at: occurred, seq: e.seq };
      if (e.type === 'device.heartbeat' || status) {
        const value = status === 'offline' ? 'offline' : 'online';
        if (newer(byOccurrence, d.state)) d.state = { value, ...byOccurrence };
        // Liveness is what we hear now: a backfilled event (contract §9 gap) was late by definition, and
        // its fetch time says nothing about the device being alive.
        if (value === 'online' && e.via !== 'backfill')
          d.lastHeartbeat = Math.max(d.lastHeartbeat ?? received, received);
      }
      if (!status) continue;
      if (newer(byOccurrence, d.status)) d.status = { value: status, ...byOccurrence };
      if (status === 'reboot') d.rebootAt = Math.max(d.rebootAt ?? received, received);
      if (ALERT_KINDS.has(status)) {
        const key = `${e.deviceId}/${status}`;
        const a = alerts.get(key);
        if (!a) {
          alerts.set(key, {
            id: uuidv7(received),
            deviceId: e.deviceId,
            partnerId: e.partnerId,
            kind: status as AlertKind,
            event: e,
            lastOccurred: occurred,
            occurrences: 1,
          });
        } else {
          a.occurrences++;
          a.lastOccurred = Math.max(a.lastOccurred, occurred);
          // The alert opens with the earliest occurrence the device reports.
          if (newer({ at: a.event.occurredAt.getTime(), seq: a.event.seq }, byOccurrence)) a.event = e;
        }
      }
    }
    await this.#upsertHealth(tx, [...devices.values()]);
    if (history.length > 0) {
      await tx.query(sql`insert into device_status_history
          (device_id, status, occurred_at, received_at, event_id, source, stale)
        select x.device_id, x.status, x.occurred_at, x.received_at, x.event_id, 'event', x.stale
        from jsonb_to_recordset(${JSON.stringify(history)}::jsonb) as x(device_id uuid, status text,
          occurred_at timestamptz, received_at timestamptz, event_id uuid, stale boolean)
        on conflict (device_id, event_id) where event_id is not null do nothing`);
    }
    if (alerts.size > 0) await this.#raiseAlerts(tx, [...alerts.values()]);
  }

  async #upsertHealth(tx: Queryable, folds: DeviceFold[]): Promise<void> {
    const rows = folds.map((d) => ({
      device_id: d.deviceId,
      state: d.state?.value ?? 'unknown',
      state_at: iso(d.state?.at),
      state_seq: d.state?.seq ?? null,
      last_status: d.status?.value ?? null,
      last_status_at: iso(d.status?.at),
      last_status_seq: d.status?.seq ?? null,
      last_seen_at: iso(d.lastSeen),
      last_heartbeat_at: iso(d.lastHeartbeat),
      last_occurred_at: iso(d.lastOccurred),
      skew_ms: d.skew?.ms ?? null,
      skew_flagged: d.skew ? Math.abs(d.skew.ms) > this.#opts.maxSkewMs : false,
      skew_at: iso(d.skew?.at),
      skew_seq: d.skew?.seq ?? null,
      reconcile_at: iso(d.rebootAt),
    }));
    // "Newer" as in the fold: (at, seq) greater than what the row holds, or the row holds nothing yet.
    const newerThan = (col: string) =>
      sql.unsafe(
        `(excluded.${col}_at is not null and (h.${col}_at is null or (excluded.${col}_at, excluded.${col}_seq) > (h.${col}_at, h.${col}_seq)))`,
      );
    const state = newerThan('state');
    const status = newerThan('last_status');
    const skew = newerThan('skew');
    const updated = await tx.query<{ device_id: string; skew_ms: number | null; skew_flagged: boolean }>(
      sql`insert into device_health as h (device_id, state, state_at, state_seq, last_status, last_status_at,
          last_status_seq, last_seen_at, last_heartbeat_at, last_occurred_at, skew_ms, skew_flagged, skew_at,
          skew_seq, reconcile_pending, reconcile_requested_at, updated_at)
        select x.device_id, x.state, x.state_at, x.state_seq, x.last_status, x.last_status_at, x.last_status_seq,
          x.last_seen_at, x.last_heartbeat_at, x.last_occurred_at, x.skew_ms, x.skew_flagged, x.skew_at, x.skew_seq,
          x.reconcile_at is not null, x.reconcile_at, now()
        from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(device_id uuid, state text,
          state_at timestamptz, state_seq bigint, last_status text, last_status_at timestamptz,
          last_status_seq bigint, last_seen_at timestamptz, last_heartbeat_at timestamptz,
          last_occurred_at timestamptz, skew_ms bigint, skew_flagged boolean, skew_at timestamptz,
          skew_seq bigint, reconcile_at timestamptz)
        order by x.device_id
        on conflict (device_id) do update set
          state = case when ${state} then excluded.state else h.state end,
          state_at = case when ${state} then excluded.state_at else h.state_at end,
          state_seq = case when ${state} then excluded.state_seq else h.state_seq end,
          last_status = case when ${status} then excluded.last_status else h.last_status end,
          last_status_at = case when ${status} then excluded.last_status_at else h.last_status_at end,
          last_status_seq = case when ${status} then excluded.last_status_seq else h.last_status_seq end,
          last_seen_at = greatest(h.last_seen_at, excluded.last_seen_at),
          last_heartbeat_at = greatest(h.last_heartbeat_at, excluded.last_heartbeat_at),
          last_occurred_at = greatest(h.last_occurred_at, excluded.last_occurred_at),
          skew_ms = case when ${skew} then excluded.skew_ms else h.skew_ms end,
          skew_flagged = case when ${skew} then excluded.skew_flagged else h.skew_flagged end,
          skew_at = case when ${skew} then excluded.skew_at else h.skew_at end,
          skew_seq = case when ${skew} then excluded.skew_seq else h.skew_seq end,
          reconcile_pending = h.reconcile_pending or excluded.reconcile_pending,
          reconcile_requested_at = case when h.reconcile_pending then h.reconcile_requested_at
            else excluded.reconcile_requested_at end,
          updated_at = now()
        returning h.device_id, h.skew_ms, h.skew_flagged`,
    );
    for (const r of updated) {
      if (r.skew_ms === null) continue;
      skewSeconds.set({ device: r.device_id }, r.skew_ms / 1000);
      skewFlagged.set({ device: r.device_id }, r.skew_flagged ? 1 : 0);
    }
  }

  async #raiseAlerts(tx: Queryable, folds: AlertFold[]): Promise<void> {
    const rows = folds.map((a) => ({
      id: a.id,
      device_id: a.deviceId,
      partner_id: a.partnerId,
      kind: a.kind,
      raised_at: a.event.receivedAt.toISOString(),
      occurred_at: a.event.occurredAt.toISOString(),
      last_occurred_at: new Date(a.lastOccurred).toISOString(),
      event_id: a.event.eventId,
      occurrences: a.occurrences,
    }));
    // A repeat while the alert is open adds to it (the partial unique index allows one open alert per
    // device and kind); the returned id tells a new alert (ours) from an existing one.
    const out = await tx.query<{ id: string }>(
      sql`insert into device_alerts as a (id, device_id, partner_id, kind, raised_at, occurred_at,
          last_occurred_at, event_id, occurrences)
        select x.id, x.device_id, x.partner_id, x.kind, x.raised_at, x.occurred_at, x.last_occurred_at,
          x.event_id, x.occurrences
        from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb) as x(id uuid, device_id uuid, partner_id uuid,
          kind text, raised_at timestamptz, occurred_at timestamptz, last_occurred_at timestamptz,
          event_id uuid, occurrences integer)
        order by x.device_id, x.kind
        on conflict (device_id, kind) where resolved_at is null do update set
          occurrences = a.occurrences + excluded.occurrences,
          last_occurred_at = greatest(a.last_occurred_at, excluded.last_occurred_at)
        returning a.id`,
    );
    const opened = new Set(out.map((r) => r.id));
    const entries: Array<JournalEntry & { id: string }> = [];
    for (const a of folds) {
      if (!opened.has(a.id)) continue;
      alertsRaised.inc({ kind: a.kind });
      entries.push({
        id: uuidv7(),
        actorType: 'system',
        action: 'device.alert.raised',
        partnerId: a.partnerId,
        deviceId: a.deviceId,
        subjectType: 'device-alert',
        subjectId: a.id,
        result: a.kind,
        details: {
          alertId: a.id,
          kind: a.kind,
          eventId: a.event.eventId,
          seq: a.event.seq,
          occurredAt: a.event.occurredAt.toISOString(),
          receivedAt: a.event.receivedAt.toISOString(),
        },
      });
    }
    if (entries.length > 0) {
      await tx.query(
        sql`insert into journal (${JOURNAL_COLUMNS}) values ${sql.join(
          entries.map((e) => sql`(${journalValues(e)})`),
          ', ',
        )}`,
      );
    }
  }
}
