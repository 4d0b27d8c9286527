import { PGlite, types } from '@electric-sql/pglite';
import type { Db, Queryable, Row } from './db.ts';
import type { SqlFragment } from './sql.ts';

// int8 as a JS number (journal sequence numbers and counts stay far below 2^53), matching the pg adapter.
const parsers = { [types.INT8]: (v: string) => Number(v) };

interface PgliteLike {
  query<T>(text: string, params?: unknown[]): Promise<{ rows: T[] }>;
  exec(text: string): Promise<unknown>;
}

function queryable(conn: PgliteLike): Queryable {
  return {
    async query<T extends Row>(q: SqlFragment) {
      const { text, values } = q.compile();
      return (await conn.query<T>(text, values)).rows;
    },
    async one<T extends Row>(q: SqlFragment) {
      const { text, values } = q.compile();
      return (await conn.query<T>(text, values)).rows[0];
    },
    async exec(text: string) {
      await conn.exec(text);
    },
  };
}

/**
 * Embedded PostgreSQL (WASM). `dataDir` undefined = in memory (tests). `loadDataDir` starts from a
 * `dumpDataDir()` tarball instead of running initdb (tests start from a migrated template this way).
 */
export async function openPgliteDb(
  dataDir?: string,
  opts: { loadDataDir?: Blob } = {},
): Promise<Db & { dumpDataDir(): Promise<Blob> }> {
  const pg = await PGlite.create({
    ...(dataDir ? { dataDir } : {}),
    ...(opts.loadDataDir ? { loadDataDir: opts.loadDataDir } : {}),
    parsers,
  });
  const base = queryable(pg);
  return {
    engine: 'pglite',
    ...base,
    transaction: (fn) => pg.transaction((tx) => fn(queryable(tx))),
    close: () => pg.close(),
    dumpDataDir: () => pg.dumpDataDir('none'),
  };
}
