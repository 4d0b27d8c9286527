/**
 * Deliveries of ONE event (contract §9 allows batches of 1; a device gateway that forwards each event
 * as it happens sends nothing else) written together: concurrent single-event deliveries share one
 * multi-row INSERT, so the database commits (and flushes its WAL) once per group instead of once per
 * request — what bounds the batch-of-1 rate otherwise.
 *
 * Sharing a statement is safe for single events only: each request's batch is one row, which is
 * inserted or not on its own (ON CONFLICT DO NOTHING skips exactly the rows that conflict), so "nothing
 * of a refused batch is stored" holds per request. A batch of several events keeps its own transaction
 * (store.ts). Groups are never waited for: a group is whatever queued while earlier groups ran, up to
 * `maxGroup`, with at most `inFlight` statements at once (like the barrier decisions' batching).
 */
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import {
  deletedAfterRetention,
  EventConflictError,
  eventsConflict,
  eventsDuplicate,
  eventsStored,
  INBOX_COLUMNS,
  INBOX_ROW,
  inboxRowsJson,
  type PreparedEvent,
  type StoreResult,
} from './store.ts';

interface Pending {
  partnerId: string;
  event: PreparedEvent;
  resolve(r: StoreResult): void;
  reject(err: unknown): void;
}

export interface SingleWriterOptions {
  maxGroup: number;
  inFlight: number;
  /** SMART_HOME_EVENTS_RETENTION_DAYS: see deletedAfterRetention. */
  retentionDays: number;
}

const isRetryable = (err: unknown) => {
  const code = (err as { code?: unknown })?.code;
  return code === '40P01' || code === '40001';
};

export class SingleEventWriter {
  readonly #db: Db;
  readonly #opts: SingleWriterOptions;
  #queue: Pending[] = [];
  #running = 0;

  constructor(db: Db, opts: SingleWriterOptions) {
    this.#db = db;
    this.#opts = opts;
  }

  /** Stores one delivered event; resolves once it is committed (or was stored before). */
  store(partnerId: string, event: PreparedEvent): Promise<StoreResult> {
    return new Promise<StoreResult>((resolve, reject) => {
      this.#queue.push({ partnerId, event, resolve, reject });
      this.#pump();
    }).then(
      (r) => {
        if (r.accepted > 0) eventsStored.inc({ partner: partnerId, via: 'delivery' }, r.accepted);
        if (r.duplicates > 0) eventsDuplicate.inc({ partner: partnerId, via: 'delivery' }, r.duplicates);
        return r;
      },
      (err: unknown) => {
        if (err instanceof EventConflictError) eventsConflict.inc({ partner: partnerId, via: 'delivery' });
        throw err;
      },
    );
  }

