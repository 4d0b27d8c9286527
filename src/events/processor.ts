/**
 * The event processor (issue 5, "then processed"): claims unprocessed inbox rows with
 * `for update skip locked` (several instances share the work, none waits on another's batch) and, in
 * ONE transaction per batch, journals them, hands them to device health and marks them processed — so
 * an event's journal entry, its health effect and its processed mark commit together, exactly once. A
 * batch that fails rolls back whole and is claimed again by the next sweep.
 *
 * Journal entries: one per access event (`event.access.granted`, `event.access.denied`) and per status
 * (`event.device.status`), actor the partner, the device by our internal id, the subject as the
 * resident's INTERNAL id resolved from the pseudonym (contract §7) — never the pseudonym itself; a
 * pseudonym that resolves to no resident is journaled with `subject_type` `unresolved` and no id.
 *
 * Heartbeats are NOT journaled one by one: a device sends one every 30 s (contract §9), which would
 * be 2,880 Merkle-log leaves per device per day saying nothing but "alive". They are stored in the
 * inbox and go to device health like every event; what they change (a device going offline or coming
 * back) is journaled by device health as it happens.
 */
import type { Db, Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { JOURNAL_COLUMNS } from '../journal/journal.ts';
import { uuidv7 } from '../util/uuid.ts';
import type { DeviceEventSink, EventVia, PartnerEvent, StoredEvent } from './model.ts';
import type { PseudonymResolver } from './pseudonyms.ts';

export interface ProcessorOptions {
  batchSize: number;
  staleAfterSeconds: number;
}

/** A batch failed after its rows were claimed (rolled back): which events it held. */
export class BatchFailedError extends Error {
  readonly events: readonly { partnerId: string; eventId: string }[];
  constructor(events: readonly { partnerId: string; eventId: string }[], cause: unknown) {
    super('processing a batch of events failed', { cause });
    this.events = events;
  }
}

type InboxRow = {
  partner_id: string;
  event_id: string;
  seq: number;
  type: PartnerEvent['type'];
  occurred_at: Date;
  received_at: Date;
  device_external_id: string;
  device_id: string;
  method: PartnerEvent['method'];
  subject: string | null;
  status: PartnerEvent['status'];
  via: EventVia;
};

/** The journal action of an event type, or undefined for the ones not journaled one by one. */
export function journalAction(type: PartnerEvent['type']): string | undefined {
  switch (type) {
    case 'access.granted':
      return 'event.access.granted';
    case 'access.denied':
      return 'event.access.denied';
    case 'device.status':
      return 'event.device.status';
    case 'device.heartbeat':
      return undefined;
  }
}

function resultOf(e: StoredEvent): string {
  if (e.type === 'access.granted') return 'granted';
  if (e.type === 'access.denied') return 'denied';
  return e.status ?? 'unknown';
}

const toDate = (v: Date | string) => (v instanceof Date ? v : new Date(v));

/**
 * Processes one batch; resolves with how many events it processed (0: nothing was waiting, or every
 * waiting row is being processed by another instance) and the partners they came from.
 */
export async function processBatch(
  db: Db,
  deps: {
    resolver: PseudonymResolver;
    sink?: DeviceEventSink | undefined;
    options: ProcessorOptions;
    /** Event ids not to claim (set aside after failing alone, see EventService). */
    exclude?: readonly string[];
  },
): Promise<{ processed: number; partners: Set<string> }> {
  return db.transaction(async (tx) => {
    // The claim walks the partial index in received_at order and stops after batchSize rows. The
    // inbox grows by thousands of rows a second in a burst, faster than its statistics are refreshed;
    // estimating a few hundred unprocessed rows, the planner then picks a bitmap scan of ALL of them and
    // a sort (measured: 130–185 ms per claim at 85k unprocessed, against 1–8 ms for the index walk).
    // The claim is never better served by a bitmap scan, so none is considered in this transaction.
    await tx.query(sql`set local enable_bitmapscan = off`);
    const rows = await tx.query<InboxRow>(
      sql`select partner_id::text as partner_id, event_id::text as event_id, seq, type, occurred_at, received_at,
            device_external_id, device_id::text as device_id, method, subject, status, via
          from event_inbox where processed_at is null and event_id <> all(${deps.exclude ?? []}::uuid[])
          order by received_at limit ${deps.options.batchSize}
          for update skip locked`.named('event_inbox_claim'),
    );
    if (rows.length === 0) return { processed: 0, partners: new Set<string>() };
    try {
      return await applyBatch(tx, rows, deps);
    } catch (err) {
      throw new BatchFailedError(
        rows.map((r) => ({ partnerId: r.partner_id, eventId: r.event_id })),
        err,
      );
    }
  });
}

async function applyBatch(
  tx: Queryable,
  rows: InboxRow[],
  deps: { resolver: PseudonymResolver; sink?: DeviceEventSink | undefined; options: ProcessorOptions },
): Promise<{ processed: number; partners: Set<string> }> {
  rows.sort((a, b) => (a.partner_id < b.partner_id ? -1 : a.partner_id > b.partner_id ? 1 : a.seq - b.seq));
  const events = await toStoredEvents(tx, rows, deps.resolver, deps.options.staleAfterSeconds);
  await journalEvents(tx, events);
  if (deps.sink && events.length > 0) await deps.sink.apply(tx, events);
  await tx.query(
    sql`update event_inbox i set processed_at = clock_timestamp()
        from unnest(${rows.map((r) => r.partner_id)}::uuid[], ${rows.map((r) => r.event_id)}::uuid[]) as x(p, e)
        where i.partner_id = x.p and i.event_id = x.e`.named('event_inbox_processed'),
  );
  return { processed: rows.length, partners: new Set(rows.map((r) => r.partner_id)) };
}

async function toStoredEvents(
  tx: Queryable,
  rows: readonly InboxRow[],
  resolver: PseudonymResolver,
  staleAfterSeconds: number,
): Promise<StoredEvent[]> {
  const subjects = new Map<string, Set<string>>();
  for (const r of rows) {
    if (r.subject === null) continue;
    const set = subjects.get(r.partner_id) ?? new Set<string>();
    set.add(r.subject);
    subjects.set(r.partner_id, set);
  }
  const resolved = new Map<string, Map<string, string | null>>();
  for (const [partnerId, set] of subjects)
    resolved.set(partnerId, await resolver.resolve(tx, partnerId, set));
  return rows.map((r): StoredEvent => {
    const occurredAt = toDate(r.occurred_at);
    const receivedAt = toDate(r.received_at);
    const skewMs = receivedAt.getTime() - occurredAt.getTime();
    return {
      partnerId: r.partner_id,
      eventId: r.event_id,
      seq: Number(r.seq),
      type: r.type,
      occurredAt,
      receivedAt,
      deviceId: r.device_id,
      deviceExternalId: r.device_external_id,
      method: r.method,
      subject: r.subject,
      residentId: r.subject === null ? null : (resolved.get(r.partner_id)?.get(r.subject) ?? null),
      status: r.status,
      skewMs,
      stale: skewMs > staleAfterSeconds * 1000,
      via: r.via,
    };
  });
}

/** One multi-row INSERT for the batch's journal entries (heartbeats excepted, see above). */
async function journalEvents(tx: Queryable, events: readonly StoredEvent[]): Promise<void> {
  const entries = events.flatMap((e) => {
    const action = journalAction(e.type);
    if (!action) return [];
    const unresolved = e.subject !== null && e.residentId === null;
    return [
      {
        id: uuidv7(),
        action,
        partnerId: e.partnerId,
        deviceId: e.deviceId,
        subjectType: e.residentId ? 'resident' : unresolved ? 'unresolved' : null,
        subjectId: e.residentId,
        result: resultOf(e),
        // Internal ids and codes only: the pseudonym stays in the inbox (issue 5, contract §7).
        details: JSON.stringify({
          eventId: e.eventId,
          seq: e.seq,
          method: e.method,
          result: resultOf(e),
          occurredAt: e.occurredAt.toISOString(),
          receivedAt: e.receivedAt.toISOString(),
          skewMs: e.skewMs,
          via: e.via ?? 'delivery',
          stale: e.stale,
          ...(unresolved ? { subject: 'unresolved' } : {}),
        }),
      },
    ];
  });
  if (entries.length === 0) return;
  await tx.query(
    sql`insert into journal (${JOURNAL_COLUMNS})
        select x.id, 'partner', x.partner_id::text, x.action, x.partner_id, x.device_id, x.subject_type, x.subject_id,
          x.result, null, x.details::jsonb
        from unnest(${entries.map((e) => e.id)}::uuid[], ${entries.map((e) => e.action)}::text[],
          ${entries.map((e) => e.partnerId)}::uuid[], ${entries.map((e) => e.deviceId)}::uuid[],
          ${entries.map((e) => e.subjectType)}::text[], ${entries.map((e) => e.subjectId)}::text[],
          ${entries.map((e) => e.result)}::text[], ${entries.map((e) => e.details)}::text[])
          as x(id, action, partner_id, device_id, subject_type, subject_id, result, details)`.named(
      'event_journal_insert',
    ),
  );
}
