import { createHash } from 'node:crypto';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { AppError } from '../errors.ts';
import { JOURNAL_COLUMNS } from '../journal/journal.ts';
import type { DeviceInfo, PartnerInfo } from '../partners/partner-directory.ts';
import { uuidv7 } from '../util/uuid.ts';

export interface DecisionRequest {
  eventId: string;
  capturedAt: string;
  direction: 'entry' | 'exit';
  candidates: Array<{ kid: string; token: string; confidence: number }>;
}

export type DecisionReason =
  | 'resident_vehicle'
  | 'guest_pass'
  | 'not_registered'
  | 'pass_not_valid_now'
  | 'barrier_disabled';

export interface DecisionResponse {
  decisionId: string;
  eventId: string;
  decision: 'open' | 'deny';
  reason: DecisionReason;
  decidedAt: string;
}

/** Contract §6: a read older than 30 s, or more than 5 s ahead of our clock, is not acted upon. */
export const STALE_AFTER_MS = 30_000;
export const FUTURE_TOLERANCE_MS = 5_000;
/** Contract §6: a repeated eventId within 24 h gets the first answer. */
export const IDEMPOTENCY_MS = 86_400_000;

/** Hash of the request's content, independent of key order and white space, for idempotent retries. */
export function requestHash(barrierId: string, body: DecisionRequest): string {
  const canonical = JSON.stringify([
    barrierId,
    body.eventId,
    body.capturedAt,
    body.direction,
    body.candidates.map((c) => [c.kid, c.token, c.confidence]),
  ]);
  return createHash('sha256').update(canonical).digest('base64url');
}

interface Lookup {
  prior: { request_hash: string; response: DecisionResponse } | null;
  resident_id: string | null;
  pass: { id: string; valid_now: boolean } | null;
}

/** Deletes idempotency records past the contract's 24 h (the decisions stay in the journal). */
export async function purgeIdempotencyRecords(db: Db, now = new Date()): Promise<number> {
  const rows = await db.query(
    sql`delete from barrier_decisions where created_at < ${new Date(now.getTime() - IDEMPOTENCY_MS)} returning event_id`,
  );
  return rows.length;
}

const parse = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));

interface Pending {
  partner: PartnerInfo;
  device: DeviceInfo;
  body: DecisionRequest;
  requestId: string;
  hash: string;
  resolve(d: DecisionResponse): void;
  reject(err: unknown): void;
  /** Requests for the same event that arrived in the same batch wait for this one's answer. */
  followers: Pending[];
}

interface Write {
  item: Pending;
  decision: DecisionResponse;
  subjectType: 'resident' | 'pass' | null;
  subjectId: string | null;
}

export interface BarrierDeciderOptions {
  /** Most decisions looked up and written together in one pair of statements. */
  maxBatch?: number;
  /** Batches in flight at once (each holds one pooled connection while it runs). */
  maxInFlight?: number;
  now?: () => Date;
}

/**
 * Decides whether a barrier opens for a plate read (contract §6).
 *
 * Concurrent decisions are grouped: each batch costs two statements whatever its size — one look-up
 * (idempotency records and both kinds of match for every request) and one write whose CTEs insert the
 * idempotency records and, for exactly the records that were inserted, the journal entries. A
 * decision is therefore recorded with its journal entry or not at all; of two racing retries of one
 * event exactly one is journaled and both get the same answer. Under light load a batch is a single
 * request, so batching adds no waiting: a request joins the queue only while earlier batches run.
 */
export function createBarrierDecider(db: Db, opts: BarrierDeciderOptions = {}) {
  const maxBatch = opts.maxBatch ?? 64;
  const maxInFlight = opts.maxInFlight ?? 1;
  const now = opts.now ?? (() => new Date());
  const queue: Pending[] = [];
  let inFlight = 0;

  const pump = () => {
    while (inFlight < maxInFlight && queue.length > 0) {
      const batch = queue.splice(0, maxBatch);
      inFlight++;
      runBatch(db, batch, now())
        .catch((err) => {
          for (const p of batch) p.reject(err);
        })
        .finally(() => {
          inFlight--;
          pump();
        });
    }
  };

  return {
    decide(
      partner: PartnerInfo,
      device: DeviceInfo,
      body: DecisionRequest,
      requestId: string,
    ): Promise<DecisionResponse> {
      for (const c of body.candidates) {
        if (!partner.plateKids.has(c.kid))
          return Promise.reject(new AppError('invalid-request', 'unknown plate key id'));
      }
      return new Promise((resolve, reject) => {
        queue.push({
          partner,
          device,
          body,
          requestId,
          hash: requestHash(device.externalId, body),
          resolve,
          reject,
          followers: [],
        });
        pump();
      });
    },
  };
}

