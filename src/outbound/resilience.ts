/**
 * The partner channel under faults (issue 5): what stands between the service and one partner, per
 * partner, whatever the call (door command of contract §7, journal exchange of §8, event backfill of §9):
 *
 * - a circuit breaker: closed → open after `breakerFailures` consecutive failures, or a failure rate of
 *   `breakerFailureRatePercent` over `breakerWindowMs` (once `breakerMinCalls` calls were made in it);
 *   open → half-open after `breakerCooldownMs`, where ONE probe goes through and decides; while open every
 *   call fails fast (`ERR_OUTBOUND_CIRCUIT_OPEN`) without touching the network;
 * - a bulkhead: at most `maxConcurrent` calls in flight to the partner, `maxQueued` more wait for a slot
 *   (never past their own deadline), anything beyond fails fast (`ERR_OUTBOUND_BULKHEAD_FULL`), so one
 *   slow partner can hold neither all sockets nor all memory;
 * - `Retry-After` of a `429` or `503` (RFC 9110 §10.2.3, §15.5.30, §15.6.4): no call to the partner
 *   before then; a call whose deadline comes first fails at once (`ERR_OUTBOUND_THROTTLED`);
 * - the retry rule: idempotent requests only (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, PUT, DELETE; and the
 *   door command, idempotent by `commandId`, contract §7), at most `retryAttempts` attempts, full-jitter
 *   exponential backoff ("Exponential Backoff And Jitter", AWS architecture blog, 2015), never past the
 *   call's deadline — for a door command, its `expiresAt`.
 *
 * States and refusals are metrics labelled with the partner's internal id only; breaker transitions are
 * logged with that id and the failure code, never a body, token or subject.
 */
import type { Logger } from 'pino';
import { OPTIONS } from '../config/options.ts';
import { counter, gauge } from '../metrics/registry.ts';
import { OutboundError } from './errors.ts';

export interface ResilienceOptions {
  /** Consecutive failures that open the breaker. */
  breakerFailures: number;
  /** Failure rate over the window that opens the breaker, percent. */
  breakerFailureRatePercent: number;
  /** Sliding window of the failure rate, ms. */
  breakerWindowMs: number;
  /** Calls within the window before the rate counts (a few failures of a quiet partner are not a rate). */
  breakerMinCalls: number;
  /** Open → half-open after this long, ms. */
  breakerCooldownMs: number;
  /** Bulkhead: calls in flight per partner. */
  maxConcurrent: number;
  /** Bulkhead: calls waiting for a slot per partner. */
  maxQueued: number;
  /** Attempts of an idempotent request (1 = no retry). */
  retryAttempts: number;
  /** Backoff base: the first retry waits a random time in [0, base), the n-th in [0, base·2ⁿ⁻¹). */
  retryDelayMs: number;
  /** Backoff cap, ms. */
  retryMaxDelayMs: number;
  /** Longest `Retry-After` honoured, s (a partner cannot silence us for a day by mistake). */
  retryAfterMaxSeconds: number;
}

/** Each field's option key (`outbound.<field>`): the defaults below come from the options table. */
const FIELDS = [
  'breakerFailures',
  'breakerFailureRatePercent',
  'breakerWindowMs',
  'breakerMinCalls',
  'breakerCooldownMs',
  'maxConcurrent',
  'maxQueued',
  'retryAttempts',
  'retryDelayMs',
  'retryMaxDelayMs',
  'retryAfterMaxSeconds',
] as const satisfies readonly (keyof ResilienceOptions)[];

/**
 * `given` completed with the documented defaults of src/config/options.ts (the service always passes
 * the full configuration; tests and tools may pass only what they change).
 */
export function resilienceOptions(given: Partial<ResilienceOptions> = {}): ResilienceOptions {
  const out: Partial<Record<keyof ResilienceOptions, number>> = {};
  for (const f of FIELDS) {
    const v = given[f] ?? OPTIONS.find((o) => o.key === `outbound.${f}`)?.default;
    if (typeof v !== 'number') throw new TypeError(`no default for outbound.${f}`);
    out[f] = v;
  }
  return out as ResilienceOptions;
}

export type BreakerState = 'closed' | 'open' | 'half-open';
const STATE_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 };

