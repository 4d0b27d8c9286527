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

export async function openDb(cfg: DbConfig): Promise<Db> {
  if (cfg.url) return openPgDb({ connectionString: cfg.url, max: cfg.poolMax });
  await mkdir(cfg.pgliteDir, { recursive: true, mode: 0o700 });
  return openPgliteDb(cfg.pgliteDir);
}