function settle(p: Pending, outcome: { ok: DecisionResponse } | { err: unknown }): void {
  for (const x of [p, ...p.followers]) {
    if ('ok' in outcome) {
      if (x === p || x.hash === p.hash) x.resolve(outcome.ok);
      else x.reject(new AppError('event-conflict'));
    } else x.reject(outcome.err);
  }
}

function priorAnswer(prior: NonNullable<Lookup['prior']>, hash: string): DecisionResponse {
  if (prior.request_hash !== hash) throw new AppError('event-conflict');
  return parse<DecisionResponse>(prior.response);
}

async function runBatch(db: Db, all: Pending[], at: Date): Promise<void> {
  // One event answered once per batch: later copies follow the first.
  const leaders: Pending[] = [];
  const byEvent = new Map<string, Pending>();
  for (const p of all) {
    const key = `${p.partner.id}|${p.body.eventId}`;
    const first = byEvent.get(key);
    if (first) first.followers.push(p);
    else {
      byEvent.set(key, p);
      leaders.push(p);
    }
  }

  const c = { item: [] as number[], idx: [] as number[], kid: [] as string[], token: [] as string[] };
  leaders.forEach((p, i) => {
    p.body.candidates.forEach((cand, j) => {
      c.item.push(i);
      c.idx.push(j);
      c.kid.push(cand.kid);
      c.token.push(cand.token);
    });
  });
  const since = new Date(at.getTime() - IDEMPOTENCY_MS);
  const rows = await db.query<{ i: number; prior: unknown; resident_id: string | null; pass: unknown }>(
    sql`
    with items as (
      select * from unnest(${leaders.map((_, i) => i)}::int[], ${leaders.map((p) => p.partner.id)}::uuid[],
        ${leaders.map((p) => p.body.eventId)}::uuid[], ${leaders.map((p) => p.device.id)}::uuid[],
        ${leaders.map((p) => p.device.complexId)}::uuid[], ${leaders.map((p) => p.device.buildingId)}::uuid[],
        ${leaders.map((p) => p.device.entranceId)}::uuid[])
        as i(i, partner_id, event_id, device_id, complex_id, building_id, entrance_id)
    ), cands as (
      select * from unnest(${c.item}::int[], ${c.idx}::int[], ${c.kid}::text[], ${c.token}::text[]) as c(item, idx, kid, token)
    )
    select i.i,
      (select json_build_object('request_hash', bd.request_hash, 'response', bd.response) from barrier_decisions bd
        where bd.partner_id = i.partner_id and bd.event_id = i.event_id and bd.created_at > ${since}) as prior,
      -- A resident may pass when one of their apartments lies inside the barrier's scope (complex,
      -- building or entrance). Candidates are OCR hypotheses, best first: the earliest match wins.
      -- The plan starts from the 1–3 candidates (LATERAL index look-ups), whatever the statistics say.
      (select v.resident_id
        from cands c
        cross join lateral (select pt.vehicle_id from plate_tokens pt
          where pt.partner_id = i.partner_id and pt.kid = c.kid and pt.token = c.token and pt.vehicle_id is not null) pt
        join vehicles v on v.id = pt.vehicle_id
        where c.item = i.i and exists (select 1 from resident_apartments ra
          join apartments a on a.id = ra.apartment_id
          join entrances e on e.id = a.entrance_id
          join buildings b on b.id = e.building_id
          where ra.resident_id = v.resident_id and b.complex_id = i.complex_id
            and (i.building_id is null or b.id = i.building_id)
            and (i.entrance_id is null or e.id = i.entrance_id))
        order by c.idx limit 1) as resident_id,
      -- A guest pass opens only the barriers it names, only inside its window, only while not revoked.
      (select json_build_object('id', gp.id,
          'valid_now', gp.revoked_at is null and gp.valid_from <= ${at} and gp.valid_until > ${at})
        from cands c
        cross join lateral (select pt.pass_id from plate_tokens pt
          where pt.partner_id = i.partner_id and pt.kid = c.kid and pt.token = c.token and pt.pass_id is not null) pt
        join guest_passes gp on gp.id = pt.pass_id
        where c.item = i.i
          and exists (select 1 from guest_pass_devices gpd where gpd.pass_id = gp.id and gpd.device_id = i.device_id)
        order by (gp.revoked_at is null and gp.valid_from <= ${at} and gp.valid_until > ${at}) desc, c.idx
        limit 1) as pass
    from items i`.named('barrier_lookup'),
  );

  const writes: Write[] = [];
  for (const r of rows) {
    const p = leaders[r.i]!;
    try {
      const lookup: Lookup = {
        prior: r.prior ? parse<Lookup['prior']>(r.prior) : null,
        resident_id: r.resident_id,
        pass: r.pass ? parse<Lookup['pass']>(r.pass) : null,
      };
      if (lookup.prior) {
        settle(p, { ok: priorAnswer(lookup.prior, p.hash) });
        continue;
      }
      const captured = Date.parse(p.body.capturedAt);
      if (captured < at.getTime() - STALE_AFTER_MS || captured > at.getTime() + FUTURE_TOLERANCE_MS) {
        throw new AppError(
          'stale-event',
          'capturedAt is outside the accepted window (30 s behind, 5 s ahead)',
        );
      }
      writes.push(decide(p, lookup, at));
    } catch (err) {
      settle(p, { err });
    }
  }
  if (writes.length === 0) return;

  const w = writes;
  const inserted = await db.query<{ id: string }>(
    sql`
    with input as (
      select * from unnest(${w.map((x) => x.item.partner.id)}::uuid[], ${w.map((x) => x.item.body.eventId)}::uuid[],
        ${w.map((x) => x.item.hash)}::text[], ${w.map((x) => JSON.stringify(x.decision))}::text[],
        ${w.map((x) => x.decision.decisionId)}::uuid[], ${w.map((x) => x.item.device.id)}::uuid[],
        ${w.map((x) => x.subjectType)}::text[], ${w.map((x) => x.subjectId)}::text[],
        ${w.map((x) => x.decision.decision)}::text[], ${w.map((x) => x.item.requestId)}::text[],
        ${w.map((x) => JSON.stringify(journalDetails(x)))}::text[])
        as x(partner_id, event_id, request_hash, response, journal_id, device_id, subject_type, subject_id, result,
          request_id, details)
    ), d as (
      insert into barrier_decisions (partner_id, event_id, request_hash, response, created_at)
      select partner_id, event_id, request_hash, response::jsonb, ${at} from input
      on conflict (partner_id, event_id) do nothing
      returning partner_id, event_id
    )
    insert into journal (${JOURNAL_COLUMNS})
    select x.journal_id, 'partner', x.partner_id::text, 'barrier.decision', x.partner_id, x.device_id, x.subject_type,
      x.subject_id, x.result, x.request_id, x.details::jsonb
    from input x join d on d.partner_id = x.partner_id and d.event_id = x.event_id
    returning id`.named('barrier_record'),
  );

  const done = new Set(inserted.map((r) => r.id));
  for (const x of w) {
    if (done.has(x.decision.decisionId)) {
      settle(x.item, { ok: x.decision });
      continue;
    }
    // Another instance recorded this event between our look-up and our write: answer as it did.
    try {
      const prior = await db.one<{ request_hash: string; response: unknown }>(
        sql`select request_hash, response from barrier_decisions
            where partner_id = ${x.item.partner.id} and event_id = ${x.item.body.eventId}`,
      );
      if (!prior) throw new AppError('event-conflict');
      settle(x.item, {
        ok: priorAnswer({ request_hash: prior.request_hash, response: parse(prior.response) }, x.item.hash),
      });
    } catch (err) {
      settle(x.item, { err });
    }
  }
}

