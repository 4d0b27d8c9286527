/**
 * `POST /admin/v1/journal/reconcile` — an operator runs a reconciliation against a partner (issue 4)
 * and receives the signed report; the run is journaled with the operator as its actor.
 */
import { type Static, Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../../errors.ts';
import { OutboundError } from '../../outbound/errors.ts';
import { parseWindow } from '../../reconcile/projection.ts';
import { ReconcileError } from './peer.ts';
import { type Reconciler, UnknownPartnerError } from './service.ts';

const RFC3339 = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$';

const Body = T.Object(
  {
    partner: T.String({ minLength: 1, maxLength: 100, description: 'our partner id or the partner code' }),
    from: T.String({ pattern: RFC3339, description: 'RFC 3339, inclusive (eventId time)' }),
    to: T.String({ pattern: RFC3339, description: 'RFC 3339, exclusive' }),
    skewToleranceMs: T.Optional(
      T.Integer({
        minimum: 0,
        maximum: 86_400_000,
        description: 'default SMART_HOME_RECONCILE_SKEW_TOLERANCE_MS',
      }),
    ),
  },
  { additionalProperties: false },
);

const Problem = T.Object(
  {
    type: T.String(),
    title: T.String(),
    status: T.Integer(),
    detail: T.Optional(T.String()),
    instance: T.Optional(T.String()),
  },
  { additionalProperties: true },
);

export function reconcileAdminRoutes(deps: { reconciler: () => Reconciler | undefined }) {
  return async (app: FastifyInstance) => {
    app.post<{ Body: Static<typeof Body> }>(
      '/journal/reconcile',
      {
        schema: {
          summary: 'Reconcile the journal with a partner’s (contract §8.4) and return the signed report',
          description:
            'Runs the Negentropy exchange against the partner’s `POST /v1/journal/reconcile`, asks the projections of every differing element, classifies each difference (`missing_at_partner`, `missing_at_us`, `content_mismatch` with the fields, `timing_skew` beyond the tolerance), and answers the report signed with the journal key (detached Ed25519 over `smart-home/journal-reconcile-report/v1\\n` ‖ JCS(report)). The run is journaled as `journal.reconcile`.',
          tags: ['journal'],
          body: Body,
          response: {
            200: T.Object(
              {
                report: T.Object({}, { additionalProperties: true }),
                signature: T.Object({}, { additionalProperties: true }),
              },
              { additionalProperties: false },
            ),
            400: Problem,
            401: Problem,
            403: Problem,
            404: Problem,
            502: Problem,
            503: Problem,
          },
        },
      },
      async (req) => {
        const p = req.principal;
        if (p?.kind !== 'operator') throw new AppError('wrong-role');
        const reconciler = deps.reconciler();
        if (!reconciler)
          throw new AppError('unavailable', 'reconciliation is not configured on this instance');
        const w = parseWindow(req.body.from, req.body.to);
        if (!w || !(w.to > w.from)) throw new AppError('invalid-request', 'body/from must be before body/to');
        try {
          reconciler.checkWindow(w.from, w.to);
        } catch (err) {
          throw new AppError('invalid-request', (err as Error).message);
        }
        try {
          return await reconciler.run({
            partner: req.body.partner,
            from: w.from,
            to: w.to,
            actor: { type: 'operator', id: p.operatorId },
            requestId: req.id,
            ...(req.body.skewToleranceMs !== undefined ? { skewToleranceMs: req.body.skewToleranceMs } : {}),
          });
        } catch (err) {
          if (err instanceof UnknownPartnerError) throw new AppError('not-found', 'no such partner');
          if (err instanceof ReconcileError || err instanceof OutboundError) {
            req.log.warn(
              { err: { name: err.name, code: err.code, message: err.message } },
              'reconciliation failed',
            );
            throw new AppError('partner-unavailable', err.message);
          }
          throw err;
        }
      },
    );
  };
}