  #pump(): void {
    while (this.#running < this.#opts.inFlight && this.#queue.length > 0) {
      const group = this.#queue.splice(0, this.#opts.maxGroup);
      this.#running++;
      void this.#write(group).finally(() => {
        this.#running--;
        this.#pump();
      });
    }
  }

  async #write(group: Pending[]): Promise<void> {
    // One row per (partner, eventId): later copies in the group follow the first's fate.
    const firsts = new Map<string, Pending>();
    const copies: Pending[] = [];
    for (const p of group) {
      const key = `${p.partnerId}/${p.event.eventId}`;
      if (firsts.has(key)) copies.push(p);
      else firsts.set(key, p);
    }
    const rows = [...firsts.values()].sort((a, b) =>
      a.partnerId < b.partnerId ? -1 : a.partnerId > b.partnerId ? 1 : a.event.event.seq - b.event.event.seq,
    );
    let outcomes: Map<Pending, StoreResult | Error>;
    try {
      outcomes = await this.#insert(rows);
    } catch (err) {
      for (const p of group) p.reject(err);
      return;
    }
    for (const p of rows) {
      const o = outcomes.get(p)!;
      if (o instanceof Error) p.reject(o);
      else p.resolve(o);
    }
    for (const c of copies) {
      const first = firsts.get(`${c.partnerId}/${c.event.eventId}`)!;
      const o = outcomes.get(first)!;
      if (c.event.hash !== first.event.hash) {
        c.reject(
          new EventConflictError(`event ${c.event.eventId} was already stored with different content`),
        );
      } else if (o instanceof Error) c.reject(o);
      else c.resolve({ accepted: 0, duplicates: 1 });
    }
  }

  async #insert(rows: Pending[]): Promise<Map<Pending, StoreResult | Error>> {
    let attempt = 0;
    for (;;) {
      try {
        return await this.#insertOnce(rows);
      } catch (err) {
        if (isRetryable(err) && attempt++ < 3) continue;
        throw err;
      }
    }
  }

  async #insertOnce(rows: Pending[]): Promise<Map<Pending, StoreResult | Error>> {
    const e = rows.map((p) => p.event);
    // One statement, autocommitted: each row stands on its own (see above).
    const inserted = await this.#db.query<{ partner_id: string; event_id: string }>(
      sql`insert into event_inbox (${INBOX_COLUMNS})
          select x.p, x.e, x.s, x.t, x.o, ${new Date()}::timestamptz, x.d, x.di, x.m, x.su, x.st,
            decode(x.h, 'hex'), 'delivery'
          from json_to_recordset(${inboxRowsJson(
            e,
            rows.map((p) => p.partnerId),
          )}::json) as x(p uuid, ${INBOX_ROW})
          -- At or below the contiguous mark every seq was stored: see store.ts.
          where x.s > coalesce((select c.contiguous from event_cursors c where c.partner_id = x.p), 0)
          order by x.p, x.s
          on conflict do nothing
          returning partner_id::text as partner_id, event_id::text as event_id`.named(
        'event_inbox_insert_group',
      ),
    );
    const fresh = new Set(inserted.map((r) => `${r.partner_id}/${r.event_id}`));
    const out = new Map<Pending, StoreResult | Error>();
    const rest: Pending[] = [];
    for (const p of rows) {
      if (fresh.has(`${p.partnerId}/${p.event.eventId}`)) out.set(p, { accepted: 1, duplicates: 0 });
      else rest.push(p);
    }
    if (rest.length === 0) return out;

    // As store.ts: a retry (same hash), a conflict (other content, or the seq taken), or an event
    // deleted after its retention (at or below the contiguous mark).
    const stored = await this.#db.query<{ partner_id: string; event_id: string; seq: number; hash: string }>(
      sql`select i.partner_id::text as partner_id, i.event_id::text as event_id, i.seq,
            encode(i.content_hash, 'hex') as hash
          from event_inbox i join unnest(${rest.map((p) => p.partnerId)}::uuid[], ${rest.map((p) => p.event.eventId)}::uuid[],
            ${rest.map((p) => p.event.event.seq)}::bigint[]) as x(p, e, s)
            on i.partner_id = x.p and (i.event_id = x.e or i.seq = x.s)`,
    );
    const marks = new Map(
      (
        await this.#db.query<{ partner_id: string; contiguous: number }>(
          sql`select partner_id::text as partner_id, contiguous from event_cursors
              where partner_id = any(${[...new Set(rest.map((p) => p.partnerId))]}::uuid[])`,
        )
      ).map((r) => [r.partner_id, Number(r.contiguous)]),
    );
    const byId = new Map(stored.map((r) => [`${r.partner_id}/${r.event_id}`, r.hash]));
    const bySeq = new Set(stored.map((r) => `${r.partner_id}/${Number(r.seq)}`));
    for (const p of rest) {
      const h = byId.get(`${p.partnerId}/${p.event.eventId}`);
      if (h === p.event.hash) out.set(p, { accepted: 0, duplicates: 1 });
      else if (h !== undefined) {
        out.set(
          p,
          new EventConflictError(`event ${p.event.eventId} was already stored with different content`),
        );
      } else if (bySeq.has(`${p.partnerId}/${p.event.event.seq}`)) {
        out.set(
          p,
          new EventConflictError(
            `event ${p.event.eventId}: seq ${p.event.event.seq} is already used by another event`,
          ),
        );
      } else if (p.event.event.seq <= (marks.get(p.partnerId) ?? 0)) {
        out.set(
          p,
          deletedAfterRetention(p.event.eventId, this.#opts.retentionDays)
            ? { accepted: 0, duplicates: 1 }
            : new EventConflictError(
                `event ${p.event.eventId}: seq ${p.event.event.seq} is already used by another event`,
              ),
        );
      } else out.set(p, new Error(`event ${p.event.eventId} was neither stored nor found`));
    }
    return out;
  }
}
