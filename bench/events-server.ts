/**
 * One side of `npm run bench:events`: smart-home with an event-sending partner, in its own process,
 * its event processor running as in `smart-home start`. Prints one JSON line (where to connect, the
 * partner's identity directory for the simulator's CLI, the database schema to watch) and serves until
 * killed.
 *   node bench/events-server.ts postgres|postgres-workers [workers]
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { saveIdentity } from '../simulator/identity.ts';
import { serveWithWorkers, startLocalStack } from '../simulator/local-stack.ts';
import { loadConfig } from '../src/config/config.ts';
import { startSequencer } from '../src/journal/log/runner.ts';
import { eventsWorld } from '../test/faults/support.ts';
import { createTestDb } from '../test/support/test-db.ts';

const engine = process.argv[2] ?? 'postgres';
const workers = Number(process.argv[3] ?? 2);
if (!process.env['DATABASE_URL']) throw new Error(`${engine} needs DATABASE_URL`);

const BENCH_DOORS = Array.from({ length: 50 }, (_, i) => `door-${i + 1}`);
// The benchmark measures ingestion, not the limiter: far above what the sender can send.
const limits = { SMART_HOME_PARTNER_RATE_LIMIT: '1000000', SMART_HOME_PARTNER_RATE_BURST: '1000000' };
const db = await createTestDb();
const stack = await startLocalStack({
  partners: [{ code: 'bench-events' }],
  document: (ids) =>
    eventsWorld(ids, [{ code: 'bench-events', devices: BENCH_DOORS, networks: ['127.0.0.1/32', '::1/128'] }]),
  env: { LOG_LEVEL: 'warn', SMART_HOME_DB_POOL_MAX: '16', ...limits },
  db,
});
const home = path.join(stack.dataDir, 'simulator');
await saveIdentity(path.join(home, 'bench-events'), stack.identities.get('bench-events')!);
const keyFile = path.join(stack.dataDir, 'smart-home.pub.jwk');
await writeFile(keyFile, JSON.stringify(stack.smartHomeKey));
const caFile = path.join(stack.dataDir, 'pki', 'service-ca.crt');

const cluster =
  engine === 'postgres-workers'
    ? await serveWithWorkers(stack, {
        databaseUrl: process.env['DATABASE_URL']!,
        schema: db.schema!,
        workers,
        env: { ...limits, SMART_HOME_DB_POOL_MAX: '8' },
      })
    : undefined;
// One process: this one processes what it stores and integrates the journal, as `smart-home start`
// does (the workers of postgres-workers are `smart-home start` processes).
const { journal } = loadConfig(process.env);
const sequencer = cluster
  ? undefined
  : startSequencer(stack.runtime.db, stack.runtime.journalLog, {
      intervalMs: journal.integrateMs,
      batchMax: journal.batchMax,
      logger: stack.runtime.logger,
    });
if (!cluster) stack.runtime.app.events.start();
const url = cluster?.partnerUrl ?? stack.partnerUrl;
process.stdout.write(
  `${JSON.stringify({ url, home, keyFile, caFile, schema: db.schema, devices: BENCH_DOORS.join(',') })}\n`,
);

const stop = async () => {
  await cluster?.stop();
  await stack.runtime.app.events.stop();
  await sequencer?.stop();
  await stack.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
