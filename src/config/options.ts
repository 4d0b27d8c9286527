/**
 * Every configuration option, in one table: its environment variable, its key in the optional config
 * file, its default, and what it means. `docs/configuration.md` is generated from this table
 * (`npm run docs:config`) and a test fails when the two drift apart.
 */
export type OptionKind = 'string' | 'int' | 'bool' | 'list' | 'enum';

export interface OptionSpec {
  env: string;
  /** Dotted key in the config file (JSON or YAML named by SMART_HOME_CONFIG). */
  key: string;
  kind: OptionKind;
  values?: readonly string[];
  /** Default when neither env nor file sets it; a string with `{dataDir}` is resolved against DATA_DIR. */
  default?: string | number | boolean | readonly string[];
  min?: number;
  max?: number;
  /** A development convenience that must be set explicitly when NODE_ENV=production. */
  productionRequired?: boolean;
  doc: string;
}

export const OPTIONS: readonly OptionSpec[] = [
  {
    env: 'NODE_ENV',
    key: 'env',
    kind: 'enum',
    values: ['development', 'test', 'production'],
    default: 'development',
    doc: 'Run mode. `production` refuses every development default: generated keys and certificates, the key-encryption key file under DATA_DIR, the embedded database.',
  },
  {
    env: 'SMART_HOME_DATA_DIR',
    key: 'dataDir',
    kind: 'string',
    default: './data',
    doc: 'Directory for the embedded database and, in development, the generated PKI and keys.',
  },
  {
    env: 'LOG_LEVEL',
    key: 'log.level',
    kind: 'enum',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    default: 'info',
    doc: 'pino log level. Secrets and personal data are redacted at every level.',
  },
  {
    env: 'DATABASE_URL',
    key: 'database.url',
    kind: 'string',
    productionRequired: true,
    doc: 'PostgreSQL connection string. When unset, the embedded PGlite database in `{dataDir}/db` is used (development only).',
  },
  {
    env: 'SMART_HOME_DB_POOL_MAX',
    key: 'database.poolMax',
    kind: 'int',
    default: 10,
    min: 1,
    max: 200,
    doc: 'Maximum PostgreSQL connections per instance.',
  },
  {
    env: 'REDIS_URL',
    key: 'redis.url',
    kind: 'string',
    doc: 'Redis connection string. When set, the signature nonce replay cache is shared through Redis so several instances see each other’s nonces; otherwise it is in memory (one instance only).',
  },
  {
    env: 'SMART_HOME_PUBLIC_HOST',
    key: 'public.host',
    kind: 'string',
    default: '127.0.0.1',
    doc: 'Address the public listener (residents, operators) binds to.',
  },
  {
    env: 'SMART_HOME_PUBLIC_PORT',
    key: 'public.port',
    kind: 'int',
    default: 8443,
    min: 0,
    max: 65535,
    doc: 'Port of the public HTTPS listener (0 = any free port).',
  },
  {
    env: 'SMART_HOME_PUBLIC_TLS_CERT',
    key: 'public.tlsCert',
    kind: 'string',
    default: '{dataDir}/pki/public-server.crt',
    productionRequired: true,
    doc: 'PEM certificate chain of the public listener.',
  },
  {
    env: 'SMART_HOME_PUBLIC_TLS_KEY',
    key: 'public.tlsKey',
    kind: 'string',
    default: '{dataDir}/pki/public-server.key',
    productionRequired: true,
    doc: 'PEM private key of the public listener.',
  },
  {
    env: 'SMART_HOME_PARTNER_HOST',
    key: 'partner.host',
    kind: 'string',
    default: '127.0.0.1',
    doc: 'Address the partner (mTLS) listener binds to.',
  },
  {
    env: 'SMART_HOME_PARTNER_PORT',
    key: 'partner.port',
    kind: 'int',
    default: 9443,
    min: 0,
    max: 65535,
    doc: 'Port of the partner listener (contract §1; 0 = any free port).',
  },
  {
    env: 'SMART_HOME_PARTNER_URL',
    key: 'partner.url',
    kind: 'string',
    default: 'https://localhost:9443',
    productionRequired: true,
    doc: 'Base URL partners use to reach the partner listener. It is the `iss` of partner access tokens and the token endpoint is `<url>/oauth/token`.',
  },
  {
    env: 'SMART_HOME_PARTNER_TLS_CERT',
    key: 'partner.tlsCert',
    kind: 'string',
    default: '{dataDir}/pki/partner-server.crt',
    productionRequired: true,
    doc: 'PEM certificate chain of the partner listener.',
  },
  {
    env: 'SMART_HOME_PARTNER_TLS_KEY',
    key: 'partner.tlsKey',
    kind: 'string',
    default: '{dataDir}/pki/partner-server.key',
    productionRequired: true,
    doc: 'PEM private key of the partner listener.',
  },
  {
    env: 'SMART_HOME_PARTNER_CLIENT_CA',
    key: 'partner.clientCa',
    kind: 'string',
    default: '{dataDir}/pki/partner-issuing-ca.crt',
    productionRequired: true,
    doc: 'PEM CA certificate(s) that partners’ client certificates must chain to (contract §1).',
  },
  {
    env: 'SMART_HOME_PARTNER_ISSUING_CA_KEY',
    key: 'partner.issuingCaKey',
    kind: 'string',
    default: '{dataDir}/pki/partner-issuing-ca.key',
    doc: 'Private key of the partner-issuing CA, used only by `smart-home pki issue`. Keep it offline in production.',
  },
  {
    env: 'SMART_HOME_TRUSTED_PROXIES',
    key: 'partner.trustedProxies',
    kind: 'list',
    default: [],
    doc: 'Comma-separated CIDRs of proxies whose `X-Forwarded-For` is believed (e.g. a DDoS scrubber that forwards at L4 with PROXY-less XFF). From any other address the header is ignored.',
  },
  {
    env: 'SMART_HOME_PARTNER_BODY_LIMIT',
    key: 'partner.bodyLimit',
    kind: 'int',
    default: 262144,
    min: 1024,
    max: 10485760,
    doc: 'Largest request body on the partner listener, in bytes (contract §9: 256 KiB). Routes set smaller limits of their own (decisions: 4 KiB).',
  },
  {
    env: 'SMART_HOME_PARTNER_RATE_LIMIT',
    key: 'partner.rateLimit',
    kind: 'int',
    default: 50,
    min: 1,
    max: 1000000,
    doc: 'Sustained requests per second allowed per partner; beyond it the partner gets `429 rate-limited` with `Retry-After`.',
  },
  {
    env: 'SMART_HOME_PARTNER_RATE_BURST',
    key: 'partner.rateBurst',
    kind: 'int',
    default: 200,
    min: 1,
    max: 10000000,
    doc: 'Burst size of the per-partner token bucket (requests that may arrive at once).',
  },
  {
    env: 'SMART_HOME_HEADERS_TIMEOUT_MS',
    key: 'http.headersTimeoutMs',
    kind: 'int',
    default: 10000,
    min: 100,
    max: 600000,
    doc: 'Time a client has to send complete request headers (slow-loris protection).',
  },
  {
    env: 'SMART_HOME_REQUEST_TIMEOUT_MS',
    key: 'http.requestTimeoutMs',
    kind: 'int',
    default: 30000,
    min: 100,
    max: 600000,
    doc: 'Time a client has to send a whole request.',
  },
  {
    env: 'SMART_HOME_KEEP_ALIVE_TIMEOUT_MS',
    key: 'http.keepAliveTimeoutMs',
    kind: 'int',
    default: 65000,
    min: 100,
    max: 600000,
    doc: 'How long an idle keep-alive connection stays open.',
  },
  {
    env: 'SMART_HOME_KEK_FILE',
    key: 'keys.kekFile',
    kind: 'string',
    default: '{dataDir}/keys/kek.key',
    doc: 'File with the 32-byte key-encryption key (base64). In development it is created on first start. In production, set SMART_HOME_KEK or point this at a file outside DATA_DIR.',
  },
  {
    env: 'SMART_HOME_KEK',
    key: 'keys.kek',
    kind: 'string',
    doc: 'The key-encryption key itself (base64 of 32 bytes), e.g. injected from a secret manager. Takes precedence over SMART_HOME_KEK_FILE.',
  },
  {
    env: 'SMART_HOME_SIGNING_KEY_FILE',
    key: 'keys.signingKeyFile',
    kind: 'string',
    default: '{dataDir}/keys/response-signing.jwk',
    productionRequired: true,
    doc: 'Private Ed25519 JWK (with `kid`) that signs responses to partners and smart-home’s own requests (contract §3).',
  },
  {
    env: 'SMART_HOME_TOKEN_KEY_FILE',
    key: 'keys.tokenKeyFile',
    kind: 'string',
    default: '{dataDir}/keys/token-signing.jwk',
    productionRequired: true,
    doc: 'Private ES256 JWK (with `kid`) that signs partner access tokens (contract §2).',
  },
  {
    env: 'SMART_HOME_REGISTRY_REFRESH_MS',
    key: 'registry.refreshMs',
    kind: 'int',
    default: 5000,
    min: 100,
    max: 3600000,
    doc: 'How often each instance reloads partners, certificates, networks, devices and data-encryption keys from the database, so that a change made through another instance (or `apply` on PostgreSQL) takes effect.',
  },
  {
    env: 'SMART_HOME_HOUSEKEEPING_MS',
    key: 'housekeeping.intervalMs',
    kind: 'int',
    default: 3600000,
    min: 1000,
    max: 86400000,
    doc: 'How often each instance deletes barrier idempotency records older than the 24 h the contract keeps them (§6). The decisions themselves stay in the journal.',
  },
  {
    env: 'SMART_HOME_WORKERS',
    key: 'workers',
    kind: 'int',
    default: 1,
    min: 1,
    max: 64,
    doc: 'Service processes on this machine (node:cluster; they share both ports). More than one needs DATABASE_URL (the embedded database belongs to one process) and REDIS_URL (signature nonces must be seen by every process). Per-partner rate limits are per process until issue 5 shares them.',
  },
];
