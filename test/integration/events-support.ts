/**
 * A second smart-home instance on the database of a running local stack, for the events suites'
 * several-instances cases: on PostgreSQL its own pool on the stack's schema (two processes' worth of
 * connections), on PGlite the same Db object (the embedded database belongs to one process).
 */

import type { LocalStack } from '../../simulator/local-stack.ts';
import { PartnerClient } from '../../simulator/partner-client.ts';
import { loadConfig } from '../../src/config/config.ts';
import type { Db } from '../../src/db/db.ts';
import { openPgDb } from '../../src/db/pg-db.ts';
import { createRuntime, type Runtime } from '../../src/server.ts';
import { freePort } from '../../src/util/free-port.ts';

export interface SecondInstance {
  runtime: Runtime;
  partnerUrl: string;
  client(code: string): Promise<PartnerClient>;
  close(): Promise<void>;
}

export async function secondInstance(
  h: LocalStack,
  env: Record<string, string> = {},
): Promise<SecondInstance> {
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'silent',
    SMART_HOME_DATA_DIR: h.dataDir,
    SMART_HOME_PUBLIC_PORT: String(await freePort()),
    SMART_HOME_PARTNER_PORT: '0',
    SMART_HOME_PARTNER_RATE_LIMIT: '1000',
    SMART_HOME_PARTNER_RATE_BURST: '1000',
    ...(process.env['REDIS_URL'] ? { REDIS_URL: process.env['REDIS_URL'] } : {}),
    ...env,
  });
  const schema = (h.runtime.db as Db & { schema?: string }).schema;
  const url = process.env['DATABASE_URL'];
  const shared = !(url && schema);
  const db = shared ? h.runtime.db : await openPgDb({ connectionString: url, max: 5, schema });
  const runtime = await createRuntime(config, undefined, { db });
  await runtime.app.partnerApp.listen({ host: '127.0.0.1', port: 0 });
  const partnerUrl = `https://localhost:${(runtime.app.partnerApp.server.address() as { port: number }).port}`;
  const clients: PartnerClient[] = [];
  return {
    runtime,
    partnerUrl,
    async client(code) {
      const identity = h.identities.get(code);
      if (!identity) throw new Error(`no identity for ${code}`);
      const c = new PartnerClient({
        identity,
        baseUrl: partnerUrl,
        serverCa: h.serverCa,
        smartHomeKey: h.smartHomeKey,
      });
      clients.push(c);
      return c;
    },
    async close() {
      await Promise.allSettled(clients.map((c) => c.close()));
      if (shared) {
        // The database is the stack's: close this instance's own parts only.
        await runtime.app.close();
        await runtime.outbound.close();
      } else await runtime.close();
    },
  };
}
