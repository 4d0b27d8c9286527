import { type Static, Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Db } from '../db/db.ts';
import { AppError } from '../errors.ts';
import type { PartnerDirectory } from '../partners/partner-directory.ts';
import { createBarrierDecider, type DecisionRequest } from './decision-service.ts';

const Params = T.Object(
  { barrierId: T.String({ minLength: 1, maxLength: 100 }) },
  { additionalProperties: false },
);

const Body = T.Object(
  {
    eventId: T.String({
      pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$',
    }),
    capturedAt: T.String({
      pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$',
      description: 'RFC 3339',
    }),
    direction: T.Union([T.Literal('entry'), T.Literal('exit')]),
    candidates: T.Array(
      T.Object(
        {
          kid: T.String({ minLength: 1, maxLength: 100 }),
          token: T.String({ pattern: '^[A-Za-z0-9_-]{43}$', description: 'contract §5.2' }),
          confidence: T.Number({ minimum: 0, maximum: 1 }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 3 },
    ),
  },
  { additionalProperties: false },
);

const Decision = T.Object({
  decisionId: T.String(),
  eventId: T.String(),
  decision: T.Union([T.Literal('open'), T.Literal('deny')]),
  reason: T.Union([
    T.Literal('resident_vehicle'),
    T.Literal('guest_pass'),
    T.Literal('not_registered'),
    T.Literal('pass_not_valid_now'),
    T.Literal('barrier_disabled'),
  ]),
  decidedAt: T.String(),
});

/** `POST /partner/v1/barriers/{barrierId}/decisions` (contract §6). */
export function barrierRoutes(deps: {
  db: Db;
  directory: () => PartnerDirectory;
  batching?: { batchMax: number; batchesInFlight: number };
}) {
  const decider = createBarrierDecider(deps.db, {
    ...(deps.batching
      ? { maxBatch: deps.batching.batchMax, maxInFlight: deps.batching.batchesInFlight }
      : {}),
  });
  return async (app: FastifyInstance) => {
    app.post<{ Params: Static<typeof Params>; Body: Static<typeof Body> }>(
      '/barriers/:barrierId/decisions',
      {
        bodyLimit: 4096,
        config: { scope: 'barrier:decide' },
        schema: { params: Params, body: Body, response: { 200: Decision } },
      },
      async (req) => {
        const partner = req.partner!;
        const device = deps.directory().device(partner, req.params.barrierId, 'barrier');
        if (!device) throw new AppError('not-found');
        return decider.decide(partner, device, req.body as DecisionRequest, req.id);
      },
    );
  };
}
