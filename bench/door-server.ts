/**
 * One side of `npm run bench:door`: smart-home in its own process, provisioned with the door world of
 * bench/door-world.ts, its intercom partner registered at `intercomUrl` (started afterwards by
 * bench/door.ts, in a process of its own). Prints one JSON line (where to connect, where the
 * partner's identity and smart-home's data are) and serves until killed. The console sender of
 * sign-in codes writes to this process's stdout, which is where the residents' app reads them.
 *
 *   node bench/door-server.ts postgres|pglite <residents> <intercomUrl> <intercom CA pem> <clients file>
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { saveIdentity } from '../simulator/identity.ts';
import { startLocalStack } from '../simulator/local-stack.ts';
import { createTestDb } from '../test/support/test-db.ts';
import { DOOR_BENCH_PARTNER, doorBenchWorld } from './door-world.ts';

const [engine = 'postgres', residents = '32', intercomUrl, caFile, clientsFile] = process.argv.slice(2);
if (!intercomUrl || !caFile || !clientsFile) {
  process.stderr.write('usage: door-server.ts ENGINE RESIDENTS INTERCOM_URL INTERCOM_CA CLIENTS_FILE\n');
  process.exit(2);
}
if (engine !== 'pglite' && !process.env['DATABASE_URL']) throw new Error(`${engine} needs DATABASE_URL`);
if (engine === 'pglite') delete process.env['DATABASE_URL'];

const serverCaPem = await readFile(caFile, 'utf8');
const db = engine === 'pglite' ? undefined : await createTestDb();
const stack = await startLocalStack({
  partners: [{ code: DOOR_BENCH_PARTNER }],
  document: (ids) => doorBenchWorld(ids, Number(residents), { url: intercomUrl, serverCaPem }),
  env: {
    LOG_LEVEL: 'warn',
    SMART_HOME_OAUTH_CLIENTS_FILE: clientsFile,
    // Every resident signs in from the same loopback address: the per-address send limit would be
    // the first thing measured otherwise.
    SMART_HOME_OTP_SEND_MAX_PER_ADDRESS: '100000',
    // Options set for the run (`SMART_HOME_API_TOKEN_CACHE_S=0 npm run bench:door`) reach the service.
    ...Object.fromEntries(
      Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('SMART_HOME_')),
    ),
  },
  ...(db ? { db } : {}),
});
const identityDir = path.join(stack.dataDir, 'simulator', DOOR_BENCH_PARTNER);
await saveIdentity(identityDir, stack.identities.get(DOOR_BENCH_PARTNER)!);
process.stdout.write(
  `${JSON.stringify({
    publicUrl: stack.publicUrl,
    dataDir: stack.dataDir,
    identityDir,
    caFile: path.join(stack.dataDir, 'pki', 'service-ca.crt'),
    pid: process.pid,
  })}\n`,
);

const stop = async () => {
  await stack.close();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
