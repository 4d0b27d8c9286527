import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { OPTIONS, type OptionSpec } from './options.ts';

export interface Config {
  env: 'development' | 'test' | 'production';
  dataDir: string;
  log: { level: string };
  database: {
    url: string | undefined;
    poolMax: number;
    pgliteDir: string;
    migrateOnStart: boolean;
    unavailableRetryAfterS: number;
  };
  redis: { url: string | undefined };
  public: { host: string; port: number; tlsCert: string; tlsKey: string; url: string | undefined };
  /** The people's authorization server and sign-in (src/identity/). */
  identity: {
    tokenKeyFile: string;
    cookieKeys: string[];
    dpopNonceSecret: string | undefined;
    secretsFile: string;
    clientsFile: string | undefined;
    accessTokenTtlSeconds: number;
    authorizationCodeTtlSeconds: number;
    refreshIdleSeconds: number;
    refreshAbsoluteSeconds: number;
    sessionTtlSeconds: number;
    interactionTtlSeconds: number;
    otpTtlSeconds: number;
    otpDigits: number;
    otpMaxAttempts: number;
    otpLockoutSeconds: number;
    otpSendWindowSeconds: number;
    otpSendMaxPerPhone: number;
    otpSendIntervalSeconds: number;
    otpSendMaxPerAddress: number;
    otpSender: 'console' | 'webhook';
    otpWebhookUrl: string | undefined;
    otpWebhookTokenFile: string | undefined;
    otpWebhookCaFile: string | undefined;
    otpWebhookTimeoutMs: number;
    operatorMaxFailures: number;
    operatorLockoutSeconds: number;
  };
  partner: {
    host: string;
    port: number;
    url: string;
    tlsCert: string;
    tlsKey: string;
    clientCa: string;
    issuingCaKey: string;
    trustedProxies: string[];
    bodyLimit: number;
    rateLimit: number;
    rateBurst: number;
    rateLimitOnRedisError: 'open' | 'closed';
    rateLimitRedisTimeoutMs: number;
    /** Load shedding (src/partner-zone/load-shedder.ts). */
    shedLagMs: number;
    shedRetryAfterSeconds: number;
    shedFairShareFactor: number;
    shedWindowMs: number;
    shedSampleMs: number;
  };
  /** `/metrics` (src/metrics/http.ts). */
  metrics: { token: string | undefined };
  /** The outbound partner channel (contract §7), see src/outbound/. */
  outbound: {
    clientCert: string;
    clientKey: string;
    connectTimeoutMs: number;
    timeoutMs: number;
    retryDelayMs: number;
    connections: number;
    tokenRefreshMarginSeconds: number;
    doorCommandTtlMs: number;
    /** The channel under faults (src/outbound/resilience.ts). */
    retryAttempts: number;
    retryMaxDelayMs: number;
    retryAfterMaxSeconds: number;
    breakerFailures: number;
    breakerFailureRatePercent: number;
    breakerWindowMs: number;
    breakerMinCalls: number;
    breakerCooldownMs: number;
    maxConcurrent: number;
    maxQueued: number;
  };
  http: { headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number };
  /** The public API's access-token check, see src/api-auth/. */
  apiAuth: {
    clockToleranceSeconds: number;
    requireDpop: boolean;
    dpopAlgorithms: string[];
    dpopProofMaxAgeSeconds: number;
    tokenCacheSeconds: number;
    tokenCacheMax: number;
    external: {
      issuer: string | undefined;
      audience: string;
      algorithms: string[];
      acceptJwtTyp: boolean;
      subjectClaim: string;
      rolesClaim: string;
      operatorRole: string;
      residentRole: string;
      timeoutMs: number;
      jwksCacheMaxAgeMs: number;
      jwksCooldownMs: number;
      caFile: string | undefined;
    };
  };
  keys: { kekFile: string; kek: string | undefined; signingKeyFile: string; tokenKeyFile: string };
  /** The journal as a Merkle log (src/journal/log/). */
  journal: { keyFile: string; origin: string; integrateMs: number; batchMax: number };
  /** Witnessing, contract §8.2 (src/journal/witness/): our cosigner, and the submission of our checkpoints. */
  witness: { keyFile: string; name: string; submitMs: number };
  /** Journal reconciliation, contract §8.4 (src/journal/reconcile/). */
  reconcile: {
    maxWindowDays: number;
    maxMessageBytes: number;
    frameBytes: number;
    maxRounds: number;
    clockMarginMs: number;
    skewToleranceMs: number;
    cacheDays: number;
    warmDays: number;
    schedule: boolean;
    scheduleDelayMinutes: number;
    reportDir: string;
  };
  registry: { refreshMs: number };
  housekeeping: { intervalMs: number };
  barrier: { batchMax: number; batchesInFlight: number };
  /** Partner events, contract §9 (src/events/). */
  events: {
    processorBatch: number;
    processorIntervalMs: number;
    processorBusyPauseMs: number;
    staleAfterSeconds: number;
    pseudonymRefreshSeconds: number;
    gapGraceMs: number;
    backfillLimit: number;
    backfillMinBackoffMs: number;
    backfillMaxBackoffMs: number;
    backfillLeaseMs: number;
    retentionDays: number;
    failedRetryMs: number;
    singleGroupMax: number;
    singleGroupsInFlight: number;
  };
  /** Device health, issue 5 (src/device-health/). */
  deviceHealth: { maxSkewMs: number; sweepMs: number; historyDays: number };
  /** The resident API (src/resident-api/). */
  resident: { guestPassMaxDays: number };
  workers: number;
  /** Options whose value came from a default rather than env or file (production refuses some). */
  defaulted: ReadonlySet<string>;
}

