/**
 * The partner's event delivery (contract §9): POSTs events from its log to smart-home's
 * `/partner/v1/events` in batches of 1–100 through the partner client (token, mTLS, RFC 9421 signing,
 * verified signed answers), and retries the way Standard Webhooks asks of a sender: a batch keeps its
 * events (so their `eventId`s) across retries, anything but a `2xx` with a valid signature is retried
 * with full-jitter exponential backoff, and a `429`/`503` `Retry-After` is honoured before the next try.
 *
 * Delivery faults, each reproducible from `seed`: duplicates (a share of events sent a second time,
 * usually in another batch), reordering (events shuffled within a window), delays before batches,
 * bursts (batches back to back, then a pause), a steady rate, and dropped deliveries — the event stays
 * in the partner's log but is never POSTed, so smart-home sees a gap and must backfill it.
 */
import { createHistogram } from 'node:perf_hooks';
import type { PartnerEvent } from '../src/events/model.ts';
import { Rng, shuffleRange } from './events.ts';
import type { PartnerClient } from './partner-client.ts';

export const EVENTS_PATH = '/partner/v1/events';
export const EVENTS_WRITE_SCOPE = 'events:write';
/** Contract §9: 1 to 100 events per request. */
export const MAX_BATCH = 100;

export interface DeliveryFaults {
  /** Makes every random choice reproducible (default 1). */
  seed?: number;
  /** Share of the delivered events sent once more, a few batches later (0–1). */
  duplicates?: number;
  /** How far a duplicate trails its original, in events (default 3 batches). */
  duplicateDistance?: number;
  /** Events are shuffled within consecutive windows of this many (0/1: in seq order). */
  shuffleWindow?: number;
  /** A random wait of up to this many ms before each batch (network delay). */
  maxDelayMs?: number;
  /** Sends `batches` batches back to back, then pauses `pauseMs` (a burst after a quiet period). */
  burst?: { batches: number; pauseMs: number };
  /** Never POSTed (kept in the log): a share (0–1) or a choice per event. Forces gaps. */
  drop?: number | ((event: PartnerEvent) => boolean);
}

export interface RetryPolicy {
  /** Attempts per batch before it is given up and reported as failed (default 30). */
  maxAttempts?: number;
  /** First backoff ceiling, ms (default 100); doubles per attempt up to `maxMs`. */
  baseMs?: number;
  /** Backoff ceiling, ms (default 5,000). */
  maxMs?: number;
  /** Largest Retry-After honoured, ms (default 60,000): a longer one is capped, never ignored. */
  maxRetryAfterMs?: number;
}

export interface SenderOptions {
  client: PartnerClient;
  /** Events per request, 1–100 (default 100). */
  batchSize?: number;
  /** Requests in flight at once (default 8). */
  concurrency?: number;
  /** A steady pace: at most this many requests started per second (default: as fast as answered). */
  requestsPerSecond?: number;
  faults?: DeliveryFaults;
  retry?: RetryPolicy;
  /** Events acknowledged so far, of the total to deliver (for a progress display). */
  onProgress?: (done: number, total: number) => void;
  /** Stops sending new requests (in-flight ones finish; batches not yet sent count as failed). */
  signal?: AbortSignal;
}

export interface DeliveryReport {
  /** Events in the input. */
  events: number;
  /** Events never POSTed (drop switch): left for the backfill. */
  dropped: number;
  /** Distinct events acknowledged with a 2xx (each counted once, however often sent). */
  delivered: number;
  /** Extra copies POSTed by the duplicates switch. */
  duplicatesSent: number;
  /** Events of batches given up after `maxAttempts` (or left when aborted). */
  failed: number;
  /** HTTP requests made, retries included. */
  requests: number;
  retries: number;
  /** Answers by status code ("error" for a connection failure, "bad-signature" for an unverifiable 2xx). */
  statuses: Record<string, number>;
  /** Sums of the 2xx answers' `accepted` and `duplicates`. */
  accepted: number;
  duplicatesAnswered: number;
  /** Acknowledgement latency of the 2xx answers, ms. */
  ackP50ms: number;
  ackP99ms: number;
  ackMaxms: number;
  seconds: number;
  eventsPerSecond: number;
}