const breakerGauge = gauge(
  'smart_home_outbound_breaker_state',
  'Circuit breaker state per partner: 0 closed, 1 half-open, 2 open.',
  ['partner'],
);
const breakerTransitions = counter(
  'smart_home_outbound_breaker_transitions_total',
  'Circuit breaker transitions per partner, by the state entered.',
  ['partner', 'state'],
);
const refusedCalls = counter(
  'smart_home_outbound_refused_total',
  'Calls to a partner refused before the network, by reason (circuit_open, bulkhead_full, throttled).',
  ['partner', 'reason'],
);
const retriedCalls = counter(
  'smart_home_outbound_retries_total',
  'Attempts of an idempotent call to a partner beyond its first.',
  ['partner'],
);
const partnerStatus = counter(
  'smart_home_outbound_throttled_total',
  'Answers 429 or 503 received from a partner, by status.',
  ['partner', 'status'],
);
const inFlight = gauge('smart_home_outbound_in_flight', 'Calls in flight to a partner.', ['partner']);

/**
 * `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. Returns the absolute time (Date.now
 * ms) before which the partner asked not to be called, capped at `maxSeconds`; undefined for a missing
 * or unreadable value.
 */
export function parseRetryAfter(
  value: string | string[] | undefined,
  now: number,
  maxSeconds: number,
): number | undefined {
  const v = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!v) return undefined;
  let at: number;
  if (/^\d+$/.test(v)) at = now + Number(v) * 1000;
  else {
    // §5.6.7 HTTP-date: IMF-fixdate (and the obsolete forms Date.parse also reads); it must name GMT.
    if (!/GMT$/.test(v)) return undefined;
    at = Date.parse(v);
    if (Number.isNaN(at)) return undefined;
  }
  return Math.min(Math.max(at, now), now + maxSeconds * 1000);
}

