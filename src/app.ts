import type { Socket } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import type { JWK } from 'jose';
import { apiDocs, registerOpenApi } from './admin-api/openapi.ts';
import { adminApi } from './admin-api/plugin.ts';
import { createPublicApiVerifier } from './api-auth/from-config.ts';
import { apiAuth } from './api-auth/hook.ts';
import { barrierRoutes } from './barrier/decision-route.ts';
import type { Config } from './config/config.ts';
import type { FieldCipher } from './crypto/field-cipher.ts';
import type { Db } from './db/db.ts';
import { sql } from './db/sql.ts';
import { AppError } from './errors.ts';
import type { DeviceEventSink } from './events/model.ts';
import { eventAdminRoutes, eventRoutes } from './events/routes.ts';
import { EventService } from './events/service.ts';
import { installProblemHandlers, STRICT_AJV } from './http/problem-handler.ts';
import type { ReplayCache } from './http-signatures/replay-cache.ts';
import { createIdentity, type Identity } from './identity/identity.ts';
import { journalProofRoutes } from './journal/log/proofs.ts';
import { journalReadRoutes } from './journal/log/read-api.ts';
import type { LogIdentity } from './journal/log/sequencer.ts';
import { reconcileAdminRoutes } from './journal/reconcile/admin-route.ts';
import { journalReconcileRoutes } from './journal/reconcile/routes.ts';
import { newReconStore, Reconciler } from './journal/reconcile/service.ts';
import { witnessAdminRoutes, witnessPartnerRoutes } from './journal/witness/routes.ts';
import type { SigningKey } from './keys/service-keys.ts';
import type { Logger } from './logger.ts';
import { collectProcessMetrics, httpMetrics, metricsRoute } from './metrics/http.ts';
import type { Outbound } from './outbound/outbound.ts';
import { clientAddress } from './partner-zone/client-address.ts';
import { eventLoopLagProbe, type LagProbe, LoadShedder } from './partner-zone/load-shedder.ts';
import { createAccessTokenVerifier } from './partner-zone/oauth/access-token.ts';
import {
  createPartnerAuthorizationServer,
  PARTNER_API_AUDIENCE,
} from './partner-zone/oauth/authorization-server.ts';
import { partnerZone, registeredPartner, takeOrRefuse } from './partner-zone/partner-zone.ts';
import { type RateLimiter, TokenBucketLimiter } from './partner-zone/rate-limiter.ts';
import { PartnerDirectory } from './partners/partner-directory.ts';
import { DoorNotCommandable, type DoorOpener, outboundDoorOpener } from './resident-api/door-opener.ts';
import { residentApi } from './resident-api/routes.ts';
import type { NoteSigner } from './tlog/note.ts';
import { CidrSet } from './util/cidr.ts';
import { uuidv7 } from './util/uuid.ts';

export interface TlsMaterial {
  cert: string;
  key: string;
}

export interface AppDeps {
  config: Config;
  logger: Logger;
  db: Db;
  cipher: FieldCipher;
  tls: { public: TlsMaterial; partner: TlsMaterial & { clientCa: string } };
  /** Ed25519: signs partner-zone responses and our requests to partners. */
  responseKey: SigningKey;
  /** ES256 private JWK with kid: signs partner access tokens. */
  tokenKey: JWK;
  replayCache: ReplayCache;
  /** Per-partner rate limits; default: in memory (server.ts passes the Redis one with REDIS_URL). */
  rateLimiter?: RateLimiter;
  /** Event loop lag for load shedding; default: `monitorEventLoopDelay` sampled per the options. */
  lagProbe?: LagProbe;
  /** The outbound partner channel (contract §7), for the resident door-open route. */
  outbound?: Outbound;
  /** The journal log's identity: signs reconciliation reports (without it, operators cannot run one). */
  journalLog?: LogIdentity;
  /** Our witness cosigner (contract §8.2): without it, partners' checkpoints are not witnessed (404). */
  witnessCosigner?: NoteSigner;
  /** Device health: gets every processed partner event (contract §9) in the processor's transaction. */
  deviceEvents?: DeviceEventSink;
}

