import pg from 'pg';
import type { Db, Queryable, Row } from './db.ts';
import type { SqlFragment } from './sql.ts';

// int8 → number (see pglite-db.ts); timestamps stay Date in both adapters.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));

function queryable(client: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<T extends Row>(q: SqlFragment) {
      const { text, values } = q.compile();
      return (await client.query<T>(q.name ? { name: q.name, text, values } : { text, values })).rows;
    },
    async one<T extends Row>(q: SqlFragment) {
      const { text, values } = q.compile();
      return (await client.query<T>(q.name ? { name: q.name, text, values } : { text, values })).rows[0];
    },
    async exec(text: string) {
      await client.query(text);
    },
  };
}

export interface PgOptions {
  connectionString: string;
  /** Pool size per instance. */
  max?: number;
  /** Schema to put first on the search path (tests isolate themselves this way). */
  schema?: string;
}

export async function openPgDb(opts: PgOptions): Promise<Db> {
  const pool = new pg.Pool({
    connectionString: opts.connectionString,
    max: opts.max ?? 10,
    ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
  });
  // A dropped connection surfaces on the pool; without a listener it would crash the process.
  pool.on('error', () => {});
  await pool.query('select 1');
  return {
    engine: 'postgres',
    ...queryable(pool),
    async transaction(fn) {
      const client = await pool.connect();
      // A checked-out client whose server connection dies (a restart, a failover) emits 'error' itself:
      // the pool's listener covers idle clients only, so without this one the process would crash. A
      // broken client is destroyed on release, not handed to the next transaction.
      let broken: Error | undefined;
      const onError = (err: Error) => {
        broken ??= err;
      };
      client.on('error', onError);
      try {
        await client.query('begin');
        const result = await fn(queryable(client));
        await client.query('commit');
        return result;
      } catch (err) {
        await client.query('rollback').catch((e: Error) => {
          broken ??= e;
        });
        throw err;
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    },
    close: () => pool.end(),
  };
}
