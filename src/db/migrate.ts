import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Db } from './db.ts';
import { sql } from './sql.ts';

const MIGRATIONS_DIR = fileURLToPath(new URL('./migrations/', import.meta.url));
// An arbitrary constant: every instance that starts migrates under the same advisory lock.
const MIGRATION_LOCK = 727_001;

export interface Migration {
  version: number;
  name: string;
  text: string;
  checksum: string;
}

export async function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f)).sort();
  const out: Migration[] = [];
  for (const file of files) {
    const text = await readFile(dir + file, 'utf8');
    out.push({
      version: Number(file.slice(0, 3)),
      name: file.slice(4, -4),
      text,
      checksum: createHash('sha256').update(text).digest('hex'),
    });
  }
  return out;
}

export class MigrationError extends Error {
  readonly code = 'ERR_MIGRATION';
}

/**
 * Applies pending numbered migrations, each in its own transaction, under an advisory lock so that
 * several instances starting together migrate once. Applied migrations are immutable: a changed file
 * is refused by checksum rather than silently skipped.
 */
export async function migrate(db: Db, migrations?: Migration[]): Promise<{ applied: string[] }> {
  const all = migrations ?? (await loadMigrations());
  const applied: string[] = [];
  await db.transaction(async (tx) => {
    await tx.query(sql`select pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await tx.exec(`create table if not exists schema_migrations (
      version integer primary key, name text not null, checksum text not null,
      applied_at timestamptz not null default now())`);
    const done = new Map(
      (
        await tx.query<{ version: number; checksum: string }>(
          sql`select version, checksum from schema_migrations`,
        )
      ).map((r) => [r.version, r.checksum]),
    );
    for (const m of all) {
      const prior = done.get(m.version);
      if (prior !== undefined) {
        if (prior !== m.checksum) {
          throw new MigrationError(`migration ${m.version}_${m.name} was changed after it was applied`);
        }
        continue;
      }
      await tx.exec(m.text);
      await tx.query(
        sql`insert into schema_migrations (version, name, checksum) values (${m.version}, ${m.name}, ${m.checksum})`,
      );
      applied.push(`${String(m.version).padStart(3, '0')}_${m.name}`);
    }
  });
  return { applied };
}

/**
 * Migrations not yet applied (or changed since), without applying anything: for a service that runs
 * as a role that cannot create tables (SMART_HOME_MIGRATE_ON_START=false) and must refuse to start on
 * an outdated schema.
 */
export async function pendingMigrations(db: Db, migrations?: Migration[]): Promise<string[]> {
  const all = migrations ?? (await loadMigrations());
  const exists = await db.one<{ t: string | null }>(sql`select to_regclass('schema_migrations')::text as t`);
  const done = new Map(
    exists?.t
      ? (
          await db.query<{ version: number; checksum: string }>(
            sql`select version, checksum from schema_migrations`,
          )
        ).map((r) => [r.version, r.checksum])
      : [],
  );
  return all
    .filter((m) => done.get(m.version) !== m.checksum)
    .map((m) => `${String(m.version).padStart(3, '0')}_${m.name}`);
}
