import type { Queryable } from '../db/db.ts';
import { type SqlFragment, sql } from '../db/sql.ts';
import { AppError } from '../errors.ts';
import { isUuid } from '../util/uuid.ts';
import { type Page, type PageQuery, pageLimit } from './queries.ts';

export interface JournalSearch extends PageQuery {
  from?: string | undefined;
  to?: string | undefined;
  deviceId?: string | undefined;
  partnerId?: string | undefined;
  residentId?: string | undefined;
  /** Exact action, or a prefix when it ends in `.` (e.g. `registry.`). */
  action?: string | undefined;
  result?: string | undefined;
  order?: 'asc' | 'desc' | undefined;
}

type Row = {
  id: string;
  at: string;
  actor_type: string;
  actor_id: string | null;
  action: string;
  partner_id: string | null;
  device_id: string | null;
  subject_type: string | null;
  subject_id: string | null;
  result: string;
  request_id: string | null;
  details: unknown;
};

/** The time as text with microseconds, so a cursor names an entry exactly (a JS Date keeps milliseconds). */
const AT_TEXT = sql.unsafe(`to_char(j.at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`);
const AT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function encodeCursor(at: string, id: string): string {
  return Buffer.from(`${at}|${id}`).toString('base64url');
}
function decodeCursor(cursor: string): { at: string; id: string } {
  const [at = '', id = ''] = Buffer.from(cursor, 'base64url').toString('utf8').split('|');
  if (!AT.test(at) || !isUuid(id)) throw new AppError('invalid-request', 'querystring/cursor is not valid');
  return { at, id };
}

/**
 * Journal entries matching every given filter, ordered by time then id (stable across pages: the
 * cursor is the position of the last entry returned, so entries appended meanwhile never shift a page).
 */
export async function searchJournal(db: Queryable, q: JournalSearch): Promise<Page<Record<string, unknown>>> {
  const limit = pageLimit(q);
  const desc = (q.order ?? 'desc') === 'desc';
  const conds: SqlFragment[] = [];
  for (const f of ['from', 'to'] as const) {
    const v = q[f];
    if (v !== undefined && Number.isNaN(Date.parse(v)))
      throw new AppError('invalid-request', `querystring/${f} is not a valid date-time`);
  }
  if (q.from) conds.push(sql`j.at >= ${q.from}::timestamptz`);
  if (q.to) conds.push(sql`j.at < ${q.to}::timestamptz`);
  if (q.deviceId) conds.push(sql`j.device_id = ${q.deviceId}::uuid`);
  if (q.partnerId) conds.push(sql`j.partner_id = ${q.partnerId}::uuid`);
  if (q.residentId)
    conds.push(
      sql`((j.subject_type = 'resident' and j.subject_id = ${q.residentId}) or (j.actor_type = 'resident' and j.actor_id = ${q.residentId}) or j.details->>'residentId' = ${q.residentId})`,
    );
  if (q.action) {
    if (q.action.endsWith('.')) conds.push(sql`starts_with(j.action, ${q.action})`);
    else conds.push(sql`j.action = ${q.action}`);
  }
  if (q.result) conds.push(sql`j.result = ${q.result}`);
  if (q.cursor !== undefined) {
    const c = decodeCursor(q.cursor);
    conds.push(
      desc
        ? sql`(j.at, j.id) < (${c.at}::timestamptz, ${c.id}::uuid)`
        : sql`(j.at, j.id) > (${c.at}::timestamptz, ${c.id}::uuid)`,
    );
  }
  const where = conds.length ? sql`where ${sql.join(conds, ' and ')}` : sql``;
  const order = sql.unsafe(desc ? 'order by j.at desc, j.id desc' : 'order by j.at asc, j.id asc');
  const rows = await db.query<Row>(sql`select j.id, ${AT_TEXT} as at, j.actor_type, j.actor_id, j.action,
    j.partner_id, j.device_id, j.subject_type, j.subject_id, j.result, j.request_id, j.details
    from journal j ${where} ${order} limit ${limit + 1}`);
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  const last = kept[kept.length - 1];
  return {
    items: kept.map((r) => ({
      id: r.id,
      at: r.at,
      actorType: r.actor_type,
      actorId: r.actor_id,
      action: r.action,
      partnerId: r.partner_id,
      deviceId: r.device_id,
      subjectType: r.subject_type,
      subjectId: r.subject_id,
      result: r.result,
      requestId: r.request_id,
      details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
    })),
    nextCursor: more && last ? encodeCursor(last.at, last.id) : null,
  };
}
