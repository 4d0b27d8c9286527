/**
 * Device health read models and the alert resolution, for the operator API (src/admin-api/plugin.ts).
 */
import type { Queryable } from '../db/db.ts';
import { type SqlFragment, sql } from '../db/sql.ts';
import { AppError } from '../errors.ts';
import { appendJournal } from '../journal/journal.ts';
import { isUuid } from '../util/uuid.ts';
import { DeviceHistoryLimit } from './schemas.ts';

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/**
 * Columns of a device's health, for a select over `devices d` (joined with {@link HEALTH_JOIN}). A device
 * without a health row has never been heard from: unknown.
 */
export const HEALTH_COLUMNS = sql.unsafe(`coalesce(h.state, 'unknown') as health_state,
  h.last_status as health_last_status, h.last_seen_at as health_last_seen_at,
  h.last_heartbeat_at as health_last_heartbeat_at, h.last_occurred_at as health_last_occurred_at,
  h.skew_ms as health_skew_ms, coalesce(h.skew_flagged, false) as health_skew_flagged,
  coalesce(h.reconcile_pending, false) as health_reconcile_pending,
  (select count(*)::int from device_alerts a where a.device_id = d.id and a.resolved_at is null) as health_open_alerts`);
export const HEALTH_JOIN = sql.unsafe('left join device_health h on h.device_id = d.id');

export type HealthRow = {
  health_state: 'unknown' | 'online' | 'offline';
  health_last_status: string | null;
  health_last_seen_at: Date | null;
  health_last_heartbeat_at: Date | null;
  health_last_occurred_at: Date | null;
  health_skew_ms: number | null;
  health_skew_flagged: boolean;
  health_reconcile_pending: boolean;
  health_open_alerts: number;
};

export function healthOf(r: HealthRow) {
  return {
    state: r.health_state,
    lastStatus: r.health_last_status,
    lastSeenAt: iso(r.health_last_seen_at),
    lastHeartbeatAt: iso(r.health_last_heartbeat_at),
    lastOccurredAt: iso(r.health_last_occurred_at),
    skewMs: r.health_skew_ms,
    skewFlagged: r.health_skew_flagged,
    reconcilePending: r.health_reconcile_pending,
    openAlerts: r.health_open_alerts,
  };
}

/** `where` conditions of the device list's health filters. */
export function healthFilters(q: {
  state?: string | undefined;
  flagged?: string | undefined;
}): SqlFragment[] {
  const out: SqlFragment[] = [];
  if (q.state !== undefined) out.push(sql`coalesce(h.state, 'unknown') = ${q.state}`);
  if (q.flagged !== undefined) out.push(sql`coalesce(h.skew_flagged, false) = ${q.flagged === 'true'}`);
  return out;
}

type HistoryRow = {
  status: string;
  occurred_at: Date;
  received_at: Date;
  event_id: string | null;
  source: string;
  stale: boolean;
};

/** The newest status changes of a device, newest first. */
export async function recentHistory(db: Queryable, deviceId: string, limit = DeviceHistoryLimit) {
  const rows = await db.query<HistoryRow>(sql`select status, occurred_at, received_at, event_id, source, stale
    from device_status_history where device_id = ${deviceId} order by occurred_at desc, id desc limit ${limit}`);
  return rows.map((r) => ({
    status: r.status,
    occurredAt: r.occurred_at.toISOString(),
    receivedAt: r.received_at.toISOString(),
    eventId: r.event_id,
    source: r.source,
    stale: r.stale,
  }));
}

type AlertRow = {
  id: string;
  device_id: string;
  partner_id: string;
  kind: string;
  raised_at: Date;
  occurred_at: Date;
  last_occurred_at: Date;
  event_id: string;
  occurrences: number;
  resolved_at: Date | null;
  resolved_by: string | null;
  resolution_note: string | null;
};
const ALERT_SELECT = sql`select a.id, a.device_id, a.partner_id, a.kind, a.raised_at, a.occurred_at,
  a.last_occurred_at, a.event_id, a.occurrences, a.resolved_at, a.resolved_by, a.resolution_note from device_alerts a`;
