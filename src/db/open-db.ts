import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import type { Db } from './db.ts';
import { openPgDb } from './pg-db.ts';
import { openPgliteDb } from './pglite-db.ts';

export interface DbConfig {
  /** PostgreSQL connection string; when absent the embedded PGlite database is used. */
  url?: string | undefined;
  /** Directory of the embedded database. */
  pgliteDir: string;
  poolMax: number;
}

export class DbLockedError extends Error {
  readonly code = 'ERR_DB_LOCKED';
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * PGlite is one process's database: a second process opening the same directory would corrupt it.
 * A lock file with the owner's pid makes the second opener fail with a clear message instead (a lock
 * left by a dead process is taken over).
 */
function lockEmbedded(dir: string): () => void {
  const file = `${dir}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx', mode: 0o600 });
      return () => {
        try {
          if (readFileSync(file, 'utf8') === String(process.pid)) unlinkSync(file);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(readFileSync(file, 'utf8'));
      if (Number.isInteger(owner) && owner > 0 && alive(owner)) {
        throw new DbLockedError(
          `the embedded database ${dir} is in use by process ${owner} (is smart-home running?). ` +
            'Stop it first, or set DATABASE_URL to share a PostgreSQL database between processes.',
        );
      }
      if (existsSync(file)) unlinkSync(file);
    }
  }
  throw new DbLockedError(`cannot lock the embedded database ${dir}`);
}

export async function openDb(cfg: DbConfig): Promise<Db> {
  if (cfg.url) return openPgDb({ connectionString: cfg.url, max: cfg.poolMax });
  await mkdir(cfg.pgliteDir, { recursive: true, mode: 0o700 });
  const unlock = lockEmbedded(cfg.pgliteDir);
  try {
    const db = await openPgliteDb(cfg.pgliteDir);
    return {
      ...db,
      engine: db.engine,
      transaction: db.transaction,
      async close() {
        try {
          await db.close();
        } finally {
          unlock();
        }
      },
    };
  } catch (err) {
    unlock();
    throw err;
  }
}
