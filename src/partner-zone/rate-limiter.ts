/**
 * Per-partner token bucket. In memory per instance for now (issue 5 shares it through Redis). A
 * refused request learns when a token will be available (`Retry-After`, RFC 9110 §10.2.3).
 */
export class TokenBucketLimiter {
  readonly #rate: number;
  readonly #burst: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #now: () => number;

  constructor(opts: { ratePerSecond: number; burst: number; now?: () => number }) {
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
}
