/**
 * `smart-home journal export --projections`: a partner's contract §8.3 projections as JSON Lines, one
 * `{"element","time","projection","at"}` record a line — the records `POST …/journal/projections`
 * answers and the offline comparison (src/journal/reconcile/offline.ts) reads — built by the
 * reconciliation's own Projector (src/journal/reconcile/source.ts), so an exported element is the
 * element the online exchange uses.
 *
 * Like the reconciliation index: only rows in the signed log (below the newest checkpoint), the
 * partner's projectable actions, selected by eventId time in [from, to) and found by `journal.at`
 * within the clock margin either side. Streamed by keyset pages on the leaf index from one snapshot.
 */
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Db, Queryable } from '../../db/db.ts';
import { type SqlFragment, sql } from '../../db/sql.ts';
import { latestCheckpoint } from '../log/sequencer.ts';
import { PROJECTED_ACTIONS, PROJECTOR_ROWS, Projector, projectionRecord } from '../reconcile/source.ts';
import { DEFAULT_PAGE_SIZE, inSnapshot } from './rows.ts';
import type { Sink } from './sink.ts';

export interface ProjectionExportOptions {
  partnerId: string;
  /** eventId time window [from, to); open on a side left out. */
  from?: Date | undefined;
  to?: Date | undefined;
  /** How far `journal.at` may lie from the eventId's time (SMART_HOME_RECONCILE_CLOCK_MARGIN_MS). */
  clockMarginMs: number;
  pageSize?: number;
  onProgress?: (done: number, total: number) => void;
}

type SourceRow = Parameters<Projector['project']>[0][number];

function where(o: ProjectionExportOptions, size: number): SqlFragment {
  const parts = [
    sql`j.partner_id = ${o.partnerId}::uuid`,
    sql`j.action = any(${[...PROJECTED_ACTIONS]}::text[])`,
    sql`l.leaf_index < ${String(size)}::bigint`,
  ];
  if (o.from)
    parts.push(sql`j.at >= ${new Date(o.from.getTime() - o.clockMarginMs).toISOString()}::timestamptz`);
  if (o.to) parts.push(sql`j.at < ${new Date(o.to.getTime() + o.clockMarginMs).toISOString()}::timestamptz`);
  return sql.join(parts, ' and ');
}

async function* pages(q: Queryable, o: ProjectionExportOptions, size: number): AsyncGenerator<SourceRow[]> {
  const pageSize = o.pageSize ?? DEFAULT_PAGE_SIZE;
  let after = '-1';
  for (;;) {
    const rows = await q.query<SourceRow>(sql`${PROJECTOR_ROWS}
      where l.leaf_index > ${after}::bigint and ${where(o, size)}
      order by l.leaf_index limit ${pageSize}`);
    if (rows.length === 0) return;
    yield rows;
    if (rows.length < pageSize) return;
    after = rows[rows.length - 1]!.leaf;
  }
}

export async function exportProjections(
  db: Db,
  cipher: FieldCipher,
  sink: Sink,
  o: ProjectionExportOptions,
): Promise<{ entries: number; checkpointSize: number }> {
  try {
    const r = await inSnapshot(db, async (q) => {
      const size = (await latestCheckpoint(q))?.size ?? 0;
      const total = Number(
        (
          await q.one<{ n: string }>(sql`select count(*)::text as n
            from journal_leaves l join journal j on j.seq = l.journal_seq where ${where(o, size)}`)
        )?.n ?? 0,
      );
      o.onProgress?.(0, total);
      const projector = new Projector(q, cipher, o.partnerId);
      const from = o.from?.getTime() ?? Number.NEGATIVE_INFINITY;
      const to = o.to?.getTime() ?? Number.POSITIVE_INFINITY;
      let done = 0;
      let entries = 0;
      try {
        for await (const page of pages(q, o, size)) {
          let text = '';
          for (const it of await projector.project(page)) {
            if (it.time < from || it.time >= to) continue;
            text += `${JSON.stringify(projectionRecord(it))}\n`;
            entries++;
          }
          await sink.write(text);
          done += page.length;
          o.onProgress?.(done, total);
        }
      } finally {
        await projector.dispose();
      }
      return { entries, checkpointSize: size };
    });
    await sink.commit();
    return r;
  } catch (err) {
    await sink.abort();
    throw err;
  }
}
