import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '../../src/config/config.ts';
import type { Db } from '../../src/db/db.ts';
import { migrate } from '../../src/db/migrate.ts';
import { openPgliteDb } from '../../src/db/pglite-db.ts';

const run = promisify(execFile);

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * `smart-home …` as an operator runs it: the real CLI in its own process, on the embedded database of a
 * data directory (DATABASE_URL cleared). Resolves with the exit code and both streams, whatever the
 * exit code. `dataDir` is read at each call (tests create it in `before`).
 */
export function smartHomeCli(
  dataDir: () => string,
  opts: { cwd?: () => string; nodeEnv?: string; timeoutMs?: number } = {},
): (...args: string[]) => Promise<CliResult> {
  return (...args) =>
    run(process.execPath, [path.resolve('src/cli.ts'), ...args], {
      ...(opts.cwd ? { cwd: opts.cwd() } : {}),
      env: {
        ...process.env,
        NODE_ENV: opts.nodeEnv ?? 'development',
        SMART_HOME_DATA_DIR: dataDir(),
        DATABASE_URL: '',
        LOG_LEVEL: 'warn',
      },
      timeout: opts.timeoutMs ?? 60_000,
    }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({
        code: e.code,
        stdout: e.stdout,
        stderr: e.stderr,
      }),
    );
}

/** Work on a data directory's embedded database in this process (the CLI must not run meanwhile). */
export async function withDataDb(dataDir: string, fn: (db: Db) => Promise<void>): Promise<void> {
  const config = loadConfig({ SMART_HOME_DATA_DIR: dataDir });
  const db = await openPgliteDb(config.database.pgliteDir);
  try {
    await migrate(db);
    await fn(db);
  } finally {
    await db.close();
  }
}
