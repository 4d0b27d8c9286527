/**
 * Reads journal rows for an export page by page (keyset pagination on `seq`), never the whole journal
 * at once, inside one read-only REPEATABLE READ transaction so the count shown and the rows written come
 * from the same snapshot whatever commits meanwhile. A read-only transaction takes no transaction id,
 * so it never holds back the sequencer's horizon (pg_snapshot_xmin).
 */
import type { Db, Queryable } from '../../db/db.ts';
import { type SqlFragment, sql } from '../../db/sql.ts';
import { isUuid } from '../../util/uuid.ts';
import { aboutPartner, JOURNAL_ROW_COLUMNS, type JournalRow } from '../log/leaf.ts';

export interface ExportFilter {
  /** Entries at or after this instant. */
  from?: Date | undefined;
  /** Entries strictly before this instant (half-open, like the reconciliation ranges of contract §8.4). */
  to?: Date | undefined;
  /**
   * Entries about this partner (internal id): written with its id, or about one of its devices —
   * the same rule as the entry bundles of contract §8.1.
   */
  partnerId?: string | undefined;
}

export const DEFAULT_PAGE_SIZE = 2000;

function where(f: ExportFilter): SqlFragment {
  const parts: SqlFragment[] = [sql`true`];
  if (f.from) parts.push(sql`j.at >= ${f.from.toISOString()}::timestamptz`);
  if (f.to) parts.push(sql`j.at < ${f.to.toISOString()}::timestamptz`);
  if (f.partnerId) parts.push(aboutPartner(f.partnerId));
  return sql.join(parts, ' and ');
}

export async function countRows(q: Queryable, f: ExportFilter): Promise<number> {
  const r = await q.one<{ n: string }>(sql`select count(*)::text as n from journal j where ${where(f)}`);
  return Number(r?.n ?? 0);
}

/** Pages of rows in `seq` order; the caller consumes each page before the next is read. */
export async function* journalPages(
  q: Queryable,
  f: ExportFilter,
  pageSize = DEFAULT_PAGE_SIZE,
): AsyncGenerator<JournalRow[]> {
  let after = '0';
  for (;;) {
    const rows = await q.query<JournalRow>(sql`
      select ${JOURNAL_ROW_COLUMNS} from journal j
      where j.seq > ${after}::bigint and ${where(f)}
      order by j.seq limit ${pageSize}`);
    if (rows.length === 0) return;
    yield rows;
    if (rows.length < pageSize) return;
    after = rows[rows.length - 1]!.seq;
  }
}

/** Runs `fn` on one consistent snapshot of the database. */
export function inSnapshot<T>(db: Db, fn: (q: Queryable) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.exec('set transaction isolation level repeatable read, read only');
    return fn(tx);
  });
}

export class UnknownPartnerError extends Error {
  readonly code = 'ERR_UNKNOWN_PARTNER';
}

/** A partner named by its internal id or its code (`--partner <id|code>`), as its internal id. */
export async function resolvePartner(q: Queryable, ref: string): Promise<{ id: string; code: string }> {
  const row = isUuid(ref)
    ? await q.one<{ id: string; code: string }>(
        sql`select id::text as id, code from partners where id = ${ref}::uuid or code = ${ref}`,
      )
    : await q.one<{ id: string; code: string }>(
        sql`select id::text as id, code from partners where code = ${ref}`,
      );
  if (!row) throw new UnknownPartnerError(`unknown partner "${ref}"`);
  return row;
}
