import { createHash } from 'node:crypto';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { AppError } from '../errors.ts';
import { appendJournal } from '../journal/journal.ts';
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

/**
 * Decides whether a barrier opens for a plate read (contract §6). The idempotency record, the
 * decision and its journal entry are written in one transaction: a decision is either fully recorded
 * or not at all, and a retried event gets the first answer back.
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
  return db.transaction(async (tx) => {
    const prior = await tx.one<{ request_hash: string; response: DecisionResponse | string }>(
      sql`select request_hash, response from barrier_decisions
          where partner_id = ${partner.id} and event_id = ${body.eventId} and created_at > ${new Date(now.getTime() - 86_400_000)}`,
    );
    if (prior) {
      if (prior.request_hash !== hash) throw new AppError('event-conflict');
      return typeof prior.response === 'string'
        ? (JSON.parse(prior.response) as DecisionResponse)
        : prior.response;
    }
    const captured = Date.parse(body.capturedAt);
    if (captured < now.getTime() - STALE_AFTER_MS || captured > now.getTime() + FUTURE_TOLERANCE_MS) {
      throw new AppError('stale-event', 'capturedAt is outside the accepted window (30 s behind, 5 s ahead)');
    }

    let match: Match | undefined;
    if (device.enabled) match = await findMatch(tx, partner, device, body, now);
    const decision: DecisionResponse = {
      decisionId: uuidv7(now.getTime()),
      eventId: body.eventId,
      decision: match?.validNow ? 'open' : 'deny',
      reason: !device.enabled ? 'barrier_disabled' : (match?.reason ?? 'not_registered'),
      decidedAt: now.toISOString(),
    };
    // `on conflict do nothing` + re-check: two instances racing on one eventId answer alike.
    const inserted =
      await tx.query(sql`insert into barrier_decisions (partner_id, event_id, request_hash, response, created_at)
      values (${partner.id}, ${body.eventId}, ${hash}, ${JSON.stringify(decision)}, ${now})
      on conflict (partner_id, event_id) do nothing returning event_id`);
    if (inserted.length === 0) throw new AppError('event-conflict');
    await appendJournal(tx, {
      id: decision.decisionId,
      actorType: 'partner',
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
    });
    return decision;
  });
}

async function findMatch(
  tx: Parameters<Parameters<Db['transaction']>[0]>[0],
  partner: PartnerInfo,
  device: DeviceInfo,
  body: DecisionRequest,
  now: Date,
): Promise<Match | undefined> {
  const kids = body.candidates.map((c) => c.kid);
  const tokens = body.candidates.map((c) => c.token);
  // A resident may pass when one of their apartments lies inside the barrier's scope (complex,
  // building or entrance). Candidates are OCR hypotheses, best first: the earliest match wins.
  const residents = await tx.query<{ resident_id: string; idx: number }>(sql`
    select v.resident_id, c.idx::int as idx
    from unnest(${kids}::text[], ${tokens}::text[]) with ordinality as c(kid, token, idx)
    join plate_tokens pt on pt.partner_id = ${partner.id} and pt.kid = c.kid and pt.token = c.token and pt.vehicle_id is not null
    join vehicles v on v.id = pt.vehicle_id
    join resident_apartments ra on ra.resident_id = v.resident_id
    join apartments a on a.id = ra.apartment_id
    join entrances e on e.id = a.entrance_id
    join buildings b on b.id = e.building_id
    where b.complex_id = ${device.complexId}
      and (${device.buildingId}::uuid is null or b.id = ${device.buildingId}::uuid)
      and (${device.entranceId}::uuid is null or e.id = ${device.entranceId}::uuid)
    order by c.idx limit 1`);
  if (residents[0]) {
    return {
      subjectType: 'resident',
      subjectId: residents[0].resident_id,
      reason: 'resident_vehicle',
      validNow: true,
    };
  }
  // A guest pass opens only the barriers it names, only inside its window, only while not revoked.
  const passes = await tx.query<{ id: string; valid_now: boolean }>(sql`
    select gp.id, (gp.revoked_at is null and gp.valid_from <= ${now} and gp.valid_until > ${now}) as valid_now
    from unnest(${kids}::text[], ${tokens}::text[]) with ordinality as c(kid, token, idx)
    join plate_tokens pt on pt.partner_id = ${partner.id} and pt.kid = c.kid and pt.token = c.token and pt.pass_id is not null
    join guest_passes gp on gp.id = pt.pass_id
    join guest_pass_devices gpd on gpd.pass_id = gp.id and gpd.device_id = ${device.id}
    order by valid_now desc, c.idx limit 1`);
  if (passes[0]) {
    return passes[0].valid_now
      ? { subjectType: 'pass', subjectId: passes[0].id, reason: 'guest_pass', validNow: true }
      : { subjectType: 'pass', subjectId: passes[0].id, reason: 'pass_not_valid_now', validNow: false };
  }
  return undefined;
}
