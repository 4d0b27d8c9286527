import { randomBytes } from 'node:crypto';
import type { Db } from '../../src/db/db.ts';
import { migrate } from '../../src/db/migrate.ts';
import { openPgDb } from '../../src/db/pg-db.ts';
import { openPgliteDb } from '../../src/db/pglite-db.ts';
import { sql } from '../../src/db/sql.ts';

/**
 * A migrated, empty database for one test file: in-memory PGlite by default, or a fresh schema on the
 * real PostgreSQL named by DATABASE_URL (CI runs every suite both ways). `close()` drops the schema.
 */
export async function createTestDb(): Promise<Db & { schema?: string }> {
  const url = process.env['DATABASE_URL'];
  if (!url) {
    const db = await openPgliteDb();
    await migrate(db);
    return db;
  }
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const admin = await openPgDb({ connectionString: url, max: 1 });
  await admin.query(sql`select 1`);
  await admin.exec(`create schema ${schema}`);
  const db = await openPgDb({ connectionString: url, max: 10, schema });
  await migrate(db);
  return {
    ...db,
    schema,
    engine: db.engine,
    transaction: db.transaction,
    async close() {
      await db.close();
      await admin.exec(`drop schema ${schema} cascade`);
      await admin.close();
    },
  };
}

export function isPostgres(): boolean {
  return Boolean(process.env['DATABASE_URL']);
}
