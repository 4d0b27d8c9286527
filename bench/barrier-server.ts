/**
 * One side of `npm run bench:barrier`: smart-home with a provisioned complex, in its own process.
 * Prints one JSON line (where to connect, where the partner identity is) and serves until killed.
 *   node bench/barrier-server.ts pglite|postgres|postgres-workers <residents> [workers]
 *
 * `postgres-workers` provisions here, then runs the real `smart-home start` with SMART_HOME_WORKERS
 * processes on the same database schema, data directory and Redis.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { saveIdentity } from '../simulator/identity.ts';
import { startLocalStack } from '../simulator/local-stack.ts';
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

let cluster: ChildProcess | undefined;
let url = stack.partnerUrl;
if (engine === 'postgres-workers') {
  const free = () =>
    new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
  const [partnerPort, publicPort] = [await free(), await free()];
  const dbUrl = new URL(process.env['DATABASE_URL']!);
  dbUrl.searchParams.set('options', `-c search_path=${db!.schema}`);
  cluster = spawn(process.execPath, [new URL('../src/cli.ts', import.meta.url).pathname, 'start'], {
    env: {
      ...process.env,
      ...limits,
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      DATABASE_URL: dbUrl.toString(),
      REDIS_URL: process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379/0',
      SMART_HOME_DATA_DIR: stack.dataDir,
      SMART_HOME_WORKERS: String(workers),
      SMART_HOME_DB_POOL_MAX: '8',
      SMART_HOME_PARTNER_PORT: String(partnerPort),
      SMART_HOME_PUBLIC_PORT: String(publicPort),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    cluster!.stderr!.on('data', (d) => {
      err += d;
      if (err.includes('smart-home is ready')) resolve();
    });
    cluster!.once('exit', (code) => reject(new Error(`smart-home start exited with ${code}: ${err}`)));
  });
  // Give the other workers a moment to bind after the first one announced itself.
  await new Promise((r) => setTimeout(r, 1500));
  url = `https://localhost:${partnerPort}`;
}
process.stdout.write(`${JSON.stringify({ url, identityDir, caFile, dataDir: stack.dataDir })}\n`);

const stop = async () => {
  if (cluster) {
    const exited = new Promise((r) => cluster!.once('exit', r));
    cluster.kill('SIGTERM');
    await exited;
  }
  await stack.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