function decide(p: Pending, lookup: Lookup, at: Date): Write {
  const enabled = p.device.enabled;
  let reason: DecisionReason = 'not_registered';
  let open = false;
  let subjectType: Write['subjectType'] = null;
  let subjectId: string | null = null;
  if (!enabled) reason = 'barrier_disabled';
  else if (lookup.resident_id) {
    [reason, open, subjectType, subjectId] = ['resident_vehicle', true, 'resident', lookup.resident_id];
  } else if (lookup.pass) {
    reason = lookup.pass.valid_now ? 'guest_pass' : 'pass_not_valid_now';
    [open, subjectType, subjectId] = [lookup.pass.valid_now, 'pass', lookup.pass.id];
  }
  return {
    item: p,
    subjectType,
    subjectId,
    decision: {
      decisionId: uuidv7(at.getTime()),
      eventId: p.body.eventId,
      decision: open ? 'open' : 'deny',
      reason,
      decidedAt: at.toISOString(),
    },
  };
}

/** Internal ids and the request's shape only: no tokens, which are keyed derivatives of plates. */
function journalDetails(x: Write): Record<string, unknown> {
  return {
    eventId: x.item.body.eventId,
    reason: x.decision.reason,
    direction: x.item.body.direction,
    capturedAt: x.item.body.capturedAt,
    candidates: x.item.body.candidates.length,
  };
}
