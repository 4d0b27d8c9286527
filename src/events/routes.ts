/**
 * `POST /partner/v1/events` (contract §9, partner zone, scope `events:write`) and the operator's view of
 * the per-partner sequence cursors, `GET /admin/v1/events/cursors`.
 */
import { type Static, Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { listCursors } from './cursor.ts';
import { EventBatch, EventBatchAnswer } from './model.ts';
import type { EventService } from './service.ts';

/** Contract §9: a body of at most 256 KiB. */
export const EVENTS_BODY_LIMIT = 256 * 1024;

export function eventRoutes(deps: { events: EventService }) {
  return async (app: FastifyInstance) => {
    app.post<{ Body: Static<typeof EventBatch> }>(
      '/events',
      {
        bodyLimit: EVENTS_BODY_LIMIT,
        config: { scope: 'events:write' },
        schema: {
          summary: 'Deliver access events and device statuses (contract §9)',
          description:
            '1 to 100 events; answered `200 {accepted, duplicates}` only once all are stored durably. An event already stored with the same content counts as a duplicate (an eventId repeated inside the batch counts once); the same eventId with other content, or a seq another event holds, is `409 event-conflict` and nothing of the batch is stored. A device that is not the partner’s own: `404` for the whole batch.',
          tags: ['events'],
          body: EventBatch,
          response: { 200: EventBatchAnswer },
        },
      },
      async (req) => deps.events.deliver(req.partner!, req.body.events),
    );
  };
}

const Cursor = T.Object(
  {
    partnerId: T.String(),
    contiguous: T.Integer({ description: 'every seq up to this one is stored' }),
    maxSeen: T.Integer({ description: 'the largest seq stored' }),
    gap: T.Union([
      T.Object(
        {
          afterSeq: T.Integer({ description: 'the gap starts after this seq (= contiguous)' }),
          upToSeq: T.Integer({ description: 'and ends before this one (= maxSeen)' }),
          since: T.String({ description: 'RFC 3339: when the gap was first seen' }),
        },
        { additionalProperties: false },
      ),
      T.Null(),
    ]),
    backfill: T.Object(
      {
        attempts: T.Integer({ description: 'failed attempts at the current gap' }),
        running: T.Boolean({ description: 'an instance holds the backfill lease now' }),
        lastAttemptAt: T.Union([T.String(), T.Null()]),
        nextAttemptAt: T.Union([T.String(), T.Null()]),
        lastError: T.Union([T.String(), T.Null()]),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const CursorsAnswer = T.Object(
  {
    cursors: T.Array(Cursor),
    unprocessed: T.Object(
      {
        count: T.Integer({ description: 'stored events not yet processed (journal, device health)' }),
        oldestReceivedAt: T.Union([T.String(), T.Null()]),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());

export async function cursorsOverview(q: Queryable): Promise<Static<typeof CursorsAnswer>> {
  const rows = await listCursors(q);
  const u = await q.one<{ n: number; oldest: Date | null }>(
    sql`select count(*)::int as n, min(received_at) as oldest from event_inbox where processed_at is null`,
  );
  const now = Date.now();
  return {
    cursors: rows.map((r) => {
      const contiguous = Number(r.contiguous);
      const maxSeen = Number(r.max_seen);
      return {
        partnerId: r.partner_id,
        contiguous,
        maxSeen,
        gap:
          maxSeen > contiguous
            ? {
                afterSeq: contiguous,
                upToSeq: maxSeen,
                since: iso(r.gap_since) ?? new Date(now).toISOString(),
              }
            : null,
        backfill: {
          attempts: Number(r.backfill_attempts),
          running: r.backfill_lease_until !== null && new Date(r.backfill_lease_until).getTime() > now,
          lastAttemptAt: iso(r.backfill_last_at),
          nextAttemptAt: iso(r.backfill_next_at),
          lastError: r.backfill_last_error,
        },
      };
    }),
    unprocessed: { count: Number(u?.n ?? 0), oldestReceivedAt: iso(u?.oldest ?? null) },
  };
}

export function eventAdminRoutes(deps: { db: Queryable }) {
  return async (app: FastifyInstance) => {
    app.get(
      '/events/cursors',
      {
        schema: {
          summary: 'Partner event sequences: contiguous mark, gaps and backfill state (contract §9)',
          description:
            'Per partner: every seq up to `contiguous` is stored, `maxSeen` is the largest stored; a gap between them older than `SMART_HOME_EVENTS_GAP_GRACE_MS` is backfilled from the partner, with the attempts, next attempt and last error shown here. Also how many stored events wait for processing.',
          tags: ['events'],
          response: { 200: CursorsAnswer },
        },
      },
      async () => cursorsOverview(deps.db),
    );
  };
}
