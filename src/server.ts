import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Redis } from 'ioredis';
import { type App, buildApp } from './app.ts';
import { purgeIdempotencyRecords } from './barrier/decision-service.ts';
import type { Config } from './config/config.ts';
import { FieldCipher } from './crypto/field-cipher.ts';
import { createKekFile, type Kek, kekFromBase64, loadKekFromFile } from './crypto/kek.ts';
import type { Db } from './db/db.ts';
import { migrate, pendingMigrations } from './db/migrate.ts';
import { openDb } from './db/open-db.ts';
import { livenessReconciler } from './device-health/reconciler.ts';
import { DeviceHealthSink } from './device-health/sink.ts';
import { startDeviceSweeper } from './device-health/sweeper.ts';
import { MemoryReplayCache, RedisReplayCache, type ReplayCache } from './http-signatures/replay-cache.ts';
import { ensureIdentityMaterial } from './identity/identity.ts';
import { startSequencer } from './journal/log/runner.ts';
import type { LogIdentity } from './journal/log/sequencer.ts';
import { startReconcileSchedule } from './journal/reconcile/scheduler.ts';
import { loadWitnessCosigner } from './journal/witness/identity.ts';
import { startWitnessSubmitter } from './journal/witness/submitter.ts';
import { ensureJwkFile, loadSigningKey } from './keys/service-keys.ts';
import { createLogger, type Logger } from './logger.ts';
import { Outbound } from './outbound/outbound.ts';
import { type RateLimiter, RedisRateLimiter } from './partner-zone/rate-limiter.ts';
import { ensureDevPki, isDevelopmentCert } from './pki/dev-pki.ts';
import { DATA_KEY_PURPOSES } from './registry/data-key-purposes.ts';
import { type NoteSigner, noteSigner } from './tlog/note.ts';

export { DATA_KEY_PURPOSES };

export class StartupError extends Error {
  readonly code = 'ERR_STARTUP';
}

/**
 * Development convenience: on first start, create the PKI, service keys and key-encryption key under
 * DATA_DIR. Never in production: there every one of them must come from configuration.
 */
