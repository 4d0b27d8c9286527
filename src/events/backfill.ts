/**
 * Gap backfill (contract §9): a gap in a partner's `seq` that outlives the grace period is asked of the
 * partner, `GET {partnerBase}/v1/events?afterSeq=<contiguous>&limit=<≤500>`, signed both ways through the
 * outbound channel (scope `events:read` at the partner: the contract names none; see
 * docs/partner-onboarding.md). The answer — `{"events":[…]}`, the same event objects in seq order,
 * unknown fields refused — is stored through the SAME path as a delivery (via `backfill`), so a late
 * normal delivery of the same event is a duplicate and the backfill is idempotent with it.
 *
 * One instance at a time per partner: the instance whose conditional UPDATE sets the cursor's lease
 * runs it (the row lock of that UPDATE decides between instances; no connection is held while the
 * partner answers, and a crashed instance's lease expires). Failures are recorded on the cursor
 * (attempts, next attempt, last error) and retried with exponential backoff until the gap is filled; a
 * partner without an outbound endpoint is recorded and retried only at the longest backoff.
 */
import { type Static, Type as T } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { AppError } from '../errors.ts';
import { counter } from '../metrics/registry.ts';
import type { Outbound } from '../outbound/outbound.ts';
import type { PartnerDirectory } from '../partners/partner-directory.ts';
import { advanceCursor } from './cursor.ts';
import { PartnerEvent } from './model.ts';
import { prepareBatch, storePrepared } from './store.ts';

/** The scope of `GET {partnerBase}/v1/events` at the partner's authorization server. */
export const EVENTS_READ_SCOPE = 'events:read';
/** Contract §9. */
export const MAX_BACKFILL_LIMIT = 500;
/** 500 events of at most ~700 bytes each, and room to spare; a larger answer is refused. */
const MAX_ANSWER_BYTES = 1024 * 1024;

const BackfillAnswer = T.Object(
  { events: T.Array(PartnerEvent, { maxItems: MAX_BACKFILL_LIMIT }) },
  { additionalProperties: false },
);
const checkAnswer = TypeCompiler.Compile(BackfillAnswer);

export const backfills = counter(
  'smart_home_events_backfills_total',
  'Gap backfills run against partners, by outcome (filled, partial, failed, no-endpoint)',
  ['partner', 'outcome'],
);

export interface BackfillOptions {
  gapGraceMs: number;
  limit: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  leaseMs: number;
  retentionDays: number;
}

export interface BackfillDeps {
  db: Db;
  directory: () => PartnerDirectory;
  outbound: Outbound | undefined;
  options: BackfillOptions;
  /** Called after events were stored (the processor takes them at once). */
  onStored?: (partnerId: string) => void;
}

export interface BackfillOutcome {
  partnerId: string;
  outcome: 'filled' | 'partial' | 'failed' | 'no-endpoint';
  stored: number;
  error?: string;
}

/** Exponential backoff with full jitter in its upper half, bounded by [min, max]. */
export function backoffMs(attempts: number, min: number, max: number, random = Math.random): number {
  const ceiling = Math.min(max, min * 2 ** Math.min(30, Math.max(0, attempts - 1)));
  return Math.max(min, Math.round(ceiling / 2 + (random() * ceiling) / 2));
}

class BackfillError extends Error {}

/** Backfills every partner whose gap is due and not leased by another instance. */
export async function runDueBackfills(deps: BackfillDeps): Promise<BackfillOutcome[]> {
  const due = await deps.db.query<{ partner_id: string }>(
    sql`select partner_id::text as partner_id from event_cursors
        where max_seen > contiguous
          and gap_since <= clock_timestamp() - make_interval(secs => ${deps.options.gapGraceMs / 1000})
          and (backfill_next_at is null or backfill_next_at <= clock_timestamp())
          and (backfill_lease_until is null or backfill_lease_until < clock_timestamp())
        order by gap_since limit 100`,
  );
  const out: BackfillOutcome[] = [];
  for (const { partner_id } of due) {
    const r = await backfillPartner(deps, partner_id);
    if (r) out.push(r);
  }
  return out;
}

/**
 * Takes the partner's lease and fills its gap page by page; undefined when another instance holds the
 * lease or the gap is no longer due.
 */
