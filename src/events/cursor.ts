/**
 * Per-partner sequence cursors (contract §9: `seq` is +1 per event, no gaps, "seq lets smart-home see
 * gaps"). `contiguous` is the high-water mark below which every seq is stored; `max_seen` the largest
 * stored. They move after each processor round (and during a backfill), outside the ingest transaction:
 * the answer to the partner never waits on a per-partner row lock, and concurrent batches of one partner
 * never serialise on it.
 */
import type { Db, Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { gauge } from '../metrics/registry.ts';

export const gapSpan = gauge(
  'smart_home_events_gap_span',
  'Per partner: largest stored seq minus the contiguous mark (0: no gap)',
  ['partner'],
);

export type CursorRow = {
  partner_id: string;
  contiguous: number;
  max_seen: number;
  gap_since: Date | null;
  backfill_attempts: number;
  backfill_next_at: Date | null;
  backfill_last_at: Date | null;
  backfill_last_error: string | null;
  backfill_lease_until: Date | null;
};

/** Rows walked per statement while looking for the end of the contiguous run. */
const WALK_CHUNK = 10_000;

/**
 * Recomputes a partner's cursor from the inbox, under the cursor row's lock (one instance at a time).
 * The walk reads seqs above the old mark in index order: in `seq − row_number`, the contiguous run is
 * exactly the prefix where it is still the old mark.
 */
export async function advanceCursor(db: Db, partnerId: string): Promise<CursorRow> {
  const row = await db.transaction(async (tx) => {
    await tx.query(
      sql`insert into event_cursors (partner_id) values (${partnerId}::uuid) on conflict do nothing`.named(
        'event_cursor_ensure',
      ),
    );
    const cur = await tx.one<{ contiguous: number }>(
      sql`select contiguous from event_cursors where partner_id = ${partnerId}::uuid for update`.named(
        'event_cursor_lock',
      ),
    );
    const before = Number(cur?.contiguous ?? 0);
    let contiguous = before;
    for (;;) {
      const r = await tx.one<{ n: number }>(
        sql`select count(*)::int as n from (
              select seq, row_number() over (order by seq) as rn from (
                select seq from event_inbox where partner_id = ${partnerId}::uuid and seq > ${contiguous}::bigint
                order by seq limit ${WALK_CHUNK}) s) t
            where t.seq = ${contiguous}::bigint + t.rn`.named('event_cursor_walk'),
      );
      const n = Number(r?.n ?? 0);
      contiguous += n;
      if (n < WALK_CHUNK) break;
    }
    return (await updateCursor(tx, partnerId, before, contiguous))!;
  });
  gapSpan.set({ partner: partnerId }, Number(row.max_seen) - Number(row.contiguous));
  return row;
}

async function updateCursor(
  tx: Queryable,
  partnerId: string,
  before: number,
  contiguous: number,
): Promise<CursorRow | undefined> {
  // A gap that remains after the mark moved is a new gap: its grace period starts now. A closed gap
  // clears the backfill state.
  return tx.one<CursorRow>(
    sql`with m as (select coalesce(max(seq), 0) as max_seen from event_inbox where partner_id = ${partnerId}::uuid)
        update event_cursors c set
          contiguous = ${contiguous}::bigint,
          max_seen = greatest(m.max_seen, ${contiguous}::bigint),
          gap_since = case
            when m.max_seen <= ${contiguous}::bigint then null
            when c.gap_since is null or ${contiguous}::bigint > ${before}::bigint then clock_timestamp()
            else c.gap_since end,
          backfill_attempts = case when m.max_seen <= ${contiguous}::bigint then 0 else c.backfill_attempts end,
          backfill_next_at = case when m.max_seen <= ${contiguous}::bigint then null else c.backfill_next_at end,
          backfill_last_error = case when m.max_seen <= ${contiguous}::bigint then null else c.backfill_last_error end,
          updated_at = clock_timestamp()
        from m where c.partner_id = ${partnerId}::uuid
        returning c.partner_id::text as partner_id, c.contiguous, c.max_seen, c.gap_since, c.backfill_attempts,
          c.backfill_next_at, c.backfill_last_at, c.backfill_last_error, c.backfill_lease_until`.named(
      'event_cursor_update',
    ),
  );
}

/** Every partner's cursor, for operators. */
export async function listCursors(q: Queryable): Promise<CursorRow[]> {
  return q.query<CursorRow>(
    sql`select partner_id::text as partner_id, contiguous, max_seen, gap_since, backfill_attempts, backfill_next_at,
          backfill_last_at, backfill_last_error, backfill_lease_until
        from event_cursors order by partner_id`,
  );
}

/**
 * Runs `advanceCursor` per partner, coalesced: while one runs for a partner, further requests for it
 * become one more run after it (every store is seen, without a statement per store).
 */
export class CursorAdvancer {
  readonly #db: Db;
  readonly #onError: (err: unknown) => void;
  readonly #running = new Map<string, Promise<void>>();
  readonly #again = new Set<string>();

  constructor(db: Db, onError: (err: unknown) => void) {
    this.#db = db;
    this.#onError = onError;
  }

  schedule(partnerId: string): Promise<void> {
    const running = this.#running.get(partnerId);
    if (running) {
      this.#again.add(partnerId);
      return running;
    }
    const run = (async () => {
      do {
        this.#again.delete(partnerId);
        try {
          await advanceCursor(this.#db, partnerId);
        } catch (err) {
          this.#onError(err);
        }
      } while (this.#again.has(partnerId));
    })().finally(() => this.#running.delete(partnerId));
    this.#running.set(partnerId, run);
    return run;
  }

  /** Resolves when every run in progress has ended. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all(this.#running.values());
  }
}