/** Full jitter: a uniform random delay in [0, min(cap, base·2^(retry−1))), `retry` counting from 1. */
export function backoffDelay(
  retry: number,
  opts: Pick<ResilienceOptions, 'retryDelayMs' | 'retryMaxDelayMs'>,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(opts.retryMaxDelayMs, opts.retryDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.floor(random() * ceiling);
}

/** RFC 9110 §9.2.2 idempotent methods. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);
export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method.toUpperCase());
}

/** Statuses worth another attempt of an idempotent request: the partner may answer next time. */
export function isRetryableStatus(status: number): boolean {
  return status === 429 || status === 502 || status === 503 || status === 504;
}

/** A failure in the breaker's sense: no trustworthy answer, or the partner failing (5xx). */
export function isFailureStatus(status: number): boolean {
  return status >= 500;
}

interface Sample {
  at: number;
  failed: boolean;
}

export class CircuitBreaker {
  readonly #opts: ResilienceOptions;
  readonly #now: () => number;
  readonly #onChange: (state: BreakerState, cause: string | undefined) => void;
  #state: BreakerState = 'closed';
  #consecutive = 0;
  #openedAt = 0;
  #probing = false;
  /** Outcomes within the window, oldest first. */
  #samples: Sample[] = [];

  constructor(
    opts: ResilienceOptions,
    now: () => number,
    onChange: (state: BreakerState, cause: string | undefined) => void = () => {},
  ) {
    this.#opts = opts;
    this.#now = now;
    this.#onChange = onChange;
  }

  get state(): BreakerState {
    if (this.#state === 'open' && this.#now() - this.#openedAt >= this.#opts.breakerCooldownMs) {
      this.#set('half-open', undefined);
    }
    return this.#state;
  }

  /**
   * Admits a call or throws `ERR_OUTBOUND_CIRCUIT_OPEN`. In half-open, only one call (the probe) is
   * admitted until it reports. The caller MUST report the call with {@link success} or {@link failure},
   * or {@link release} when it ended without saying anything about the partner.
   */
  admit(): void {
    const state = this.state;
    if (state === 'closed') return;
    if (state === 'half-open' && !this.#probing) {
      this.#probing = true;
      return;
    }
    throw new OutboundError('ERR_OUTBOUND_CIRCUIT_OPEN', 'the partner is failing: circuit open');
  }

  success(): void {
    this.#probing = false;
    this.#consecutive = 0;
    if (this.#state !== 'closed') {
      this.#samples = [];
      this.#set('closed', undefined);
      return;
    }
    this.#record(false);
  }

  failure(cause: string): void {
    this.#probing = false;
    if (this.#state === 'half-open') {
      this.#open(cause);
      return;
    }
    if (this.#state === 'open') return;
    this.#consecutive++;
    this.#record(true);
    const failed = this.#samples.filter((s) => s.failed).length;
    if (
      this.#consecutive >= this.#opts.breakerFailures ||
      (this.#samples.length >= this.#opts.breakerMinCalls &&
        failed * 100 >= this.#opts.breakerFailureRatePercent * this.#samples.length)
    ) {
      this.#open(cause);
    }
  }

  /** The admitted call ended without an outcome about the partner (e.g. our own deadline before sending). */
  release(): void {
    this.#probing = false;
  }

  #record(failed: boolean): void {
    const now = this.#now();
    this.#samples.push({ at: now, failed });
    const from = now - this.#opts.breakerWindowMs;
    let drop = 0;
    while (drop < this.#samples.length && this.#samples[drop]!.at < from) drop++;
    if (drop > 0) this.#samples.splice(0, drop);
  }

  #open(cause: string): void {
    this.#openedAt = this.#now();
    this.#consecutive = 0;
    this.#samples = [];
    this.#set('open', cause);
  }

  #set(state: BreakerState, cause: string | undefined): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#onChange(state, cause);
  }
}

/** At most `maxConcurrent` holders; `maxQueued` waiters in FIFO order; each waits until its deadline. */
export class Bulkhead {
  readonly #max: number;
  readonly #maxQueued: number;
  #active = 0;
  readonly #queue: Array<{ grant: () => void }> = [];

  constructor(maxConcurrent: number, maxQueued: number) {
    this.#max = maxConcurrent;
    this.#maxQueued = maxQueued;
  }

  get active(): number {
    return this.#active;
  }
  get queued(): number {
    return this.#queue.length;
  }

  /** Resolves with a release function once a slot is held; throws when full or the deadline passes. */
  async acquire(deadline: number): Promise<() => void> {
    if (this.#active < this.#max && this.#queue.length === 0) {
      this.#active++;
      return this.#releaser();
    }
    if (this.#queue.length >= this.#maxQueued) {
      throw new OutboundError('ERR_OUTBOUND_BULKHEAD_FULL', 'too many calls to the partner at once');
    }
    const wait = deadline - Date.now();
    if (wait <= 0) throw new OutboundError('ERR_OUTBOUND_TIMEOUT', 'no time left to wait for a slot');
    return new Promise<() => void>((resolve, reject) => {
      const entry = {
        grant: () => {
          clearTimeout(timer);
          this.#active++;
          resolve(this.#releaser());
        },
      };
      const timer = setTimeout(() => {
        const i = this.#queue.indexOf(entry);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(new OutboundError('ERR_OUTBOUND_TIMEOUT', 'no call slot to the partner in time'));
      }, wait);
      this.#queue.push(entry);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#active--;
      const next = this.#queue.shift();
      if (next) next.grant();
    };
  }
}

/** Codes of failures that say the partner is not answering as required (they count for the breaker). */
const PARTNER_FAULTS = new Set([
  'ERR_OUTBOUND_CONNECT',
  'ERR_OUTBOUND_TIMEOUT',
  'ERR_OUTBOUND_TLS',
  'ERR_OUTBOUND_SIGNATURE',
  'ERR_OUTBOUND_RESPONSE',
  'ERR_OUTBOUND_TOKEN',
]);

/** One attempt's outcome as the guard learns it. */
export interface AttemptResult<T> {
  value: T;
  /** HTTP status of a verified answer (drives the breaker and Retry-After). */
  status?: number;
  headers?: Record<string, string | string[] | undefined>;
}

/**
 * Everything per partner in one place: {@link PartnerGuard.run} wraps ONE attempt (a token request or a
 * signed request) in the Retry-After gate, the breaker and the bulkhead, and learns from its outcome.
 * Retrying is the caller's (it knows whether its request is idempotent), with {@link PartnerGuard.retryDelay}.
 */
export class PartnerGuard {
  readonly partnerId: string;
  readonly options: ResilienceOptions;
  readonly breaker: CircuitBreaker;
  readonly bulkhead: Bulkhead;
  /** Date.now ms before which the partner asked not to be called (Retry-After). */
  #blockedUntil = 0;
  readonly #random: () => number;

  constructor(
    partnerId: string,
    options: ResilienceOptions,
    deps: { logger?: Logger | undefined; now?: () => number; random?: () => number } = {},
  ) {
    this.partnerId = partnerId;
    this.options = options;
    this.#random = deps.random ?? Math.random;
    const log = deps.logger;
    breakerGauge.set({ partner: partnerId }, 0);
    this.breaker = new CircuitBreaker(options, deps.now ?? Date.now, (state, cause) => {
      breakerGauge.set({ partner: partnerId }, STATE_VALUE[state]);
      breakerTransitions.inc({ partner: partnerId, state });
      const entry = { partnerId, breaker: state, ...(cause ? { cause } : {}) };
      if (state === 'open') log?.warn(entry, 'outbound circuit opened');
      else log?.info(entry, `outbound circuit ${state}`);
    });
    this.bulkhead = new Bulkhead(options.maxConcurrent, options.maxQueued);
  }

  /** Date.now ms until which calls are held back by a Retry-After (0 when none). */
  get blockedUntil(): number {
    return this.#blockedUntil > Date.now() ? this.#blockedUntil : 0;
  }

  /** The n-th retry's pause (full jitter), n from 1. */
  retryDelay(retry: number): number {
    return backoffDelay(retry, this.options, this.#random);
  }

  /** Counts a retry actually made (the metric). */
  retrying(): void {
    retriedCalls.inc({ partner: this.partnerId });
  }

  /**
   * Runs one attempt that must end by `deadline` (Date.now ms). Throws `ERR_OUTBOUND_THROTTLED` when a
   * Retry-After holds past the deadline (or waits it out when it ends before), `ERR_OUTBOUND_CIRCUIT_OPEN`
   * or `ERR_OUTBOUND_BULKHEAD_FULL` without touching the network, or what the attempt throws.
   */
  async run<T>(deadline: number, attempt: () => Promise<AttemptResult<T>>): Promise<T> {
    const blocked = this.blockedUntil;
    if (blocked > 0) {
      if (blocked >= deadline) {
        refusedCalls.inc({ partner: this.partnerId, reason: 'throttled' });
        throw new OutboundError('ERR_OUTBOUND_THROTTLED', 'the partner asked to wait (Retry-After)', {
          retryAt: blocked,
        });
      }
      await new Promise((r) => setTimeout(r, blocked - Date.now()));
    }
    try {
      this.breaker.admit();
    } catch (err) {
      refusedCalls.inc({ partner: this.partnerId, reason: 'circuit_open' });
      throw err;
    }
    let release: () => void;
    try {
      release = await this.bulkhead.acquire(deadline);
    } catch (err) {
      this.breaker.release();
      if ((err as OutboundError).code === 'ERR_OUTBOUND_BULKHEAD_FULL')
        refusedCalls.inc({ partner: this.partnerId, reason: 'bulkhead_full' });
      throw err;
    }
    inFlight.inc({ partner: this.partnerId });
    try {
      const r = await attempt();
      if (r.status !== undefined) this.learn(r.status, r.headers);
      else this.breaker.success();
      return r.value;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code && PARTNER_FAULTS.has(code)) this.breaker.failure(code);
      else this.breaker.release();
      throw err;
    } finally {
      inFlight.dec({ partner: this.partnerId });
      release();
    }
  }

  /** A verified answer's status: breaker outcome and Retry-After. */
  learn(status: number, headers: Record<string, string | string[] | undefined> = {}): void {
    if (status === 429 || status === 503) {
      partnerStatus.inc({ partner: this.partnerId, status: String(status) });
      const until = parseRetryAfter(headers['retry-after'], Date.now(), this.options.retryAfterMaxSeconds);
      if (until !== undefined && until > this.#blockedUntil) this.#blockedUntil = until;
    }
    if (isFailureStatus(status)) this.breaker.failure(`http_${status}`);
    else this.breaker.success();
  }
}