export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

type Source = Record<string, string | undefined>;

function fromFile(file: string): Record<string, unknown> {
  const text = readFileSync(file, 'utf8');
  const parsed: unknown = file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError([`${file}: the configuration file must hold an object`]);
  }
  return parsed as Record<string, unknown>;
}

function getPath(obj: Record<string, unknown>, dotted: string): unknown {
  let cur: unknown = obj;
  for (const part of dotted.split('.')) {
    if (!cur || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** Every dotted leaf key of a file, so unknown keys (typos) are refused rather than ignored. */
function leafKeys(obj: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v))
      out.push(...leafKeys(v as Record<string, unknown>, key));
    else out.push(key);
  }
  return out;
}

function parseValue(spec: OptionSpec, raw: unknown, where: string, problems: string[]): unknown {
  const bad = (why: string) => {
    problems.push(`${where}: ${why}`);
    return undefined;
  };
  switch (spec.kind) {
    case 'string':
      if (typeof raw !== 'string' || raw.length === 0) return bad('expected a non-empty string');
      return raw;
    case 'enum':
      if (typeof raw !== 'string' || !spec.values?.includes(raw)) {
        return bad(`expected one of ${spec.values?.join(', ')}`);
      }
      return raw;
    case 'int': {
      const n =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && /^-?\d+$/.test(raw)
            ? Number(raw)
            : Number.NaN;
      if (!Number.isSafeInteger(n)) return bad('expected an integer');
      if (spec.min !== undefined && n < spec.min) return bad(`must be at least ${spec.min}`);
      if (spec.max !== undefined && n > spec.max) return bad(`must be at most ${spec.max}`);
      return n;
    }
    case 'bool':
      if (raw === true || raw === 'true' || raw === '1') return true;
      if (raw === false || raw === 'false' || raw === '0') return false;
      return bad('expected true or false');
    case 'list': {
      const list = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(',') : undefined;
      if (!list?.every((x) => typeof x === 'string')) return bad('expected a list of strings');
      return (list as string[]).map((x) => x.trim()).filter(Boolean);
    }
  }
}