export async function ensureDevelopmentMaterial(config: Config): Promise<string[]> {
  if (config.env === 'production') return [];
  const created: string[] = [];
  const pki = await ensureDevPki(path.join(config.dataDir, 'pki'));
  if (pki.created) created.push(`development PKI in ${path.join(config.dataDir, 'pki')}`);
  if (await ensureJwkFile(config.keys.signingKeyFile, 'Ed25519'))
    created.push(`response-signing key ${config.keys.signingKeyFile}`);
  if (await ensureJwkFile(config.keys.tokenKeyFile, 'ES256'))
    created.push(`token-signing key ${config.keys.tokenKeyFile}`);
  if (await ensureJwkFile(config.journal.keyFile, 'Ed25519'))
    created.push(`journal checkpoint key ${config.journal.keyFile}`);
  if (await ensureJwkFile(config.witness.keyFile, 'Ed25519'))
    created.push(`witness cosigner key ${config.witness.keyFile}`);
  created.push(...(await ensureIdentityMaterial(config)));
  const clients = developmentClientsFile(config);
  if (clients && !existsSync(clients)) {
    await mkdir(path.dirname(clients), { recursive: true, mode: 0o700 });
    // Several workers may start at once: each writes the same text, the rename is atomic.
    const tmp = `${clients}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, DEVELOPMENT_CLIENTS, { mode: 0o644, flag: 'wx' });
    await rename(tmp, clients);
    created.push(`OAuth clients for residents and operators ${clients}`);
  }
  if (!config.keys.kek && !existsSync(config.keys.kekFile)) {
    await createKekFile(config.keys.kekFile);
    created.push(`key-encryption key ${config.keys.kekFile}`);
  }
  return created;
}

/**
 * The OAuth clients a fresh development instance offers, so a newcomer can sign a resident or an
 * operator in (docs/residents-and-operators.md): the mobile app as examples/oauth-clients.yaml declares
 * it, and two clients for trying the flow by hand whose redirect URI is a loopback address nothing
 * listens on (the browser's address bar shows the code). Public clients only: there is no secret here.
 */
const DEVELOPMENT_CLIENTS = `# Created by \`npm start\` because SMART_HOME_OAUTH_CLIENTS_FILE is unset (development only; production
# starts with no client until the option names a file). Edit it, or set the option to a file of your own.
# Reference: docs/residents-and-operators.md.
clients:
  # The residents' mobile app (simulator/resident-app.ts): PKCE S256, DPoP-bound tokens.
  - clientId: mobile-app
    role: resident
    redirectUris: ["ru.propdevelopment.smarthome:/oauth/callback"]
    dpopBoundAccessTokens: true
  # Trying the sign-in by hand (browser + curl): bearer tokens, the code lands on a loopback URL.
  - clientId: dev-resident
    role: resident
    redirectUris: ["http://127.0.0.1:8765/callback"]
  - clientId: dev-operator
    role: operator
    redirectUris: ["http://127.0.0.1:8765/callback"]
`;

/** Where the development OAuth clients live: only outside production and when the option is unset. */
export function developmentClientsFile(config: Config): string | undefined {
  if (config.env === 'production' || config.identity.clientsFile) return undefined;
  return path.join(config.dataDir, 'oauth-clients.yaml');
}

/**
 * The configuration `start` serves with: in development without SMART_HOME_OAUTH_CLIENTS_FILE, the
 * clients file {@link ensureDevelopmentMaterial} created. Production is returned unchanged.
 */
export function withDevelopmentClients(config: Config): Config {
  const file = developmentClientsFile(config);
  if (!file || !existsSync(file)) return config;
  return Object.freeze({ ...config, identity: Object.freeze({ ...config.identity, clientsFile: file }) });
}

export async function loadKek(config: Config): Promise<Kek> {
  if (config.keys.kek) return kekFromBase64(config.keys.kek);
  if (config.env === 'production' && config.keys.kekFile.startsWith(config.dataDir + path.sep)) {
    throw new StartupError(
      'SMART_HOME_KEK_FILE points into DATA_DIR, where development keys live; refused in production',
    );
  }
  return loadKekFromFile(config.keys.kekFile);
}

async function readPem(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    throw new StartupError(`cannot read ${what} at ${file}`);
  }
}

export interface Runtime {
  app: App;
  db: Db;
  cipher: FieldCipher;
  logger: Logger;
  /** The outbound partner channel (contract §7): `runtime.outbound.openDoor(...)`. */
  outbound: Outbound;
  /** The journal log's name and checkpoint signer (contract §8.1). */
  journalLog: LogIdentity;
  /** Our witness cosigner of partners' checkpoints (contract §8.2). */
  witness: NoteSigner;
  close(): Promise<void>;
}

/** Opens the database, migrates, loads keys and builds the app (without listening). */
export async function createRuntime(
  config: Config,
  logger = createLogger({ level: config.log.level }),
  inject: { db?: Db } = {},
): Promise<Runtime> {
  const tls = {
    public: {
      cert: await readPem(config.public.tlsCert, 'the public listener certificate'),
      key: await readPem(config.public.tlsKey, 'the public listener key'),
    },
    partner: {
      cert: await readPem(config.partner.tlsCert, 'the partner listener certificate'),
      key: await readPem(config.partner.tlsKey, 'the partner listener key'),
      clientCa: await readPem(config.partner.clientCa, 'the partner-issuing CA certificate'),
    },
  };
  // Our client certificate for calls to partners (contract §1, §7).
  const outboundTls = {
    cert: await readPem(config.outbound.clientCert, 'the outbound client certificate'),
    key: await readPem(config.outbound.clientKey, 'the outbound client key'),
  };
  if (config.env === 'production') {
    for (const [what, pem] of [
      ['SMART_HOME_PUBLIC_TLS_CERT', tls.public.cert],
      ['SMART_HOME_PARTNER_TLS_CERT', tls.partner.cert],
      ['SMART_HOME_PARTNER_CLIENT_CA', tls.partner.clientCa],
      ['SMART_HOME_OUTBOUND_CLIENT_CERT', outboundTls.cert],
    ] as const) {
      if (isDevelopmentCert(pem))
        throw new StartupError(`${what} is a development certificate; refused in production`);
    }
  }
  const kek = await loadKek(config);
  const responseKey = await loadSigningKey(config.keys.signingKeyFile, 'Ed25519');
  const tokenKey = (await loadSigningKey(config.keys.tokenKeyFile, 'ES256')).privateJwk;
  const journalLog = await loadJournalLog(config);
  let witness: NoteSigner;
  try {
    witness = await loadWitnessCosigner(config);
  } catch (err) {
    throw new StartupError((err as Error).message);
  }

  const db =
    inject.db ??
    (await openDb({
      url: config.database.url,
      pgliteDir: config.database.pgliteDir,
      poolMax: config.database.poolMax,
    }));
  let redis: Redis | undefined;
  try {
    if (config.database.migrateOnStart) {
      const { applied } = await migrate(db);
      if (applied.length > 0) logger.info({ applied }, 'database migrated');
    } else {
      const pending = await pendingMigrations(db);
      if (pending.length > 0) {
        throw new StartupError(
          `the database schema is not up to date (${pending.join(', ')}): run \`smart-home migrate\` as the tables' owner`,
        );
      }
    }
    const cipher = await FieldCipher.open(db, kek, DATA_KEY_PURPOSES);
    let replayCache: ReplayCache;
    let rateLimiter: RateLimiter | undefined;
    if (config.redis.url) {
      redis = new Redis(config.redis.url, { lazyConnect: true, maxRetriesPerRequest: 2 });
      // ioredis reports every failed reconnect as an 'error' event (to stderr without a listener):
      // once per outage through the logger instead; the replay cache and the limiter say what they do.
      let redisDown = false;
      redis.on('error', (err: Error) => {
        if (redisDown) return;
        redisDown = true;
        logger.error({ err: { message: err.message } }, 'Redis connection failed');
      });
      redis.on('ready', () => {
        if (!redisDown) return;
        redisDown = false;
        logger.info('Redis connection restored');
      });
      await redis.connect();
      replayCache = new RedisReplayCache(redis);
      // Issue 5: one budget per partner across instances, on the replay cache's connection.
      rateLimiter = new RedisRateLimiter(redis, {
        ratePerSecond: config.partner.rateLimit,
        burst: config.partner.rateBurst,
        onBackendError: config.partner.rateLimitOnRedisError,
        timeoutMs: config.partner.rateLimitRedisTimeoutMs,
        logger,
      });
    } else replayCache = new MemoryReplayCache();
    let built: App | undefined;
    const outbound = new Outbound({
      db,
      cipher,
      directory: () => {
        if (!built) throw new StartupError('the outbound channel was used before the app was built');
        return built.directory();
      },
      clientTls: outboundTls,
      signingKey: responseKey,
      options: config.outbound,
      logger,
    });
    const app = await buildApp({
      config,
      logger,
      db,
      cipher,
      tls,
      responseKey,
      tokenKey,
      replayCache,
      ...(rateLimiter ? { rateLimiter } : {}),
      outbound,
      journalLog,
      witnessCosigner: witness,
      // Issue 5: device health from every processed partner event, in the processor's transaction.
      deviceEvents: new DeviceHealthSink({ maxSkewMs: config.deviceHealth.maxSkewMs }),
    });
    built = app;
    return {
      app,
      db,
      cipher,
      logger,
      outbound,
      journalLog,
      witness,
      async close() {
        await app.close();
        await outbound.close();
        await replayCache.close();
        await db.close();
      },
    };
  } catch (err) {
    redis?.disconnect();
    await db.close();
    throw err;
  }
}

