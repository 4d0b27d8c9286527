import { createHash, randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Db } from '../../src/db/db.ts';
import { loadMigrations, migrate } from '../../src/db/migrate.ts';
import { openPgDb } from '../../src/db/pg-db.ts';
import { openPgliteDb } from '../../src/db/pglite-db.ts';
import { sql } from '../../src/db/sql.ts';

/**
 * A migrated, empty database for one test file: in-memory PGlite by default, or a fresh schema on the
 * real PostgreSQL named by DATABASE_URL (CI runs every suite both ways). `close()` drops the schema.
 */
export async function createTestDb(): Promise<Db & { schema?: string }> {
  const url = process.env['DATABASE_URL'];
  if (!url) return migratedPglite();
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

/**
 * An in-memory PGlite that starts from a migrated template instead of running initdb and the migrations
 * again: initdb in WASM costs 3–4 s of CPU, loading the template ≈ 1 s, and CI builds well over a hundred
 * of these. The template is a `dumpDataDir()` tarball in the OS temp directory, named by the PGlite
 * version and the migrations' checksums (a changed migration makes a new one), written atomically, so
 * concurrent test processes share it. `migrate()` still runs on the copy and checks every checksum.
 */
async function migratedPglite(): Promise<Db> {
  const migrations = await loadMigrations();
  const pkg = JSON.parse(
    await readFile(new URL('../../node_modules/@electric-sql/pglite/package.json', import.meta.url), 'utf8'),
  ) as {
    version: string;
  };
  const key = createHash('sha256')
    .update(pkg.version)
    .update(migrations.map((m) => m.checksum).join(','))
    .digest('hex')
    .slice(0, 16);
  const file = path.join(tmpdir(), `smart-home-test-pglite-${key}.tar`);
  const template = await readFile(file).catch(() => undefined);
  if (template) {
    const db = await openPgliteDb(undefined, { loadDataDir: new Blob([template]) });
    await migrate(db, migrations);
    return db;
  }
  const db = await openPgliteDb();
  await migrate(db, migrations);
  const dump = Buffer.from(await (await db.dumpDataDir()).arrayBuffer());
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, dump);
  await rename(tmp, file);
  return db;
}
