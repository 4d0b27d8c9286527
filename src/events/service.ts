/**
 * Partner events in (contract §9, issue 5), as one object per app:
 *
 *   deliver()  the route's path: check the batch, store it in one transaction, answer; then (not
 *              awaited by the partner) wake the processor, which also moves the partners' cursors;
 *   start()    the background work of an instance: the processor (woken at once by this instance's
 *              stores, and sweeping every `processorIntervalMs` for what other instances left), the
 *              cursors of partners with gaps, and due backfills;
 *   processAll(), backfillDue(), advance()  the same steps, driven by tests and tools.
 *
 * Processing inline in the request would make the partner's acknowledgement wait for the journal and
 * device health; the contract only promises "2xx = stored durably", so the answer waits for the insert
 * alone and processing follows within milliseconds on the same instance.
 */
import type { Config } from '../config/config.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import type { Logger } from '../logger.ts';
import { counter, gauge } from '../metrics/registry.ts';
import type { Outbound } from '../outbound/outbound.ts';
import type { PartnerDirectory, PartnerInfo } from '../partners/partner-directory.ts';
import { type BackfillOutcome, backfillPartner, runDueBackfills } from './backfill.ts';
import { advanceCursor, CursorAdvancer, type CursorRow } from './cursor.ts';
import type { DeviceEventSink, PartnerEvent } from './model.ts';
import { BatchFailedError, processBatch } from './processor.ts';
import { PseudonymResolver } from './pseudonyms.ts';
import { SingleEventWriter } from './single-writer.ts';
import {
  EventConflictError,
  eventsConflict,
  type PreparedEvent,
  prepareBatch,
  purgeInbox,
  type StoreResult,
  storePrepared,
} from './store.ts';

export const processingFailures = counter(
  'smart_home_events_processing_failures_total',
  'Stored events whose processing failed alone (set aside for SMART_HOME_EVENTS_FAILED_RETRY_MS, then retried)',
  ['partner'],
);

export const processorLag = gauge(
  'smart_home_events_processor_lag_seconds',
  'Age of the oldest stored event not yet processed (0: none waiting)',
);

const busyPauses = counter(
  'smart_home_events_processor_busy_pauses_total',
  'Pauses the processor made between batches of a backlog while deliveries were being answered (SMART_HOME_EVENTS_PROCESSOR_BUSY_PAUSE_MS)',
);

/** The SMART_HOME_EVENTS_* options, and how often the inbox is purged (SMART_HOME_HOUSEKEEPING_MS). */
export type EventOptions = Config['events'] & { purgeEveryMs: number };

export interface EventServiceDeps {
  db: Db;
  cipher: FieldCipher;
  directory: () => PartnerDirectory;
  outbound?: Outbound | undefined;
  /** Device health (src/device-health/): gets every processed event in the processor's transaction. */
  sink?: DeviceEventSink | undefined;
  logger: Logger;
  options: EventOptions;
}

export class EventService {
  readonly #deps: EventServiceDeps;
  readonly #resolver: PseudonymResolver;
  readonly #cursors: CursorAdvancer;
  readonly #single: SingleEventWriter;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #started = false;
  #wake = false;
  #failing = false;
  /** When the last full sweep (cursors, backfills, lag) ran, performance.now() ms. */
  #sweptAt = Number.NEGATIVE_INFINITY;
  /** Event ids that failed to process alone, until when they are not claimed (performance.now() ms). */
  readonly #setAside = new Map<string, number>();
  /** When the inbox was last purged, performance.now() ms. */
  #purgedAt = Number.NEGATIVE_INFINITY;
  /** Deliveries being answered by this instance now (see processorBusyPauseMs). */
  #delivering = 0;