export interface App {
  publicApp: FastifyInstance;
  partnerApp: FastifyInstance;
  /** The people's authorization server (issuer, JWKS, housekeeping), mounted on publicApp. */
  identity: Identity;
  /** The partner directory currently in force, and a way to reload it after a change. */
  directory(): PartnerDirectory;
  reloadDirectory(): Promise<void>;
  /** Load shedding of the partner listener (tests replace its lag probe to drive it). */
  loadShedder: LoadShedder;
  /** Journal reconciliation (contract §8.4): our runs against partners; absent without journalLog. */
  reconciler: Reconciler | undefined;
  /**
   * Partner events (contract §9): the inbox, its processor and gap backfill. `startServer` starts its
   * background work (`events.start()`); tests drive `processAll()` / `backfillDue()` themselves.
   */
  events: EventService;
  /**
   * Builds the reconciliation indexes of the last SMART_HOME_RECONCILE_WARM_DAYS days for every partner
   * that reconciles with us or we with it, one partner after another (started in the background by
   * `startServer`); resolves with how many partners.
   */
  warmReconciliation(now?: number): Promise<number>;
  close(): Promise<void>;
}

function serverOptions(cfg: Config) {
  return {
    requestTimeout: cfg.http.requestTimeoutMs,
    keepAliveTimeout: cfg.http.keepAliveTimeoutMs,
    connectionTimeout: cfg.http.requestTimeoutMs,
    ajv: STRICT_AJV,
    // Our ids, never the client's: request ids end up in journal entries.
    genReqId: () => uuidv7(),
    requestIdHeader: false as const,
    return503OnClosing: true,
  };
}

/**
 * Node enforces the header and request timeouts on a timer (30 s by default), so a slow client could
 * hold a connection far longer than `headersTimeout`; check at least as often as the shortest timeout.
 */
function slowClientChecks(cfg: Config) {
  return {
    headersTimeout: cfg.http.headersTimeoutMs,
    requestTimeout: cfg.http.requestTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, cfg.http.headersTimeoutMs),
  };
}

/**
 * Builds both listeners without listening (tests drive them over real TLS on port 0; `start` binds
 * them to the configured addresses).
 */
