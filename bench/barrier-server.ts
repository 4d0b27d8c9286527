/**
 * One side of `npm run bench:barrier`: smart-home with a provisioned complex, in its own process.
 * Prints one JSON line (where to connect, where the partner identity is) and serves until killed.
 *   node bench/barrier-server.ts pglite|postgres <residents>
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { saveIdentity } from '../simulator/identity.ts';
import { startLocalStack } from '../simulator/local-stack.ts';
import { createTestDb } from '../test/support/test-db.ts';
import { barrierBenchWorld } from './barrier-world.ts';

const engine = process.argv[2] ?? 'pglite';
const residents = Number(process.argv[3] ?? 2000);
if (engine === 'postgres' && !process.env['DATABASE_URL']) throw new Error('postgres needs DATABASE_URL');
if (engine === 'pglite') delete process.env['DATABASE_URL'];

const db = engine === 'postgres' ? await createTestDb() : undefined;
const stack = await startLocalStack({
  partners: [{ code: 'bench-barrier' }],
  document: (ids) => barrierBenchWorld(ids, residents),
  env: {
    LOG_LEVEL: 'warn',
    // the benchmark measures the pipeline, not the limiter: far above what 64 connections can send
    SMART_HOME_PARTNER_RATE_LIMIT: '1000000',
    SMART_HOME_PARTNER_RATE_BURST: '1000000',
    SMART_HOME_DB_POOL_MAX: '16',
  },
  ...(db ? { db } : {}),
});
const identityDir = path.join(stack.dataDir, 'simulator', 'bench-barrier');
await saveIdentity(identityDir, stack.identities.get('bench-barrier')!);
await writeFile(path.join(identityDir, 'keys.jwe'), await stack.exportKeys('bench-barrier'));
const caFile = path.join(stack.dataDir, 'pki', 'service-ca.crt');
process.stdout.write(
  `${JSON.stringify({ url: stack.partnerUrl, identityDir, caFile, dataDir: stack.dataDir })}\n`,
);

const stop = async () => {
  await stack.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