/** The journal log's identity: its origin and the Ed25519 key that signs its checkpoints. */
export async function loadJournalLog(config: Config): Promise<LogIdentity> {
  const key = await loadSigningKey(config.journal.keyFile, 'Ed25519');
  try {
    return { origin: config.journal.origin, signer: noteSigner(config.journal.origin, key.privateKey) };
  } catch (err) {
    throw new StartupError(`SMART_HOME_JOURNAL_ORIGIN: ${(err as Error).message}`);
  }
}

/** `smart-home start`: both listeners up, registry refreshed periodically, graceful shutdown. */
export async function startServer(given: Config, opts: { banner?: boolean } = {}): Promise<Runtime> {
  const logger = createLogger({ level: given.log.level });
  const created = await ensureDevelopmentMaterial(given);
  for (const what of created) logger.warn(`created ${what} (development only)`);
  const config = withDevelopmentClients(given);
  const runtime = await createRuntime(config, logger);
  const { app } = runtime;
  await app.partnerApp.listen({ host: config.partner.host, port: config.partner.port });
  await app.publicApp.listen({ host: config.public.host, port: config.public.port });
  // Changes made through other instances (or the CLI on PostgreSQL): partners and devices, and data
  // keys added by a rotation elsewhere.
  const refresh = setInterval(() => {
    Promise.all([app.reloadDirectory(), runtime.cipher.refresh()]).catch((err) =>
      logger.error({ err }, 'registry refresh failed'),
    );
  }, config.registry.refreshMs);
  refresh.unref();
  const housekeeping = setInterval(() => {
    purgeIdempotencyRecords(runtime.db).catch((err) => logger.error({ err }, 'housekeeping failed'));
    app.identity.purge().catch((err) => logger.error({ err }, 'identity housekeeping failed'));
  }, config.housekeeping.intervalMs);
  housekeeping.unref();
  // The journal's Merkle log: new rows integrated and a checkpoint signed every integrateMs.
  const sequencer = startSequencer(runtime.db, runtime.journalLog, {
    intervalMs: config.journal.integrateMs,
    batchMax: config.journal.batchMax,
    logger,
  });
  // Issue 5: devices offline after missed heartbeats (contract §9), reconciliation after reboots.
  const deviceSweeper = startDeviceSweeper(runtime.db, {
    intervalMs: config.deviceHealth.sweepMs,
    historyDays: config.deviceHealth.historyDays,
    reconciler: livenessReconciler,
    logger,
  });
  // Contract §9: stored partner events processed (journal, device health), gaps backfilled.
  app.events.start();
  // Contract §8.2: our newest checkpoint to the partners that witness our log, while it grows.
  const submitter = startWitnessSubmitter(
    { db: runtime.db, outbound: runtime.outbound, directory: () => app.directory(), logger },
    { intervalMs: config.witness.submitMs },
  );
  // Issue 4: each partner's journal reconciled once a day for the previous day (off by default).
  const reconcileSchedule =
    config.reconcile.schedule && app.reconciler
      ? startReconcileSchedule(
          { db: runtime.db, reconciler: app.reconciler, reportDir: config.reconcile.reportDir, logger },
          { delayMinutes: config.reconcile.scheduleDelayMinutes },
        )
      : undefined;
  // Reconciliation indexes of the last days, built in the background before partners ask.
  app
    .warmReconciliation()
    .then(
      (n) =>
        n > 0 &&
        logger.info({ partners: n, days: config.reconcile.warmDays }, 'reconciliation indexes built'),
    )
    .catch((err) => logger.error({ err }, 'building the reconciliation indexes failed'));
  const close = runtime.close;
  runtime.close = async () => {
    clearInterval(refresh);
    clearInterval(housekeeping);
    await reconcileSchedule?.stop();
    await submitter.stop();
    await app.events.stop();
    await deviceSweeper.stop();
    await sequencer.stop();
    await close();
  };
  const partnerPort = (app.partnerApp.server.address() as { port: number }).port;
  const publicPort = (app.publicApp.server.address() as { port: number }).port;
  if (config.log.level !== 'silent' && opts.banner !== false) {
    process.stderr.write(
      [
        '',
        `smart-home is ready (${config.env}${config.workers > 1 ? `, ${config.workers} processes` : ''})`,
        `  partner listener (mTLS)  https://${config.partner.host}:${partnerPort}   token: /oauth/token`,
        `  public listener          https://${config.public.host}:${publicPort}   health: /healthz`,
        `  database                 ${config.database.url ? 'PostgreSQL (DATABASE_URL)' : `embedded PGlite in ${config.database.pgliteDir}`}`,
        `  signature nonces         ${config.redis.url ? 'Redis (REDIS_URL)' : 'in memory'}`,
        `  PKI and keys             ${config.env === 'production' ? 'from configuration' : `${config.dataDir}/pki, ${config.dataDir}/keys (development only)`}`,
        `  sign-in (OAuth) clients  ${config.identity.clientsFile ?? 'none (set SMART_HOME_OAUTH_CLIENTS_FILE)'}   docs/residents-and-operators.md`,
        '  provision with           npm run smart-home -- apply examples/provisioning.yaml',
        '',
      ].join('\n'),
    );
  }
  logger.info(
    {
      env: config.env,
      database: config.database.url ? 'postgres' : config.database.pgliteDir,
      replayCache: config.redis.url ? 'redis' : 'memory',
      partnerListener: `https://${config.partner.host}:${partnerPort}`,
      publicListener: `https://${config.public.host}:${publicPort}`,
      dataDir: config.dataDir,
    },
    'smart-home is ready',
  );
  return runtime;
}
