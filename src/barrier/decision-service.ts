import { createHash } from 'node:crypto';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { AppError } from '../errors.ts';
import { JOURNAL_COLUMNS, journalValues } from '../journal/journal.ts';
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

interface Match {
  subjectType: 'resident' | 'pass';
  subjectId: string;
  reason: DecisionReason;
  validNow: boolean;
}

interface Lookup {
  prior: { request_hash: string; response: DecisionResponse } | null;
  resident_id: string | null;
  pass: { id: string; valid_now: boolean } | null;
}

const parse = <T>(v: unknown): T => (typeof v === 'string' ? (JSON.parse(v) as T) : (v as T));

/**
 * Decides whether a barrier opens for a plate read (contract §6) in two database round trips: one
 * read (the idempotency record and both kinds of match), one write. The write is a single statement
 * whose CTEs insert the idempotency record and, only if that insert happened, the journal entry — so
 * a decision is recorded with its journal entry or not at all, and of two racing retries exactly one
 * is journaled while both get the same answer.
 */
export async function decideBarrier(
  db: Db,
  partner: PartnerInfo,
  device: DeviceInfo,
  body: DecisionRequest,
  requestId: string,
  now = new Date(),
): Promise<DecisionResponse> {
  for (const c of body.candidates) {
    if (!partner.plateKids.has(c.kid)) throw new AppError('invalid-request', 'unknown plate key id');
  }
  const hash = requestHash(device.externalId, body);
  const kids = body.candidates.map((c) => c.kid);
  const tokens = body.candidates.map((c) => c.token);
  const since = new Date(now.getTime() - IDEMPOTENCY_MS);

  const found = (await db.one<Record<string, unknown>>(
    sql`
    select
      (select json_build_object('request_hash', request_hash, 'response', response) from barrier_decisions
        where partner_id = ${partner.id} and event_id = ${body.eventId} and created_at > ${since}) as prior,
      -- A resident may pass when one of their apartments lies inside the barrier's scope (complex,
      -- building or entrance). Candidates are OCR hypotheses, best first: the earliest match wins.
      -- The plan is pinned to start from the 1–3 candidates (LATERAL index look-ups), whatever the
      -- table statistics say.
      (select v.resident_id
        from unnest(${kids}::text[], ${tokens}::text[]) with ordinality as c(kid, token, idx)
        cross join lateral (select pt.vehicle_id from plate_tokens pt
          where pt.partner_id = ${partner.id} and pt.kid = c.kid and pt.token = c.token and pt.vehicle_id is not null) pt
        join vehicles v on v.id = pt.vehicle_id
        where exists (select 1 from resident_apartments ra
          join apartments a on a.id = ra.apartment_id
          join entrances e on e.id = a.entrance_id
          join buildings b on b.id = e.building_id
          where ra.resident_id = v.resident_id and b.complex_id = ${device.complexId}
            and (${device.buildingId}::uuid is null or b.id = ${device.buildingId}::uuid)
            and (${device.entranceId}::uuid is null or e.id = ${device.entranceId}::uuid))
        order by c.idx limit 1) as resident_id,
      -- A guest pass opens only the barriers it names, only inside its window, only while not revoked.
      (select json_build_object('id', gp.id,
          'valid_now', gp.revoked_at is null and gp.valid_from <= ${now} and gp.valid_until > ${now})
        from unnest(${kids}::text[], ${tokens}::text[]) with ordinality as c(kid, token, idx)
        cross join lateral (select pt.pass_id from plate_tokens pt
          where pt.partner_id = ${partner.id} and pt.kid = c.kid and pt.token = c.token and pt.pass_id is not null) pt
        join guest_passes gp on gp.id = pt.pass_id
        where exists (select 1 from guest_pass_devices gpd where gpd.pass_id = gp.id and gpd.device_id = ${device.id})
        order by (gp.revoked_at is null and gp.valid_from <= ${now} and gp.valid_until > ${now}) desc, c.idx
        limit 1) as pass`.named('barrier_lookup'),
  ))!;
  const lookup: Lookup = {
    prior: found['prior'] ? parse<Lookup['prior']>(found['prior']) : null,
    resident_id: (found['resident_id'] as string | null) ?? null,
    pass: found['pass'] ? parse<Lookup['pass']>(found['pass']) : null,
  };
  if (lookup.prior) return priorAnswer(lookup.prior, hash);

  const captured = Date.parse(body.capturedAt);
  if (captured < now.getTime() - STALE_AFTER_MS || captured > now.getTime() + FUTURE_TOLERANCE_MS) {
    throw new AppError('stale-event', 'capturedAt is outside the accepted window (30 s behind, 5 s ahead)');
  }

  let match: Match | undefined;
  if (device.enabled && lookup.resident_id) {
    match = {
      subjectType: 'resident',
      subjectId: lookup.resident_id,
      reason: 'resident_vehicle',
      validNow: true,
    };
  } else if (device.enabled && lookup.pass) {
    match = lookup.pass.valid_now
      ? { subjectType: 'pass', subjectId: lookup.pass.id, reason: 'guest_pass', validNow: true }
      : { subjectType: 'pass', subjectId: lookup.pass.id, reason: 'pass_not_valid_now', validNow: false };
  }
  const decision: DecisionResponse = {
    decisionId: uuidv7(now.getTime()),
    eventId: body.eventId,
    decision: match?.validNow ? 'open' : 'deny',
    reason: !device.enabled ? 'barrier_disabled' : (match?.reason ?? 'not_registered'),
    decidedAt: now.toISOString(),
  };
  const entry = {
    id: decision.decisionId,
    actorType: 'partner' as const,
    actorId: partner.id,
    action: 'barrier.decision',
    partnerId: partner.id,
    deviceId: device.id,
    subjectType: match?.subjectType ?? null,
    subjectId: match?.subjectId ?? null,
    result: decision.decision,
    requestId,
    details: {
      eventId: body.eventId,
      reason: decision.reason,
      direction: body.direction,
      capturedAt: body.capturedAt,
      candidates: body.candidates.length,
    },
  };
  const written = await db.one<{ inserted: number }>(
    sql`
    with d as (
      insert into barrier_decisions (partner_id, event_id, request_hash, response, created_at)
      values (${partner.id}, ${body.eventId}, ${hash}, ${JSON.stringify(decision)}, ${now})
      on conflict (partner_id, event_id) do nothing
      returning event_id
    ), j as (
      insert into journal (${JOURNAL_COLUMNS}) select ${journalValues(entry)} from d returning id
    )
    select (select count(*) from j)::int as inserted`.named('barrier_record'),
  );
  if (written?.inserted === 1) return decision;
  // Another request with this eventId committed first: answer as it was answered, or 409.
  const prior = await db.one<{ request_hash: string; response: unknown }>(
    sql`select request_hash, response from barrier_decisions where partner_id = ${partner.id} and event_id = ${body.eventId}`,
  );
  if (!prior) throw new AppError('event-conflict');
  return priorAnswer(
    { request_hash: prior.request_hash, response: parse<DecisionResponse>(prior.response) },
    hash,
  );
}

function priorAnswer(prior: NonNullable<Lookup['prior']>, hash: string): DecisionResponse {
  if (prior.request_hash !== hash) throw new AppError('event-conflict');
  return parse<DecisionResponse>(prior.response);
}