interface Batch {
  index: number;
  events: PartnerEvent[];
  /** ms after the start before which it is not sent. */
  notBefore: number;
  delayMs: number;
}

/** Parses `Retry-After` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) into ms from now. */
export function retryAfterMs(value: unknown, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (typeof v !== 'string' || v.trim() === '') return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * Orders what is to be sent: drops, duplicates placed a little later, shuffling within windows.
 * Pure given the seed (exported for the simulator's own tests).
 */
export function deliveryPlan(
  events: readonly PartnerEvent[],
  faults: DeliveryFaults,
  batchSize: number,
): { sequence: PartnerEvent[]; dropped: PartnerEvent[]; duplicatesSent: number } {
  const rng = new Rng(faults.seed ?? 1);
  const drop = faults.drop;
  const dropped: PartnerEvent[] = [];
  const kept: PartnerEvent[] = [];
  for (const e of events) {
    const gone = typeof drop === 'function' ? drop(e) : rng.chance(drop ?? 0);
    (gone ? dropped : kept).push(e);
  }
  const distance = Math.max(1, faults.duplicateDistance ?? 3 * batchSize);
  const pending = new Map<number, PartnerEvent[]>();
  const sequence: PartnerEvent[] = [];
  let duplicatesSent = 0;
  for (let i = 0; i < kept.length; i++) {
    const e = kept[i]!;
    sequence.push(e);
    if (rng.chance(faults.duplicates ?? 0)) {
      const at = i + 1 + rng.int(distance);
      pending.set(at, [...(pending.get(at) ?? []), e]);
      duplicatesSent++;
    }
    for (const d of pending.get(i) ?? []) sequence.push(d);
    pending.delete(i);
  }
  for (const [, rest] of [...pending].sort((a, b) => a[0] - b[0])) sequence.push(...rest);
  const w = faults.shuffleWindow ?? 0;
  if (w > 1)
    for (let from = 0; from < sequence.length; from += w) {
      shuffleRange(sequence, from, Math.min(sequence.length, from + w), rng);
    }
  return { sequence, dropped, duplicatesSent };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });

/** Delivers `events` (from the partner's log) to smart-home with the faults asked for. */
export async function deliverEvents(
  events: readonly PartnerEvent[],
  opts: SenderOptions,
): Promise<DeliveryReport> {
  const batchSize = opts.batchSize ?? MAX_BATCH;
  if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > MAX_BATCH) {
    throw new RangeError(`batchSize must be 1–${MAX_BATCH} (contract §9)`);
  }
  const faults = opts.faults ?? {};
  const retry = {
    maxAttempts: opts.retry?.maxAttempts ?? 30,
    baseMs: opts.retry?.baseMs ?? 100,
    maxMs: opts.retry?.maxMs ?? 5_000,
    maxRetryAfterMs: opts.retry?.maxRetryAfterMs ?? 60_000,
  };
  const { sequence, dropped, duplicatesSent } = deliveryPlan(events, faults, batchSize);
  const timing = new Rng((faults.seed ?? 1) ^ 0x7157);
  const batches: Batch[] = [];
  for (let i = 0; i * batchSize < sequence.length; i++) {
    const burstWait = faults.burst
      ? Math.floor(i / Math.max(1, faults.burst.batches)) * faults.burst.pauseMs
      : 0;
    const paced = opts.requestsPerSecond ? (i * 1000) / opts.requestsPerSecond : 0;
    batches.push({
      index: i,
      events: sequence.slice(i * batchSize, (i + 1) * batchSize),
      notBefore: Math.max(burstWait, paced),
      delayMs: faults.maxDelayMs ? timing.int(faults.maxDelayMs + 1) : 0,
    });
  }

  const client = opts.client;
  const statuses: Record<string, number> = {};
  const hist = createHistogram();
  const acked = new Set<string>();
  const total = sequence.length;
  let sentEvents = 0;
  const report = { requests: 0, retries: 0, accepted: 0, duplicatesAnswered: 0, failed: 0 };
  const count = (k: string) => {
    statuses[k] = (statuses[k] ?? 0) + 1;
  };

  const sendBatch = async (batch: Batch) => {
    const rng = new Rng((faults.seed ?? 1) + batch.index * 7919);
    const body = { events: batch.events };
    for (let attempt = 1; attempt <= retry.maxAttempts; attempt++) {
      if (opts.signal?.aborted) break;
      report.requests++;
      if (attempt > 1) report.retries++;
      const t0 = process.hrtime.bigint();
      let wait: number | undefined;
      try {
        const res = await client.send<{ accepted?: number; duplicates?: number }>('POST', EVENTS_PATH, {
          scope: EVENTS_WRITE_SCOPE,
          body,
        });
        const dt = process.hrtime.bigint() - t0;
        const ok = res.status >= 200 && res.status < 300;
        // An answer whose signature does not verify proves nothing was stored: send again.
        if (ok && res.signatureValid !== false) {
          count(String(res.status));
          hist.record(dt > 0n ? dt : 1n);
          report.accepted += res.body?.accepted ?? 0;
          report.duplicatesAnswered += res.body?.duplicates ?? 0;
          for (const e of batch.events) acked.add(e.eventId);
          sentEvents += batch.events.length;
          opts.onProgress?.(sentEvents, total);
          return;
        }
        count(ok ? 'bad-signature' : String(res.status));
        if (res.status === 429 || res.status === 503) {
          const ra = retryAfterMs(res.headers['retry-after']);
          if (ra !== undefined) wait = Math.min(ra, retry.maxRetryAfterMs);
        }
      } catch {
        count('error');
      }
      if (attempt === retry.maxAttempts) break;
      // Full jitter (Standard Webhooks leaves the schedule to the sender): uniform in [0, ceiling].
      wait ??= rng.int(Math.min(retry.maxMs, retry.baseMs * 2 ** (attempt - 1)) + 1);
      await sleep(wait, opts.signal);
    }
    report.failed += batch.events.length;
  };

  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < batches.length) {
      const batch = batches[next++]!;
      if (opts.signal?.aborted) {
        report.failed += batch.events.length;
        continue;
      }
      await sleep(batch.notBefore - (performance.now() - started), opts.signal);
      await sleep(batch.delayMs, opts.signal);
      await sendBatch(batch);
    }
  };
  if (batches.length > 0) {
    // One token for every worker (a cold cache would ask the token endpoint once per worker).
    await client.token(EVENTS_WRITE_SCOPE).catch(() => undefined);
  }
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(opts.concurrency ?? 8, batches.length || 1)) }, worker),
  );
  const seconds = (performance.now() - started) / 1000;
  const ms = (ns: number) => Math.round((ns / 1e6) * 100) / 100;
  const any = hist.count > 0;
  return {
    events: events.length,
    dropped: dropped.length,
    delivered: acked.size,
    duplicatesSent,
    failed: report.failed,
    requests: report.requests,
    retries: report.retries,
    statuses,
    accepted: report.accepted,
    duplicatesAnswered: report.duplicatesAnswered,
    ackP50ms: any ? ms(hist.percentile(50)) : 0,
    ackP99ms: any ? ms(hist.percentile(99)) : 0,
    ackMaxms: any ? ms(hist.max) : 0,
    seconds: Math.round(seconds * 100) / 100,
    eventsPerSecond: Math.round(sentEvents / Math.max(seconds, 0.001)),
  };
}
