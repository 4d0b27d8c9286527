/**
 * Load shedding on the partner listener (issue 5): when the event loop lags beyond a threshold, partner
 * requests are answered `503 overloaded` with `Retry-After` (RFC 9110 §15.6.4, §10.2.3) before any
 * token, signature or database work, so the work already admitted finishes in time instead of every
 * request timing out. Health endpoints and /metrics live on the public listener and are never shed.
 *
 * Fairness: while the lag is over the threshold but under twice it, only partners far over their fair
 * share of the recent requests (more than `fairShareFactor` × the mean of the other partners) are shed — the
 * flood's source pays first and the others keep their latency; if no partner stands out (the load is
 * spread evenly), or the lag reaches twice the threshold, every partner request is shed.
 *
 * The lag comes from a {@link LagProbe}: in service, {@link eventLoopLagProbe} (perf_hooks
 * `monitorEventLoopDelay`, no dependency needed); in tests a fixed value, so shedding is driven
 * deterministically, never by timing.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { counter, gauge } from '../metrics/registry.ts';

export interface LagProbe {
  /** The event loop's recent delay, ms. */
  lagMs(): number;
  close?(): void;
}

const lagGauge = gauge(
  'smart_home_event_loop_lag_seconds',
  'Event loop delay (p99 of the last sampling window) as the load shedder sees it.',
);
const shedCounter = counter(
  'smart_home_partner_shed_total',
  'Partner requests answered 503 overloaded by the load shedder, per partner.',
  ['partner'],
);

/**
 * The event loop's delay every `sampleMs`: the larger of `monitorEventLoopDelay`'s p99 over the window
 * and how late the sampling timer itself fired (the histogram may not have recorded a long block yet
 * when the overdue timer runs; the timer's own lateness always has).
 */
export function eventLoopLagProbe(sampleMs: number): LagProbe {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  let last = 0;
  let expected = performance.now() + sampleMs;
  const timer = setInterval(() => {
    const now = performance.now();
    const late = Math.max(0, now - expected);
    expected = now + sampleMs;
    // Histogram values are ns; an empty window (no sample yet) reads as 0.
    last = Math.max(late, h.count > 0 ? h.percentile(99) / 1e6 : 0);
    lagGauge.set(last / 1000);
    h.reset();
  }, sampleMs);
  timer.unref();
  return {
    lagMs: () => last,
    close() {
      clearInterval(timer);
      h.disable();
    },
  };
}

export interface LoadShedderOptions {
  /** Lag beyond which requests are shed, ms; 0 disables shedding. */
  thresholdMs: number;
  /** `Retry-After` of a shed request, seconds. */
  retryAfterSeconds: number;
  /** A partner is over its fair share beyond this multiple of it; 0 sheds every partner alike. */
  fairShareFactor: number;
  /** Window over which each partner's share is counted, ms. */
  windowMs: number;
}

export class LoadShedder {
  readonly #opts: LoadShedderOptions;
  #probe: LagProbe;
  readonly #now: () => number;
  /** Requests per partner in the current and the previous window. */
  #current = new Map<string, number>();
  #previous = new Map<string, number>();
  #windowStart: number;

  constructor(opts: LoadShedderOptions, probe: LagProbe, now: () => number = () => performance.now()) {
    this.#opts = opts;
    this.#probe = probe;
    this.#now = now;
    this.#windowStart = now();
  }

  /** Replaces the lag probe (tests drive the lag with a fixed value). */
  useProbe(probe: LagProbe): void {
    this.#probe.close?.();
    this.#probe = probe;
  }

  /**
   * Counts one request of `partnerId`; returns 0 to serve it, or the Retry-After (s) to shed it.
   */
  check(partnerId: string): number {
    this.#count(partnerId);
    const { thresholdMs, fairShareFactor, retryAfterSeconds } = this.#opts;
    if (thresholdMs <= 0) return 0;
    const lag = this.#probe.lagMs();
    if (lag <= thresholdMs) return 0;
    if (lag < 2 * thresholdMs && fairShareFactor > 0) {
      const heavy = this.#overFairShare(fairShareFactor);
      // Someone stands out: shed only them. Nobody does: the load is everyone's, shed alike.
      if (heavy.size > 0 && !heavy.has(partnerId)) return 0;
    }
    shedCounter.inc({ partner: partnerId });
    return retryAfterSeconds;
  }

  #count(partnerId: string): void {
    const now = this.#now();
    if (now - this.#windowStart >= this.#opts.windowMs) {
      // More than a whole window without a request: the previous one is empty too.
      this.#previous = now - this.#windowStart >= 2 * this.#opts.windowMs ? new Map() : this.#current;
      this.#current = new Map();
      this.#windowStart = now;
    }
    this.#current.set(partnerId, (this.#current.get(partnerId) ?? 0) + 1);
  }

  /**
   * Partners whose requests over the last two windows exceed `factor` × the mean of the OTHER active
   * partners (against the mean of all, one partner of two could never stand out).
   */
  #overFairShare(factor: number): Set<string> {
    const totals = new Map(this.#previous);
    for (const [p, n] of this.#current) totals.set(p, (totals.get(p) ?? 0) + n);
    const heavy = new Set<string>();
    if (totals.size < 2) return heavy;
    let sum = 0;
    for (const n of totals.values()) sum += n;
    for (const [p, n] of totals) if (n > (factor * (sum - n)) / (totals.size - 1)) heavy.add(p);
    return heavy;
  }

  close(): void {
    this.#probe.close?.();
  }
}
