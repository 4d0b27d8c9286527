import cluster from 'node:cluster';
import type { Config } from './config/config.ts';
import { migrate } from './db/migrate.ts';
import { openDb } from './db/open-db.ts';
import { createLogger } from './logger.ts';
import { ensureDevelopmentMaterial, type Runtime, startServer } from './server.ts';

/**
 * `smart-home start`: one process, or with SMART_HOME_WORKERS > 1 a primary that prepares once
 * (development material, migrations) and forks workers that share both listening ports. A worker that
 * dies is replaced; SIGTERM/SIGINT stop the workers gracefully, then the primary.
 */
export async function start(config: Config): Promise<void> {
  if (config.workers <= 1 || cluster.isWorker) {
    const runtime = await startServer(config, { banner: cluster.isPrimary || cluster.worker?.id === 1 });
    onSignals(runtime.logger, () => runtime.close());
    return;
  }
  const logger = createLogger({ level: config.log.level });
  for (const what of await ensureDevelopmentMaterial(config))
    logger.warn(`created ${what} (development only)`);
  const db = await openDb({ url: config.database.url, pgliteDir: config.database.pgliteDir, poolMax: 1 });
  try {
    await migrate(db);
  } finally {
    await db.close();
  }
  let stopping = false;
  for (let i = 0; i < config.workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    logger.error({ worker: worker.id, code, signal }, 'worker died; starting another');
    cluster.fork();
  });
  onSignals(logger, async () => {
    stopping = true;
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
    await new Promise<void>((resolve) => {
      const check = () =>
        Object.keys(cluster.workers ?? {}).length === 0 ? resolve() : setTimeout(check, 50);
      check();
    });
  });
}

function onSignals(logger: Runtime['logger'], close: () => Promise<void>): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    await close();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}
