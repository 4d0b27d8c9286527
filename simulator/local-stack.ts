import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { JWK } from 'jose';
import { loadConfig } from '../src/config/config.ts';
import { exportPartnerKeysAsJwe } from '../src/crypto/key-export.ts';
import type { Db } from '../src/db/db.ts';
import { sql } from '../src/db/sql.ts';
import { applyDocument } from '../src/registry/apply.ts';
import type { ProvisioningDocument } from '../src/registry/document.ts';
import { loadPartnerKeys } from '../src/registry/partner-secrets.ts';
import { createRuntime, ensureDevelopmentMaterial, type Runtime } from '../src/server.ts';
import { freePort } from '../src/util/free-port.ts';
import { createPartnerIdentity, type PartnerIdentity } from './identity.ts';
import { PartnerClient, type PartnerClientOptions } from './partner-client.ts';

export interface LocalStack {
  runtime: Runtime;
  dataDir: string;
  partnerUrl: string;
  /** The public listener: also the issuer (`iss`) of resident and operator tokens. */
  publicUrl: string;
  /** PEM of the CA that signed the listeners' certificates (clients pin it). */
  serverCa: string;
  issuingCa: { certPem: string; keyPem: string };
  smartHomeKey: JWK;
  identities: Map<string, PartnerIdentity>;
  /** A client for a provisioned partner, with its plate keys imported through the key ceremony. */
  client(code: string, opts?: Partial<PartnerClientOptions>): Promise<PartnerClient>;
  apply(doc: ProvisioningDocument): Promise<void>;
  /** The key ceremony of `smart-home partner export-keys`: the partner's plate keys as a JWE to its key. */
  exportKeys(code: string): Promise<string>;
  close(): Promise<void>;
}

export interface StackPartner {
  code: string;
}

/**
 * The whole service over real TLS on loopback (random ports) in a fresh data directory, with simulated
 * partners onboarded as a real partner would be: own keys, a CSR signed by our partner-issuing CA, the
 * key ceremony's JWE. Tests, the demo and the benchmarks all start from here.
 */
