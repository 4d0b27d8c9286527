/**
 * Per-partner token buckets (issue 5: limits shared across instances). A refused request learns when a
 * token will be available (`Retry-After`, RFC 9110 §10.2.3; contract §4 `rate-limited`).
 *
 * - {@link TokenBucketLimiter}: in memory, one instance's own traffic (the default, and the only one
 *   without REDIS_URL);
 * - {@link RedisRateLimiter}: one bucket per partner in Redis, taken by an atomic Lua script on Redis's
 *   own clock, so every instance draws from the same budget whatever their clocks say.
 *
 * The partner zone checks the limit before any token or signature work (src/partner-zone/partner-zone.ts):
 * a flooding partner costs a map lookup or one Redis round trip per request, not an Ed25519 verify.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { counter } from '../metrics/registry.ts';

export interface RateLimiter {
  /**
   * Takes one token of `key`'s bucket: 0 when allowed; otherwise the seconds to wait before retrying
   * (≥ 1). Rejects with {@link RateLimiterUnavailableError} when the shared store cannot decide and the
   * limiter fails closed.
   */
  take(key: string): number | Promise<number>;
  close(): Promise<void>;
}

export interface BucketOptions {
  ratePerSecond: number;
  burst: number;
}

/** The shared store could not decide and the limiter is configured to fail closed. */
export class RateLimiterUnavailableError extends Error {
  override readonly name = 'RateLimiterUnavailableError';
  readonly code = 'ERR_RATE_LIMITER_UNAVAILABLE';
}

const backendErrors = counter(
  'smart_home_rate_limiter_backend_errors_total',
  'Shared rate-limit store (Redis) failures, by what was decided instead (open: the local bucket; closed: refused).',
  ['mode'],
);

export class TokenBucketLimiter implements RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #now: () => number;

  constructor(opts: BucketOptions & { now?: () => number }) {
    this.#rate = opts.ratePerSecond;
    this.#burst = opts.burst;
    this.#now = opts.now ?? (() => performance.now());
  }

  /** 0 when allowed; otherwise the seconds to wait before retrying (≥ 1). */
  take(key: string): number {
    const now = this.#now();
    let b = this.#buckets.get(key);
    if (!b) {
      b = { tokens: this.#burst, at: now };
      this.#buckets.set(key, b);
    }
    b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#rate);
    b.at = now;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / this.#rate));
  }

  async close(): Promise<void> {
    this.#buckets.clear();
  }
}

/**
 * KEYS[1] the bucket; ARGV rate (tokens/s), burst, idle TTL (ms). Redis's TIME is the clock (allowed in
 * scripts since Redis 5 with effect replication, the default from 7). Returns the wait in seconds, 0
 * when a token was taken. Tokens are kept as a decimal string (Lua numbers are doubles).
 */
const TOKEN_BUCKET_LUA = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) / 1000 * rate)
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.max(1, math.ceil((1 - tokens) / rate))
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return wait
`;

export interface RedisRateLimiterOptions extends BucketOptions {
  /** What to decide when Redis fails or does not answer within `timeoutMs`. */
  onBackendError: 'open' | 'closed';
  /** Longest wait for Redis, ms; beyond it the backend counts as failed for this request. */
  timeoutMs: number;
  /** Prepended to every key (default `smart-home:rate:`). */
  prefix?: string;
  logger?: Logger | undefined;
}

type WithBucket = Redis & {
  smartHomeTokenBucket(key: string, rate: number, burst: number, ttlMs: number): Promise<number>;
};

/**
 * Token buckets shared through Redis. When Redis fails: `open` decides with a local in-memory bucket of
 * the same rate (each instance then allows the full rate: the shared limit is degraded to a per-instance
 * one, but partners keep being served and one partner still cannot take a whole instance), `closed`
 * rejects with {@link RateLimiterUnavailableError} (the zone answers 503 with Retry-After). Either is
 * counted and logged once per outage, not per request.
 */
export class RedisRateLimiter implements RateLimiter {
  readonly #redis: WithBucket;
  readonly #opts: RedisRateLimiterOptions;
  readonly #prefix: string;
  readonly #fallback: TokenBucketLimiter;
  /** A bucket is forgotten after being idle long enough to be full again (and a second more). */
  readonly #ttlMs: number;
  #degraded = false;

  constructor(redis: Redis, opts: RedisRateLimiterOptions) {
    const r = redis as unknown as WithBucket;
    if (typeof r.smartHomeTokenBucket !== 'function') {
      redis.defineCommand('smartHomeTokenBucket', { numberOfKeys: 1, lua: TOKEN_BUCKET_LUA });
    }
    this.#redis = r;
    this.#opts = opts;
    this.#prefix = opts.prefix ?? 'smart-home:rate:';
    this.#fallback = new TokenBucketLimiter(opts);
    this.#ttlMs = Math.ceil((opts.burst / opts.ratePerSecond) * 1000) + 1000;
  }

  async take(key: string): Promise<number> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const wait = await Promise.race([
        this.#redis.smartHomeTokenBucket(
          this.#prefix + key,
          this.#opts.ratePerSecond,
          this.#opts.burst,
          this.#ttlMs,
        ),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('rate-limit store timed out')), this.#opts.timeoutMs);
        }),
      ]);
      if (this.#degraded) {
        this.#degraded = false;
        this.#opts.logger?.info('rate-limit store (Redis) answers again: shared limits restored');
      }
      return Number(wait);
    } catch (err) {
      backendErrors.inc({ mode: this.#opts.onBackendError });
      if (!this.#degraded) {
        this.#degraded = true;
        this.#opts.logger?.error(
          { err: { message: (err as Error).message }, mode: this.#opts.onBackendError },
          this.#opts.onBackendError === 'open'
            ? 'rate-limit store (Redis) failed: limiting per instance until it answers'
            : 'rate-limit store (Redis) failed: refusing partner requests until it answers',
        );
      }
      if (this.#opts.onBackendError === 'open') return this.#fallback.take(key);
      throw new RateLimiterUnavailableError('the rate-limit store is unavailable', { cause: err });
    } finally {
      clearTimeout(timer);
    }
  }

  /** The Redis client is shared (the replay cache owns it); only the local state is dropped. */
  async close(): Promise<void> {
    await this.#fallback.close();
  }
}
