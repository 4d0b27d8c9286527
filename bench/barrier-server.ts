/**
 * One side of `npm run bench:barrier`: smart-home with a provisioned complex, in its own process.
 * Prints one JSON line (where to connect, where the partner identity is) and serves until killed.
 *   node bench/barrier-server.ts pglite|postgres|postgres-workers <residents> [workers]
 *
 * `postgres-workers` provisions here, then runs the real `smart-home start` with SMART_HOME_WORKERS
 * processes on the same database schema, data directory and Redis.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { saveIdentity } from '../simulator/identity.ts';
import { serveWithWorkers, startLocalStack } from '../simulator/local-stack.ts';
import { createTestDb } from '../test/support/test-db.ts';
import { barrierBenchWorld } from './barrier-world.ts';

const engine = process.argv[2] ?? 'pglite';
const residents = Number(process.argv[3] ?? 2000);
const workers = Number(process.argv[4] ?? 2);
if (engine !== 'pglite' && !process.env['DATABASE_URL']) throw new Error(`${engine} needs DATABASE_URL`);
if (engine === 'pglite') delete process.env['DATABASE_URL'];

// The benchmark measures the pipeline, not the limiter: far above what 64 connections can send.
const limits = { SMART_HOME_PARTNER_RATE_LIMIT: '1000000', SMART_HOME_PARTNER_RATE_BURST: '1000000' };
const db = engine === 'pglite' ? undefined : await createTestDb();
const stack = await startLocalStack({
  partners: [{ code: 'bench-barrier' }],
  document: (ids) => barrierBenchWorld(ids, residents),
  env: { LOG_LEVEL: 'warn', SMART_HOME_DB_POOL_MAX: '16', ...limits },
  ...(db ? { db } : {}),
});
const identityDir = path.join(stack.dataDir, 'simulator', 'bench-barrier');
await saveIdentity(identityDir, stack.identities.get('bench-barrier')!);
await writeFile(path.join(identityDir, 'keys.jwe'), await stack.exportKeys('bench-barrier'));
const caFile = path.join(stack.dataDir, 'pki', 'service-ca.crt');

const cluster =
  engine === 'postgres-workers'
    ? await serveWithWorkers(stack, {
        databaseUrl: process.env['DATABASE_URL']!,
        schema: db!.schema!,
        workers,
        env: { ...limits, SMART_HOME_DB_POOL_MAX: '8' },
      })
    : undefined;
const url = cluster?.partnerUrl ?? stack.partnerUrl;
process.stdout.write(`${JSON.stringify({ url, identityDir, caFile, dataDir: stack.dataDir })}\n`);

const stop = async () => {
  await cluster?.stop();
  await stack.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