export async function startLocalStack(opts: {
  partners: StackPartner[];
  document: (
    ids: Map<string, PartnerIdentity>,
    dataDir: string,
  ) => ProvisioningDocument | Promise<ProvisioningDocument>;
  env?: Record<string, string>;
  /** A database to use (tests pass a fresh one); default: the configured one (PGlite in the data dir). */
  db?: Db;
  host?: string;
}): Promise<LocalStack> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'smart-home-'));
  // The people's issuer is https://localhost:<public port> (no SMART_HOME_PUBLIC_URL here): the port
  // is chosen before the configuration, so `iss`, discovery and DPoP `htu` name where it listens.
  const publicPort = opts.env?.['SMART_HOME_PUBLIC_PORT'] ?? String(await freePort());
  const config = loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'silent',
    SMART_HOME_DATA_DIR: dataDir,
    SMART_HOME_PUBLIC_PORT: publicPort,
    SMART_HOME_PARTNER_PORT: '0',
    SMART_HOME_PARTNER_RATE_LIMIT: '1000',
    SMART_HOME_PARTNER_RATE_BURST: '1000',
    // Load shedding reads the event loop of the whole test process (PGlite's WebAssembly, key generation
    // of other suites): off here; the shedding suite drives it with a fixed lag probe.
    SMART_HOME_SHED_LAG_MS: '0',
    // CI runs every suite a second time with nonces shared through the real Redis.
    ...(process.env['REDIS_URL'] ? { REDIS_URL: process.env['REDIS_URL'] } : {}),
    ...opts.env,
  });
  await ensureDevelopmentMaterial(config);
  const issuingCa = {
    certPem: await readFile(config.partner.clientCa, 'utf8'),
    keyPem: await readFile(config.partner.issuingCaKey, 'utf8'),
  };
  const serverCa = await readFile(path.join(dataDir, 'pki', 'service-ca.crt'), 'utf8');
  const identities = new Map<string, PartnerIdentity>();
  for (const p of opts.partners) identities.set(p.code, await createPartnerIdentity(p.code, issuingCa));

  const runtime = await createRuntime(config, undefined, opts.db ? { db: opts.db } : {});
  const { app } = runtime;
  await app.partnerApp.listen({ host: opts.host ?? '127.0.0.1', port: 0 });
  await app.publicApp.listen({ host: opts.host ?? '127.0.0.1', port: config.public.port });
  const partnerUrl = `https://localhost:${(app.partnerApp.server.address() as { port: number }).port}`;
  const publicUrl = `https://localhost:${(app.publicApp.server.address() as { port: number }).port}`;
  const smartHomeKey = JSON.parse(await readFile(config.keys.signingKeyFile, 'utf8')) as JWK;
  delete smartHomeKey.d;

  const apply = async (doc: ProvisioningDocument) => {
    await applyDocument({ db: runtime.db, cipher: runtime.cipher }, doc, { type: 'system', id: 'test' });
    await app.reloadDirectory();
  };
  await apply(await opts.document(identities, dataDir));

  const exportKeys = async (code: string) => {
    const partner = await runtime.db.one<{ id: string }>(sql`select id from partners where code = ${code}`);
    if (!partner) throw new Error(`unknown partner ${code}`);
    const keys = (await loadPartnerKeys(runtime.db, runtime.cipher, partner.id)).filter((k) => !k.retired);
    const { jwe } = await exportPartnerKeysAsJwe({
      plateKeys: keys.map((k) => ({ kid: k.kid, key: k.plateKey })),
      recipient: identities.get(code)!.encryption.publicJwk,
      partnerId: code,
    });
    return jwe;
  };
  const clients: PartnerClient[] = [];
  return {
    runtime,
    dataDir,
    partnerUrl,
    publicUrl,
    serverCa,
    issuingCa,
    smartHomeKey,
    identities,
    apply,
    exportKeys,
    async client(code, extra = {}) {
      const identity = extra.identity ?? identities.get(code);
      if (!identity) throw new Error(`no identity for ${code}`);
      const client = new PartnerClient({ identity, baseUrl: partnerUrl, serverCa, smartHomeKey, ...extra });
      const known = await runtime.db.one(sql`select 1 from partners where code = ${code}`);
      // The key ceremony, as `smart-home partner export-keys` and the partner's import run it.
      if (known) await client.importKeys(await exportKeys(code));
      clients.push(client);
      return client;
    },
    async close() {
      await Promise.allSettled(clients.map((c) => c.close()));
      await runtime.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Serves a provisioned stack's data (its schema on PostgreSQL, its data directory with keys and PKI)
 * from the real `smart-home start` with `workers` processes sharing the ports. Needs DATABASE_URL and
 * REDIS_URL, like any multi-process deployment.
 */
export async function serveWithWorkers(
  stack: LocalStack,
  opts: { databaseUrl: string; schema: string; workers: number; env?: Record<string, string> },
): Promise<{
  partnerUrl: string;
  /** The primary process (its workers are its children). */
  pid: number;
  stop(): Promise<void>;
}> {
  const [partnerPort, publicPort] = [await freePort(), await freePort()];
  const dbUrl = new URL(opts.databaseUrl);
  dbUrl.searchParams.set('options', `-c search_path=${opts.schema}`);
  const child = spawn(process.execPath, [new URL('../src/cli.ts', import.meta.url).pathname, 'start'], {
    env: {
      ...process.env,
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      REDIS_URL: process.env['REDIS_URL'] ?? 'redis://127.0.0.1:6379/0',
      ...opts.env,
      DATABASE_URL: dbUrl.toString(),
      SMART_HOME_DATA_DIR: stack.dataDir,
      SMART_HOME_WORKERS: String(opts.workers),
      SMART_HOME_PARTNER_PORT: String(partnerPort),
      SMART_HOME_PUBLIC_PORT: String(publicPort),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d) => {
      err += d;
      if (err.includes('smart-home is ready')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`smart-home start exited with ${code}: ${err}`)));
  });
  // The banner comes from the first worker; give the others a moment to bind too.
  await new Promise((r) => setTimeout(r, 1500));
  return {
    partnerUrl: `https://localhost:${partnerPort}`,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