export async function backfillPartner(
  deps: BackfillDeps,
  partnerId: string,
  opts: { ignoreSchedule?: boolean } = {},
): Promise<BackfillOutcome | undefined> {
  const o = deps.options;
  const claimed = await deps.db.one<{ contiguous: number; max_seen: number; backfill_attempts: number }>(
    sql`update event_cursors set backfill_lease_until = clock_timestamp() + make_interval(secs => ${o.leaseMs / 1000}),
          backfill_last_at = clock_timestamp()
        where partner_id = ${partnerId}::uuid and max_seen > contiguous
          and (backfill_lease_until is null or backfill_lease_until < clock_timestamp())
          and (${opts.ignoreSchedule === true}::boolean or backfill_next_at is null or backfill_next_at <= clock_timestamp())
        returning contiguous, max_seen, backfill_attempts`,
  );
  if (!claimed) return undefined;
  const target = Number(claimed.max_seen);
  let contiguous = Number(claimed.contiguous);
  let stored = 0;
  let error: string | undefined;
  let outcome: BackfillOutcome['outcome'];
  const partner = deps.directory().byId.get(partnerId);
  if (!partner?.enabled || !partner.outbound || !deps.outbound) {
    outcome = 'no-endpoint';
    error = 'the partner has no outbound endpoint registered: the gap cannot be backfilled';
  } else {
    try {
      while (contiguous < target) {
        const page = await fetchPage(deps, partnerId, contiguous);
        if (page.length === 0) throw new BackfillError(`the partner has no events after seq ${contiguous}`);
        const prepared = prepareBatch(deps.directory(), partner, page);
        const r = await storePrepared(deps.db, partnerId, prepared, 'backfill', new Date(), o.retentionDays);
        stored += r.accepted;
        if (r.accepted > 0) deps.onStored?.(partnerId);
        const next = Number((await advanceCursor(deps.db, partnerId)).contiguous);
        if (next <= contiguous) {
          throw new BackfillError(`the partner's answer does not continue seq ${contiguous}`);
        }
        contiguous = next;
        await deps.db.query(
          sql`update event_cursors set backfill_lease_until = clock_timestamp() + make_interval(secs => ${o.leaseMs / 1000})
              where partner_id = ${partnerId}::uuid`,
        );
      }
      outcome = 'filled';
    } catch (err) {
      outcome = stored > 0 ? 'partial' : 'failed';
      error = describe(err);
    }
  }
  const attempts = outcome === 'filled' ? 0 : Number(claimed.backfill_attempts) + 1;
  const wait =
    outcome === 'no-endpoint' ? o.maxBackoffMs : backoffMs(attempts, o.minBackoffMs, o.maxBackoffMs);
  await deps.db.query(
    sql`update event_cursors set backfill_lease_until = null,
          backfill_attempts = case when max_seen <= contiguous then 0 else ${attempts}::int end,
          backfill_next_at = case when max_seen <= contiguous or ${outcome === 'filled'}::boolean then null
            else clock_timestamp() + make_interval(secs => ${wait / 1000}) end,
          backfill_last_error = case when max_seen <= contiguous or ${outcome === 'filled'}::boolean then null
            else ${error ?? null}::text end,
          updated_at = clock_timestamp()
        where partner_id = ${partnerId}::uuid`,
  );
  backfills.inc({ partner: partnerId, outcome });
  return { partnerId, outcome, stored, ...(error ? { error } : {}) };
}

async function fetchPage(
  deps: BackfillDeps,
  partnerId: string,
  afterSeq: number,
): Promise<Static<typeof BackfillAnswer>['events']> {
  const limit = Math.min(MAX_BACKFILL_LIMIT, deps.options.limit);
  const answer = await deps.outbound!.send(
    partnerId,
    'GET',
    `/v1/events?afterSeq=${afterSeq}&limit=${limit}`,
    {
      scope: EVENTS_READ_SCOPE,
      maxResponseBytes: MAX_ANSWER_BYTES,
    },
  );
  if (answer.status !== 200) throw new BackfillError(`the partner answered ${answer.status}`);
  let body: unknown;
  try {
    body = JSON.parse(answer.body.toString('utf8'));
  } catch {
    throw new BackfillError('the partner’s answer is not JSON');
  }
  if (!checkAnswer.Check(body)) {
    const first = checkAnswer.Errors(body).First();
    throw new BackfillError(
      `the partner’s answer does not match contract §9${first ? ` (${first.path})` : ''}`,
    );
  }
  const events = body.events;
  if (events.length > limit) throw new BackfillError('the partner answered more events than asked');
  let prev = afterSeq;
  for (const e of events) {
    if (e.seq <= prev) throw new BackfillError('the partner’s events are not in seq order after afterSeq');
    prev = e.seq;
  }
  return events;
}

/** The error as recorded on the cursor: our own codes and messages, never a partner's body. */
function describe(err: unknown): string {
  if (err instanceof BackfillError) return err.message;
  if (err instanceof AppError) return `${err.code}: ${err.message}`;
  const code = (err as { code?: unknown })?.code;
  const msg = err instanceof Error ? err.message : String(err);
  return `${typeof code === 'string' ? `${code}: ` : ''}${msg}`.slice(0, 500);
}