function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const parts = dotted.split('.');
  let cur = obj;
  for (const part of parts.slice(0, -1)) {
    cur[part] ??= {};
    cur = cur[part] as Record<string, unknown>;
  }
  cur[parts.at(-1)!] = value;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

/**
 * Reads the configuration once at start: environment variables win over the optional file named by
 * SMART_HOME_CONFIG, which wins over defaults. Everything is validated together so one run reports
 * every problem; the result is deeply frozen.
 */
export function loadConfig(env: Source = process.env): Config {
  const problems: string[] = [];
  const file = env['SMART_HOME_CONFIG'];
  const fileValues = file ? fromFile(file) : {};
  const known = new Set(OPTIONS.map((o) => o.key));
  for (const key of leafKeys(fileValues)) {
    if (!known.has(key)) problems.push(`${file}: unknown option "${key}"`);
  }

  const out: Record<string, unknown> = {};
  const defaulted = new Set<string>();
  for (const spec of OPTIONS) {
    const envRaw = env[spec.env];
    const fileRaw = getPath(fileValues, spec.key);
    let value: unknown;
    if (envRaw !== undefined && envRaw !== '') value = parseValue(spec, envRaw, spec.env, problems);
    else if (fileRaw !== undefined) value = parseValue(spec, fileRaw, `${file}: ${spec.key}`, problems);
    else {
      value = spec.default;
      defaulted.add(spec.env);
    }
    setPath(out, spec.key, Array.isArray(value) ? [...value] : value);
  }

  const cfg = out as unknown as Config;
  cfg.dataDir = path.resolve(cfg.dataDir);
  const resolveDefault = (v: string) => v.replace('{dataDir}', cfg.dataDir);
  for (const spec of OPTIONS) {
    const v = getPath(out, spec.key);
    if (typeof v === 'string' && v.includes('{dataDir}')) setPath(out, spec.key, resolveDefault(v));
  }
  cfg.database.pgliteDir = path.join(cfg.dataDir, 'db');
  cfg.defaulted = defaulted;

  if (cfg.env === 'production') {
    for (const spec of OPTIONS) {
      if (spec.productionRequired && defaulted.has(spec.env)) {
        problems.push(`${spec.env} must be set in production (the development default is refused)`);
      }
    }
    if (!cfg.keys.kek && defaulted.has('SMART_HOME_KEK_FILE')) {
      problems.push(
        'SMART_HOME_KEK or SMART_HOME_KEK_FILE must be set in production (the generated development key is refused)',
      );
    }
  }
  if (cfg.http.headersTimeoutMs > cfg.http.requestTimeoutMs) {
    problems.push('SMART_HOME_HEADERS_TIMEOUT_MS must not exceed SMART_HOME_REQUEST_TIMEOUT_MS');
  }
  if (cfg.events.backfillMinBackoffMs > cfg.events.backfillMaxBackoffMs) {
    problems.push(
      'SMART_HOME_EVENTS_BACKFILL_MIN_BACKOFF_MS must not exceed SMART_HOME_EVENTS_BACKFILL_MAX_BACKOFF_MS',
    );
  }
  if (cfg.metrics.token !== undefined && cfg.metrics.token.length < 32) {
    problems.push('SMART_HOME_METRICS_TOKEN must be at least 32 characters');
  }
  if (cfg.workers > 1 && !cfg.database.url) {
    problems.push('SMART_HOME_WORKERS > 1 needs DATABASE_URL: the embedded database belongs to one process');
  }
  if (cfg.workers > 1 && !cfg.redis.url) {
    problems.push('SMART_HOME_WORKERS > 1 needs REDIS_URL: every process must see every signature nonce');
  }
  for (const cidr of cfg.partner.trustedProxies) {
    if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(cidr))
      problems.push(`SMART_HOME_TRUSTED_PROXIES: "${cidr}" is not a CIDR`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return deepFreeze(cfg);
}