const alert = (r: AlertRow) => ({
  id: r.id,
  deviceId: r.device_id,
  partnerId: r.partner_id,
  kind: r.kind,
  raisedAt: r.raised_at.toISOString(),
  occurredAt: r.occurred_at.toISOString(),
  lastOccurredAt: r.last_occurred_at.toISOString(),
  eventId: r.event_id,
  occurrences: r.occurrences,
  resolvedAt: iso(r.resolved_at),
  resolvedBy: r.resolved_by,
  note: r.resolution_note,
});

/** The open alerts of a device, newest first. */
export async function openAlertsOf(db: Queryable, deviceId: string) {
  const rows = await db.query<AlertRow>(
    sql`${ALERT_SELECT} where a.device_id = ${deviceId} and a.resolved_at is null order by a.raised_at desc, a.id desc`,
  );
  return rows.map(alert);
}

export interface AlertSearch {
  state?: 'open' | 'resolved' | 'all' | undefined;
  deviceId?: string | undefined;
  partnerId?: string | undefined;
  kind?: string | undefined;
  limit?: string | undefined;
  cursor?: string | undefined;
}

const CURSOR_AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Alerts newest first (raised time, then id); the cursor is the position of the page's last alert. */
export async function listAlerts(db: Queryable, q: AlertSearch) {
  const limit = q.limit ? Number(q.limit) : 50;
  const conds: SqlFragment[] = [];
  const state = q.state ?? 'open';
  if (state === 'open') conds.push(sql`a.resolved_at is null`);
  if (state === 'resolved') conds.push(sql`a.resolved_at is not null`);
  if (q.deviceId !== undefined) conds.push(sql`a.device_id = ${q.deviceId}::uuid`);
  if (q.partnerId !== undefined) conds.push(sql`a.partner_id = ${q.partnerId}::uuid`);
  if (q.kind !== undefined) conds.push(sql`a.kind = ${q.kind}`);
  if (q.cursor !== undefined) {
    const [at = '', id = ''] = Buffer.from(q.cursor, 'base64url').toString('utf8').split('|');
    if (!CURSOR_AT.test(at) || !isUuid(id))
      throw new AppError('invalid-request', 'querystring/cursor is not valid');
    conds.push(sql`(a.raised_at, a.id) < (${at}::timestamptz, ${id}::uuid)`);
  }
  const where = conds.length ? sql`where ${sql.join(conds, ' and ')}` : sql``;
  const rows = await db.query<AlertRow>(
    sql`${ALERT_SELECT} ${where} order by a.raised_at desc, a.id desc limit ${limit + 1}`,
  );
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  const last = kept.at(-1);
  return {
    items: kept.map(alert),
    nextCursor:
      more && last ? Buffer.from(`${last.raised_at.toISOString()}|${last.id}`).toString('base64url') : null,
  };
}

export async function getAlert(db: Queryable, id: string) {
  const r = await db.one<AlertRow>(sql`${ALERT_SELECT} where a.id = ${id}`);
  return r && alert(r);
}

/**
 * Resolves an open alert, journaled (`device.alert.resolved`, actor the operator) in the caller's
 * transaction. The note stays on the alert: free text may name people, the journal holds ids only.
 * Unknown: 404; already resolved: 409.
 */
export async function resolveAlert(
  tx: Queryable,
  id: string,
  by: { operatorId: string; requestId: string },
  note: string | undefined,
): Promise<void> {
  const cur = await tx.one<{ device_id: string; partner_id: string; kind: string; resolved_at: Date | null }>(
    sql`select device_id, partner_id, kind, resolved_at from device_alerts where id = ${id} for update`,
  );
  if (!cur) throw new AppError('not-found');
  if (cur.resolved_at) throw new AppError('alert-resolved', 'the alert was already resolved');
  await tx.query(sql`update device_alerts set resolved_at = now(), resolved_by = ${by.operatorId},
    resolution_note = ${note ?? null} where id = ${id}`);
  await appendJournal(tx, {
    actorType: 'operator',
    actorId: by.operatorId,
    action: 'device.alert.resolved',
    partnerId: cur.partner_id,
    deviceId: cur.device_id,
    subjectType: 'device-alert',
    subjectId: id,
    result: cur.kind,
    requestId: by.requestId,
    details: { alertId: id, kind: cur.kind, noted: note !== undefined },
  });
}
