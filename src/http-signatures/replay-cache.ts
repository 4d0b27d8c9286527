/**
 * Nonce replay caches for RFC 9421 signatures (RFC 9421 §7.2.2 "Replay": a verifier that must detect
 * replays records the `nonce` parameter; contract §3: a nonce seen for the same keyid in the last
 * 120 s is rejected). The verifier only records a nonce after the signature has verified, so only
 * authenticated partners can add entries.
 */
import type { Redis } from 'ioredis';

export interface ReplayCache {
  /**
   * Records `nonce` for `keyid` for `ttlSeconds`.
   * Resolves `true` the first time the pair is seen within the TTL, `false` for a replay.
   * Rejects when the cache cannot decide (full, backend down): callers MUST then refuse the message.
   */
  remember(keyid: string, nonce: string, ttlSeconds: number): Promise<boolean>;
  close(): Promise<void>;
}

/** Raised by {@link MemoryReplayCache} when it is full of live entries (fail closed). */
export class ReplayCacheFullError extends Error {
  override readonly name = 'ReplayCacheFullError';
  readonly code = 'ERR_REPLAY_CACHE_FULL';
}

/**
 * keyid and nonce joined unambiguously: the length prefix fixes where the keyid ends whatever
 * characters either contains, so ("a:b", "c") and ("a", "b:c") can never share an entry.
 */
function entryKey(keyid: string, nonce: string): string {
  return `${keyid.length}:${keyid}:${nonce}`;
}

function checkTtl(ttlSeconds: number): void {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new RangeError('ttlSeconds must be > 0');
}

export interface MemoryReplayCacheOptions {
  /**
   * Upper bound on live entries (default 1,000,000). Measured ~205 bytes of heap per entry, so the
   * default tops out near 200 MB; it holds rate x TTL entries, i.e. ~8,300 signed requests/s sustained
   * with the 120 s TTL. When the cache is full of entries that have not expired yet,
   * `remember` REJECTS with {@link ReplayCacheFullError} instead of evicting: forgetting a live nonce
   * would let that request be replayed, so the cache fails closed and the request is refused.
   */
  maxEntries?: number;
  /** Clock in milliseconds (default `performance.now`, monotonic: wall-clock jumps do not expire entries). */
  now?: () => number;
}

/**
 * In-process replay cache: one instance only sees its own process's traffic, so it protects a single
 * instance; several instances behind a load balancer need {@link RedisReplayCache}.
 */
export class MemoryReplayCache implements ReplayCache {
  readonly #entries = new Map<string, number>(); // entry key -> expiry (ms, clock of #now)
  readonly #maxEntries: number;
  readonly #now: () => number;
  /** No entry expires before this instant; lets a full cache skip a pointless O(n) sweep. */
  #earliestExpiry = Number.POSITIVE_INFINITY;

  constructor(options: MemoryReplayCacheOptions = {}) {
    const max = options.maxEntries ?? 1_000_000;
    if (!Number.isInteger(max) || max < 1) throw new RangeError('maxEntries must be a positive integer');
    this.#maxEntries = max;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Live and not-yet-swept entries. */
  get size(): number {
    return this.#entries.size;
  }

  async remember(keyid: string, nonce: string, ttlSeconds: number): Promise<boolean> {
    checkTtl(ttlSeconds);
    const now = this.#now();
    this.#sweepHead(now);
    const key = entryKey(keyid, nonce);
    const expiry = this.#entries.get(key);
    if (expiry !== undefined) {
      if (expiry > now) return false;
      this.#entries.delete(key);
    }
    if (this.#entries.size >= this.#maxEntries) {
      this.#sweepAll(now);
      if (this.#entries.size >= this.#maxEntries) throw new ReplayCacheFullError('replay cache is full');
    }
    const expires = now + ttlSeconds * 1000;
    this.#entries.set(key, expires);
    if (expires < this.#earliestExpiry) this.#earliestExpiry = expires;
    return true;
  }

  async close(): Promise<void> {
    this.#entries.clear();
    this.#earliestExpiry = Number.POSITIVE_INFINITY;
  }

  /**
   * Map iteration follows insertion order, which is expiry order while the TTL is constant (the
   * normal case): dropping expired entries from the front is O(1) amortised per call.
   */
  #sweepHead(now: number): void {
    for (const [key, expiry] of this.#entries) {
      if (expiry > now) return;
      this.#entries.delete(key);
    }
  }

  /** Full sweep, for mixed TTLs; only when full, and only if something can have expired. */
  #sweepAll(now: number): void {
    if (now < this.#earliestExpiry) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const [key, expiry] of this.#entries) {
      if (expiry <= now) this.#entries.delete(key);
      else if (expiry < earliest) earliest = expiry;
    }
    this.#earliestExpiry = earliest;
  }
}

export interface RedisReplayCacheOptions {
  /** Prepended to every key (default `smart-home:sig-nonce:`), to share a Redis with other data. */
  prefix?: string;
  /** Whether close() also quits the Redis connection (default true: the cache owns the client). */
  closeClient?: boolean;
}

/**
 * Replay cache shared by all instances: `SET <prefix><keyid>:<nonce> 1 EX <ttl> NX` is atomic, so
 * exactly one instance sees a given nonce as new. Any Redis error rejects (the verifier fails closed).
 */
export class RedisReplayCache implements ReplayCache {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #closeClient: boolean;

  constructor(redis: Redis, options: RedisReplayCacheOptions = {}) {
    this.#redis = redis;
    this.#prefix = options.prefix ?? 'smart-home:sig-nonce:';
    this.#closeClient = options.closeClient ?? true;
  }

  async remember(keyid: string, nonce: string, ttlSeconds: number): Promise<boolean> {
    checkTtl(ttlSeconds);
    // EX takes whole seconds; rounding up never shortens the protection window.
    const reply = await this.#redis.set(
      this.#prefix + entryKey(keyid, nonce),
      '1',
      'EX',
      Math.ceil(ttlSeconds),
      'NX',
    );
    return reply === 'OK';
  }

  async close(): Promise<void> {
    if (this.#closeClient && this.#redis.status !== 'end') await this.#redis.quit();
  }
}
