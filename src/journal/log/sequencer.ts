/**
 * The sequencer: integrates new journal rows into the Merkle log in batches, stores the changed tiles
 * and signs a C2SP checkpoint after each batch — all in one transaction under an advisory lock, so any
 * number of instances may run it and exactly one integrates at a time.
 *
 * Which rows: those written by transactions that ended before the oldest still running
 * (`tx < pg_snapshot_xmin(pg_current_snapshot())`), after the last one integrated in (tx, seq) order.
 * A transaction still open holds the horizon back, so a row committed late is never skipped; writers
 * never wait for the sequencer.
 */
import type { Db, Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { leafHash } from '../../tlog/merkle.ts';
import { formatCheckpoint, type NoteSigner, signNote } from '../../tlog/note.ts';
import { integrate, partialTiles, type Tile } from '../../tlog/tiles.ts';
import { entryOf, JOURNAL_ROW_COLUMNS, type JournalRow } from './leaf.ts';

/** Advisory lock key of the sequencer (any constant shared by every instance), with the schema's hash. */
export const SEQUENCER_LOCK = 727_009;

export interface LogIdentity {
  /** The checkpoint origin line: the log's name (contract §8.1). */
  origin: string;
  signer: NoteSigner;
}

export interface LogState {
  size: number;
  root: Buffer;
}

export async function logState(q: Queryable): Promise<LogState> {
  const s = await q.one<{ size: string; root: Buffer }>(
    sql`select size::text as size, root from journal_log_state`,
  );
  if (!s) throw new Error('journal_log_state is missing its row');
  return { size: Number(s.size), root: Buffer.from(s.root) };
}

/** Tiles by (level, index); `undefined` for those not stored. */
export async function loadTiles(
  q: Queryable,
  ids: ReadonlyArray<{ level: number; index: number }>,
): Promise<Tile[]> {
  if (ids.length === 0) return [];
  const rows = await q.query<{ level: number; idx: string; hashes: Buffer }>(sql`
    select t.level, t.idx::text as idx, t.hashes from journal_tiles t
    join unnest(${ids.map((i) => i.level)}::int[], ${ids.map((i) => String(i.index))}::bigint[]) as w(level, idx)
      on t.level = w.level and t.idx = w.idx`);
  return rows.map((r) => ({ level: Number(r.level), index: Number(r.idx), hashes: Buffer.from(r.hashes) }));
}

export interface BatchResult {
  /** Rows integrated by this call (0: nothing new, or another instance holds the lock). */
  integrated: number;
  size: number;
  /** Whether this instance held the sequencer lock. */
  locked: boolean;
}

/** Integrates up to `maxBatch` rows and signs a checkpoint for the new size. */
export async function integrateBatch(db: Db, log: LogIdentity, maxBatch: number): Promise<BatchResult> {
  return db.transaction(async (tx) => {
    const lock = await tx.one<{ ok: boolean }>(
      sql`select pg_try_advisory_xact_lock(${SEQUENCER_LOCK}, hashtext(current_schema())) as ok`,
    );
    if (!lock?.ok) return { integrated: 0, size: -1, locked: false };
    const st = await tx.one<{
      size: string;
      root: Buffer;
      last_tx: string;
      last_seq: string;
      horizon: string;
    }>(sql`
      select size::text as size, root, last_tx::text as last_tx, last_seq::text as last_seq,
             pg_snapshot_xmin(pg_current_snapshot())::text as horizon
      from journal_log_state`);
    if (!st) throw new Error('journal_log_state is missing its row');
    const size = Number(st.size);
    const rows = await tx.query<JournalRow & { tx: string }>(sql`
      select ${JOURNAL_ROW_COLUMNS}, j.tx::text as tx from journal j
      where (j.tx, j.seq) > (${st.last_tx}::xid8, ${st.last_seq}::bigint) and j.tx < ${st.horizon}::xid8
      order by j.tx, j.seq
      limit ${maxBatch}`);
    if (rows.length === 0) return { integrated: 0, size, locked: true };
    const leaves = rows.map((r) => leafHash(entryOf(r)));
    const rightmost = await loadTiles(tx, partialTiles(size));
    const next = integrate(size, rightmost, leaves);
    await tx.query(sql`
      insert into journal_leaves (leaf_index, journal_seq)
      select * from unnest(${rows.map((_, i) => String(size + i))}::bigint[], ${rows.map((r) => r.seq)}::bigint[])`);
    await tx.query(sql`
      insert into journal_tiles (level, idx, hashes)
      select w.level, w.idx, decode(w.hex, 'hex')
      from unnest(${next.tiles.map((t) => t.level)}::int[], ${next.tiles.map((t) => String(t.index))}::bigint[],
                  ${next.tiles.map((t) => t.hashes.toString('hex'))}::text[]) as w(level, idx, hex)
      on conflict (level, idx) do update set hashes = excluded.hashes`);
    const note = signNote(formatCheckpoint({ origin: log.origin, size: next.size, root: next.root }), [
      log.signer,
    ]);
    await tx.query(
      sql`insert into journal_checkpoints (size, root, note) values (${String(next.size)}::bigint, ${next.root}, ${note})`,
    );
    const last = rows[rows.length - 1]!;
    await tx.query(sql`
      update journal_log_state set size = ${String(next.size)}::bigint, root = ${next.root},
        last_tx = ${last.tx}::xid8, last_seq = ${last.seq}::bigint`);
    return { integrated: rows.length, size: next.size, locked: true };
  });
}

/**
 * Integrates every row committed before the call (or `maxRounds` batches); for tests, the CLI and
 * shutdown. On PostgreSQL the horizon (pg_snapshot_xmin) is cluster-wide: a transaction still running
 * elsewhere — another schema, another program — holds rows back, and so can another instance holding
 * the sequencer lock. Such rows are waited for (polling every 10 ms, at most `waitMs`), not skipped.
 */
export async function integrateAll(
  db: Db,
  log: LogIdentity,
  maxBatch: number,
  maxRounds = 1_000_000,
  waitMs = 30_000,
): Promise<number> {
  const top = await db.one<{ seq: string | null }>(sql`select max(seq)::text as seq from journal`);
  const target = top?.seq ?? null;
  const deadline = performance.now() + waitMs;
  let total = 0;
  for (let i = 0; i < maxRounds; i++) {
    const r = await integrateBatch(db, log, maxBatch);
    total += r.integrated;
    if (r.integrated === maxBatch) continue;
    if (target === null || performance.now() > deadline) break;
    const waiting = await db.one<{ n: string }>(sql`
      select count(*)::text as n from journal j
      where j.seq <= ${target}::bigint and not exists (select 1 from journal_leaves l where l.journal_seq = j.seq)`);
    if (Number(waiting?.n ?? 0) === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return total;
}

/** The newest signed checkpoint (note text), or undefined before the first batch. */
export async function latestCheckpoint(
  q: Queryable,
): Promise<{ size: number; root: Buffer; note: string } | undefined> {
  const r = await q.one<{ size: string; root: Buffer; note: string }>(
    sql`select c.size::text as size, c.root, c.note from journal_checkpoints c order by c.size desc limit 1`,
  );
  return r ? { size: Number(r.size), root: Buffer.from(r.root), note: r.note } : undefined;
}