export async function buildApp(deps: AppDeps): Promise<App> {
  const { config } = deps;
  const trustedProxies = new CidrSet(config.partner.trustedProxies);
  let directory = await PartnerDirectory.load(deps.db, config.partner.trustedProxies);
  const reloadDirectory = async () => {
    directory = await PartnerDirectory.load(deps.db, config.partner.trustedProxies);
  };

  // Typed as the plain instance: the https server and pino logger generics add nothing for our code.
  const partnerApp = Fastify({
    ...serverOptions(config),
    loggerInstance: deps.logger.child({ listener: 'partner' }),
    bodyLimit: config.partner.bodyLimit,
    https: {
      cert: deps.tls.partner.cert,
      key: deps.tls.partner.key,
      ca: deps.tls.partner.clientCa,
      // Contract §1: no certificate, or one from another CA, fails the handshake itself.
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
      ...slowClientChecks(config),
    },
  }) as unknown as FastifyInstance;
  partnerApp.server.headersTimeout = config.http.headersTimeoutMs;
  // Contract §1: a connection from an address in no partner's allowlist is closed before TLS starts.
  partnerApp.server.prependListener('connection', (socket: Socket) => {
    if (!directory.anyNetwork.has(socket.remoteAddress)) socket.destroy();
  });
  installProblemHandlers(partnerApp, { databaseRetryAfterS: config.database.unavailableRetryAfterS });
  collectProcessMetrics();
  httpMetrics(partnerApp, 'partner');
  const p = config.partner;
  const loadShedder = new LoadShedder(
    {
      thresholdMs: p.shedLagMs,
      retryAfterSeconds: p.shedRetryAfterSeconds,
      fairShareFactor: p.shedFairShareFactor,
      windowMs: p.shedWindowMs,
    },
    deps.lagProbe ?? (p.shedLagMs > 0 ? eventLoopLagProbe(p.shedSampleMs) : { lagMs: () => 0 }),
  );
  const limiter =
    deps.rateLimiter ?? new TokenBucketLimiter({ ratePerSecond: p.rateLimit, burst: p.rateBurst });
  // OpenAPI of the partner API, collected from the routes as they register (docs/openapi/partner.json).
  await registerOpenApi(partnerApp, 'partner');
  // The token endpoint lies outside the partner zone's hooks (oidc-provider answers it), but the
  // per-partner address check applies there too (contract §1).
  partnerApp.addHook('onRequest', async (req) => {
    if (!req.url.startsWith('/oauth/')) return;
    const found = registeredPartner(req, directory);
    // Shed here too: a token request is as much work as any (issue 5, load shedding).
    const shed = found ? loadShedder.check(found.partner.id) : 0;
    if (shed > 0) throw new AppError('overloaded', undefined, { headers: { 'retry-after': String(shed) } });
    if (found && !found.partner.networks.has(clientAddress(req.raw, trustedProxies))) {
      throw new AppError('ip-not-allowed');
    }
    // Its own bucket per partner (same rate): a token flood is bounded without eating the API budget.
    if (found) await takeOrRefuse(limiter, `${found.partner.id}:token`, found.partner.id);
  });

  const authServer = createPartnerAuthorizationServer({
    issuer: config.partner.url,
    signingKey: deps.tokenKey,
    findClient: async (clientId) => {
      const p = directory.byCode.get(clientId);
      return (
        p && {
          clientId: p.code,
          scopes: [...p.scopes],
          certThumbprints: [...p.certThumbprints],
          enabled: p.enabled,
        }
      );
    },
    logger: deps.logger,
  });
  await authServer.mount(partnerApp);

  const tokens = createAccessTokenVerifier({
    issuer: config.partner.url,
    audience: PARTNER_API_AUDIENCE,
    jwks: authServer.jwks,
  });

  // One reconciliation index per instance: the partner endpoints of §8.4 and our own runs share it.
  const reconStore = newReconStore(deps.db, deps.cipher, config.reconcile, () => directory);
  const reconciler = deps.journalLog
    ? new Reconciler({
        db: deps.db,
        cipher: deps.cipher,
        log: deps.journalLog,
        outbound: deps.outbound,
        directory: () => directory,
        options: config.reconcile,
        store: reconStore,
      })
    : undefined;
  const events = new EventService({
    db: deps.db,
    cipher: deps.cipher,
    directory: () => directory,
    outbound: deps.outbound,
    sink: deps.deviceEvents,
    logger: deps.logger,
    options: { ...config.events, purgeEveryMs: config.housekeeping.intervalMs },
  });
  await partnerApp.register(
    async (zone) => {
      // Applied to this context itself (not registered as a child), so its hooks cover the routes below.
      await partnerZone({
        directory: () => directory,
        tokens,
        replayCache: deps.replayCache,
        limiter,
        shedder: loadShedder,
        trustedProxies,
        responseKey: deps.responseKey,
      })(zone);
      await zone.register(
        barrierRoutes({ db: deps.db, directory: () => directory, batching: config.barrier }),
      );
      await zone.register(journalReadRoutes({ db: deps.db }));
      await zone.register(
        witnessPartnerRoutes({ db: deps.db, cosigner: deps.witnessCosigner, logger: deps.logger }),
      );
      await zone.register(journalReconcileRoutes({ store: reconStore, options: config.reconcile }));
      await zone.register(journalProofRoutes({ db: deps.db, audience: 'partner' }));
      await zone.register(eventRoutes({ events }));
    },
    { prefix: '/partner/v1' },
  );

  const publicApp = Fastify({
    ...serverOptions(config),
    loggerInstance: deps.logger.child({ listener: 'public' }),
    https: {
      cert: deps.tls.public.cert,
      key: deps.tls.public.key,
      minVersion: 'TLSv1.2',
      ...slowClientChecks(config),
    },
  }) as unknown as FastifyInstance;
  publicApp.server.headersTimeout = config.http.headersTimeoutMs;
  installProblemHandlers(publicApp, { databaseRetryAfterS: config.database.unavailableRetryAfterS });
  httpMetrics(publicApp, 'public');
  // OpenAPI of the operator and resident APIs, collected from the routes as they register.
  await registerOpenApi(publicApp, 'public');
  publicApp.get('/healthz', async () => ({ status: 'ok' }));
  // Prometheus scrape, bearer SMART_HOME_METRICS_TOKEN; absent without it (src/metrics/http.ts).
  metricsRoute(publicApp, config.metrics.token);
  publicApp.get('/readyz', async () => {
    await deps.db.query(sql`select 1`);
    return { status: 'ready' };
  });
  // Public listener, issue 3: the people's authorization server (/oauth), the access-token check,
  // the resident API (/api/v1), the operator API (/admin/v1) and the API docs (/docs) register here.
  // The people's authorization server: /oauth/* and /.well-known/* go to oidc-provider before any
  // body parsing; /oauth/interaction/* are the sign-in pages. `identity.issuer` and `identity.jwks`
  // are what the access-token check verifies against.
  const identity = await createIdentity({ config, db: deps.db, cipher: deps.cipher, logger: deps.logger });
  await identity.mount(publicApp);
  // The access-token check of /api/v1 and /admin/v1 (src/api-auth/): tokens of the embedded AS, or only
  // those of the external IdP when SMART_HOME_EXTERNAL_IDP_ISSUER is set. Each zone applies
  // `apiAuth({ verifier: apiVerifier, requiredRole })` to its own context, before its routes. DPoP
  // server nonces come from the authorization server's secret: a nonce either hands out is valid at
  // both, on every instance, and a proof whose iat is off is answered `use_dpop_nonce` (recoverable)
  // rather than refused outright.
  const apiVerifier = createPublicApiVerifier({
    config,
    db: deps.db,
    replayCache: deps.replayCache,
    publicUrl: identity.issuer,
    embedded: { issuer: identity.issuer, jwks: identity.jwks },
    dpopNonceSecret: identity.dpopNonceSecret,
  });
  // The operator API (src/admin-api/): the access-token check of src/api-auth/ with the operator role
  // goes first in this context and sets req.principal; the plugin also refuses any request without an
  // operator principal itself (401/403), as a second line of defence.
  await publicApp.register(
    async (admin) => {
      await apiAuth({ verifier: apiVerifier, requiredRole: 'operator' })(admin);
      await admin.register(
        adminApi({ db: deps.db, cipher: deps.cipher, onDirectoryChange: reloadDirectory }),
      );
      await admin.register(reconcileAdminRoutes({ reconciler: () => reconciler }));
      await admin.register(journalProofRoutes({ db: deps.db, audience: 'operator' }));
      await admin.register(witnessAdminRoutes({ db: deps.db }));
      await admin.register(eventAdminRoutes({ db: deps.db }));
    },
    { prefix: '/admin/v1' },
  );
  // The resident API (src/resident-api/): the access-token check with the resident role goes first in
  // this context; every route then acts only on the token's own resident (BOLA).
  const doors: DoorOpener = deps.outbound
    ? outboundDoorOpener(deps.outbound)
    : {
        async prepare() {
          throw new DoorNotCommandable('this instance runs without the outbound partner channel');
        },
      };
  await publicApp.register(
    async (api) => {
      await apiAuth({ verifier: apiVerifier, requiredRole: 'resident' })(api);
      await api.register(
        residentApi({
          db: deps.db,
          cipher: deps.cipher,
          doors,
          guestPassMaxDays: config.resident.guestPassMaxDays,
        }),
      );
    },
    { prefix: '/api/v1' },
  );
  // The API docs: /docs and /docs/openapi/{operator,resident,partner}.json.
  await publicApp.register(apiDocs({ publicApp, partnerApp }));

  return {
    publicApp,
    partnerApp,
    identity,
    directory: () => directory,
    reloadDirectory,
    loadShedder,
    async warmReconciliation(now = Date.now()) {
      const days = config.reconcile.warmDays;
      if (days <= 0) return 0;
      const from = (Math.floor(now / 86_400_000) - (days - 1)) * 86_400_000;
      let warmed = 0;
      for (const p of directory.byId.values()) {
        // Partners that reconcile with us (audit:exchange) or that we reconcile with (their journal
        // endpoint and log key are registered).
        if (!p.enabled || !(p.scopes.has('audit:exchange') || (p.outbound && p.log))) continue;
        await reconStore.view(p.id, from, now + 1);
        warmed++;
      }
      return warmed;
    },
    reconciler,
    events,
    async close() {
      await events.stop();
      await Promise.allSettled([partnerApp.close(), publicApp.close()]);
      loadShedder.close();
      await limiter.close();
    },
  };
}