  constructor(deps: EventServiceDeps) {
    this.#deps = deps;
    this.#resolver = new PseudonymResolver({
      cipher: deps.cipher,
      refreshSeconds: deps.options.pseudonymRefreshSeconds,
    });
    this.#single = new SingleEventWriter(deps.db, {
      maxGroup: deps.options.singleGroupMax,
      inFlight: deps.options.singleGroupsInFlight,
      retentionDays: deps.options.retentionDays,
    });
    this.#cursors = new CursorAdvancer(deps.db, (err) =>
      deps.logger.error({ err }, 'moving an event cursor failed'),
    );
  }

  /** Stores a delivered batch (contract §9): resolves once it is durably stored. */
  async deliver(partner: PartnerInfo, events: readonly PartnerEvent[]): Promise<StoreResult> {
    this.#delivering++;
    try {
      return await this.#deliver(partner, events);
    } finally {
      this.#delivering--;
    }
  }

  async #deliver(partner: PartnerInfo, events: readonly PartnerEvent[]): Promise<StoreResult> {
    let prepared: PreparedEvent[];
    try {
      prepared = prepareBatch(this.#deps.directory(), partner, events);
    } catch (err) {
      if (err instanceof EventConflictError) eventsConflict.inc({ partner: partner.id, via: 'delivery' });
      throw err;
    }
    const result =
      prepared.length === 1
        ? await this.#single.store(partner.id, prepared[0]!)
        : await storePrepared(
            this.#deps.db,
            partner.id,
            prepared,
            'delivery',
            new Date(),
            this.#deps.options.retentionDays,
          );
    if (result.accepted > 0) this.kick();
    return result;
  }

  /** Wakes the processor now (when started). */
  kick(): void {
    if (!this.#started) return;
    this.#wake = true;
    if (!this.#running) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#tick();
    }
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    this.#tick();
  }

  /** Stops after the batch in progress (if any) has committed. */
  async stop(): Promise<void> {
    this.#started = false;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#running;
    await this.#cursors.idle();
  }

  #tick(): void {
    this.#timer = undefined;
    this.#running = (async () => {
      this.#wake = false;
      try {
        // Bounded to one interval, so that a backlog that outlasts it does not starve the sweep below
        // (gaps, backfills, the lag gauge); the next round then starts at once.
        await this.processAll(performance.now() + this.#deps.options.processorIntervalMs);
        // A wake-up by this instance's stores processes only; the rest runs once per interval, however
        // many stores woke the processor in between.
        if (performance.now() - this.#sweptAt >= this.#deps.options.processorIntervalMs) {
          this.#sweptAt = performance.now();
          await this.#sweepCursors();
          await this.backfillDue();
          await this.#measureLag();
        }
        if (performance.now() - this.#purgedAt >= this.#deps.options.purgeEveryMs) {
          this.#purgedAt = performance.now();
          await this.purge();
        }
        if (this.#failing) this.#deps.logger.info('event processor recovered');
        this.#failing = false;
      } catch (err) {
        if (!this.#failing) this.#deps.logger.error({ err }, 'event processing failed; retrying');
        this.#failing = true;
      }
    })().finally(() => {
      this.#running = undefined;
      if (!this.#started) return;
      const delay = this.#wake && !this.#failing ? 0 : this.#deps.options.processorIntervalMs;
      this.#timer = setTimeout(() => this.#tick(), delay);
      this.#timer.unref();
    });
  }

  /**
   * Processes batches until none is left to claim (or `deadline`, performance.now() ms, has passed),
   * then moves the cursors of the partners whose events it processed (once per partner per round, not
   * once per store: under load a round holds many stores); resolves with how many events.
   */
  async processAll(deadline = Number.POSITIVE_INFINITY): Promise<number> {
    const deps = {
      resolver: this.#resolver,
      sink: this.#deps.sink,
      options: {
        batchSize: this.#deps.options.processorBatch,
        staleAfterSeconds: this.#deps.options.staleAfterSeconds,
      },
    };
    let total = 0;
    const partners = new Set<string>();
    // After a failed batch: how many claims to make one event at a time, to find the one at fault.
    let alone = 0;
    for (;;) {
      const now = performance.now();
      for (const [id, until] of this.#setAside) if (until <= now) this.#setAside.delete(id);
      const batchSize = alone > 0 ? 1 : this.#deps.options.processorBatch;
      let r: Awaited<ReturnType<typeof processBatch>>;
      try {
        r = await processBatch(this.#deps.db, {
          ...deps,
          options: { ...deps.options, batchSize },
          exclude: [...this.#setAside.keys()],
        });
      } catch (err) {
        if (!(err instanceof BatchFailedError) || !(await this.#databaseAnswers())) throw err;
        if (err.events.length > 1) {
          alone = err.events.length;
          continue;
        }
        const [e] = err.events;
        this.#setAside.set(e!.eventId, performance.now() + this.#deps.options.failedRetryMs);
        processingFailures.inc({ partner: e!.partnerId });
        this.#deps.logger.error(
          { err: err.cause, partnerId: e!.partnerId, eventId: e!.eventId },
          'processing an event failed; set aside and retried later',
        );
        alone--;
        continue;
      }
      total += r.processed;
      for (const p of r.partners) partners.add(p);
      if (alone > 0) {
        alone--;
        if (r.processed > 0) continue;
      }
      if (r.processed < batchSize) break;
      if (performance.now() >= deadline) {
        this.#wake = true;
        break;
      }
      // A backlog while partners are delivering: acknowledgements first (they are what partners wait
      // for; what they acknowledged is stored), the backlog between their requests.
      const pause = this.#deps.options.processorBusyPauseMs;
      if (pause > 0 && this.#delivering > 0 && this.#started) {
        busyPauses.inc();
        await new Promise((r) => setTimeout(r, pause));
      }
    }
    for (const p of partners) await this.#cursors.schedule(p);
    return total;
  }

  /** Whether a failure was the database's (then everything waits) or the batch's own. */
  async #databaseAnswers(): Promise<boolean> {
    try {
      await this.#deps.db.query(sql`select 1`);
      return true;
    } catch {
      return false;
    }
  }

  /** Deletes events past their retention (SMART_HOME_EVENTS_RETENTION_DAYS); resolves with how many. */
  async purge(): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await purgeInbox(this.#deps.db, this.#deps.options.retentionDays);
      total += n;
      if (n === 0) break;
    }
    if (total > 0)
      this.#deps.logger.info({ events: total }, 'events past their retention deleted from the inbox');
    return total;
  }

  /** Moves a partner's cursor now (tests and operators; stores schedule it themselves). */
  advance(partnerId: string): Promise<CursorRow> {
    return advanceCursor(this.#deps.db, partnerId);
  }

  /** Runs the backfills that are due; `partnerId` forces that partner's now, whatever its schedule. */
  async backfillDue(partnerId?: string): Promise<BackfillOutcome[]> {
    const deps = {
      db: this.#deps.db,
      directory: this.#deps.directory,
      outbound: this.#deps.outbound,
      options: {
        gapGraceMs: this.#deps.options.gapGraceMs,
        limit: this.#deps.options.backfillLimit,
        minBackoffMs: this.#deps.options.backfillMinBackoffMs,
        maxBackoffMs: this.#deps.options.backfillMaxBackoffMs,
        leaseMs: this.#deps.options.backfillLeaseMs,
        retentionDays: this.#deps.options.retentionDays,
      },
      onStored: () => this.kick(),
    };
    if (partnerId) {
      const r = await backfillPartner(deps, partnerId, { ignoreSchedule: true });
      return r ? [r] : [];
    }
    const outcomes = await runDueBackfills(deps);
    for (const r of outcomes) {
      if (r.error) {
        this.#deps.logger.warn(
          { partnerId: r.partnerId, outcome: r.outcome, stored: r.stored, error: r.error },
          'event gap backfill incomplete',
        );
      }
    }
    return outcomes;
  }

  /** Cursors with a gap are re-walked each sweep: a store another instance made may have closed it. */
  async #sweepCursors(): Promise<void> {
    const rows = await this.#deps.db.query<{ partner_id: string }>(
      sql`select partner_id::text as partner_id from event_cursors where max_seen > contiguous`,
    );
    for (const r of rows) await this.#cursors.schedule(r.partner_id);
  }

  async #measureLag(): Promise<void> {
    const r = await this.#deps.db.one<{ oldest: Date | null }>(
      sql`select min(received_at) as oldest from event_inbox where processed_at is null`,
    );
    processorLag.set(r?.oldest ? Math.max(0, (Date.now() - new Date(r.oldest).getTime()) / 1000) : 0);
  }
}
