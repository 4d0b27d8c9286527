/**
 * Witnessing routes (contract §8.2):
 *
 * - partner zone: `POST /partner/v1/journal/witness/add-checkpoint` (scope `audit:exchange`), C2SP
 *   tlog-witness — `text/plain` body `old <size>`, consistency proof lines, a blank line, the partner's
 *   signed checkpoint; answers 200 with our cosignature line, 409 `text/x.tlog.size` with the size we
 *   hold, or 400/403/404/409/422 with a one-line reason (see ./state.ts). The zone's own checks (mTLS,
 *   token, RFC 9421 signature both ways) apply as everywhere on the listener.
 * - operator zone: `GET /admin/v1/journal/witness` — the partners' logs we witness, the newest
 *   cosignatures partners gave our log, and recent witnessing alerts.
 */
import { Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Db, Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { AppError } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import type { NoteSigner } from '../../tlog/note.ts';
import { MAX_NOTE_BYTES } from '../../tlog/note.ts';
import { MAX_PROOF_LINES } from '../../tlog/witness.ts';
import { addCheckpoint, WITNESS_ALERT_ACTION } from './state.ts';

/** The largest add-checkpoint body: `old <size>`, 63 proof lines, a blank line, a note. */
const MAX_BODY_BYTES = 32 + (MAX_PROOF_LINES + 1) * 46 + MAX_NOTE_BYTES;

export function witnessPartnerRoutes(deps: {
  db: Db;
  /** Our cosigner; undefined: the route answers 404 (the instance witnesses nothing). */
  cosigner: NoteSigner | undefined;
  logger?: Logger;
}) {
  return async (app: FastifyInstance) => {
    // The raw body is what the request signature's content-digest covers (partner zone).
    app.addContentTypeParser(
      'text/plain',
      { parseAs: 'buffer', bodyLimit: MAX_BODY_BYTES },
      (req, body, done) => {
        req.rawBody = body as Buffer;
        done(null, body);
      },
    );
    app.post(
      '/journal/witness/add-checkpoint',
      {
        config: { scope: 'audit:exchange' },
        bodyLimit: MAX_BODY_BYTES,
        schema: {
          summary: 'Witness a checkpoint of the partner’s own journal log (contract §8.2, C2SP tlog-witness)',
          description:
            '`text/plain` body: `old <size>`, the consistency proof from that size (base64 lines), a blank line, the checkpoint as a signed note by the partner’s registered log key. 200: our cosignature/v1 line (`text/plain`). 409 `text/x.tlog.size`: the size we hold — send again from it. 409 (`text/plain`) same size, another root; 422 the proof does not hold — both journaled as `journal.witness.alert`. 403 not signed by the registered log key; 404 the origin is not the partner’s registered log; 400 malformed.',
          tags: ['journal'],
        },
      },
      async (req, reply) => {
        if (!deps.cosigner) throw new AppError('not-found');
        if (!Buffer.isBuffer(req.body)) {
          throw new AppError('invalid-request', 'the body must be a text/plain add-checkpoint request');
        }
        const answer = await addCheckpoint({
          db: deps.db,
          partner: req.partner!,
          body: req.body,
          cosigner: deps.cosigner,
          ...(deps.logger ? { logger: deps.logger } : {}),
        });
        reply
          .code(answer.status)
          .header('content-type', answer.contentType)
          .header('cache-control', 'no-store');
        return answer.body;
      },
    );
  };
}

const Overview = T.Object(
  {
    witnessing: T.Array(
      T.Object(
        {
          partnerId: T.String(),
          origin: T.String(),
          size: T.Integer(),
          updatedAt: T.String({ description: 'RFC 3339' }),
        },
        { additionalProperties: false },
      ),
      { description: 'partners’ logs we witness: the newest size we cosigned for each' },
    ),
    witnessedBy: T.Array(
      T.Object(
        {
          partnerId: T.String(),
          size: T.Integer(),
          cosignedAt: T.String({ description: 'RFC 3339, the time inside the cosignature' }),
          receivedAt: T.String({ description: 'RFC 3339' }),
        },
        { additionalProperties: false },
      ),
      { description: 'the newest checkpoint of our log each partner cosigned' },
    ),
    alerts: T.Array(
      T.Object(
        {
          id: T.String(),
          at: T.String({ description: 'RFC 3339' }),
          partnerId: T.Union([T.String(), T.Null()]),
          result: T.String(),
          details: T.Record(T.String(), T.Unknown()),
        },
        { additionalProperties: false },
      ),
      { description: `the newest \`${WITNESS_ALERT_ACTION}\` journal entries, newest first` },
    ),
  },
  { additionalProperties: false },
);

const iso = (d: Date | string) => (d instanceof Date ? d : new Date(d)).toISOString();

/** The witnessing overview of the operator API. */
export async function witnessOverview(q: Queryable, alertLimit = 50) {
  const witnessing = await q.query<{ partner_id: string; origin: string; size: string; updated_at: Date }>(
    sql`select w.partner_id::text as partner_id, w.origin, w.size::text as size, w.updated_at from witness_state w
        where w.size > 0 order by w.partner_id, w.origin`,
  );
  const witnessedBy = await q.query<{
    partner_id: string;
    size: string;
    cosigned_at: Date;
    received_at: Date;
  }>(
    // (qualified: a bare `size` in ORDER BY would name the text output column)
    sql`select distinct on (c.partner_id) c.partner_id::text as partner_id, c.size::text as size, c.cosigned_at,
          c.received_at
        from witness_cosignatures c order by c.partner_id, c.size desc`,
  );
  const alerts = await q.query<{
    id: string;
    at: Date;
    partner_id: string | null;
    result: string;
    details: unknown;
  }>(
    // The action as a literal, so the partial index of migration 012 applies (a parameter would not prove it).
    sql`select j.id::text as id, j.at, j.partner_id::text as partner_id, j.result, j.details from journal j
        where j.action = 'journal.witness.alert' order by j.seq desc limit ${alertLimit}`,
  );
  return {
    witnessing: witnessing.map((r) => ({
      partnerId: r.partner_id,
      origin: r.origin,
      size: Number(r.size),
      updatedAt: iso(r.updated_at),
    })),
    witnessedBy: witnessedBy.map((r) => ({
      partnerId: r.partner_id,
      size: Number(r.size),
      cosignedAt: iso(r.cosigned_at),
      receivedAt: iso(r.received_at),
    })),
    alerts: alerts.map((r) => ({
      id: r.id,
      at: iso(r.at),
      partnerId: r.partner_id,
      result: r.result,
      details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
    })),
  };
}

export function witnessAdminRoutes(deps: { db: Queryable }) {
  return async (app: FastifyInstance) => {
    app.get(
      '/journal/witness',
      {
        schema: {
          summary: 'Witnessing, both ways (contract §8.2): state and recent alerts',
          description:
            'The partners’ logs smart-home witnesses (newest cosigned size), the newest cosignature each partner gave smart-home’s log, and the latest `journal.witness.alert` entries (a refused or inconsistent checkpoint, a refusal or a bad cosignature from a partner).',
          tags: ['journal'],
          response: { 200: Overview },
        },
      },
      async () => witnessOverview(deps.db),
    );
  };
}
