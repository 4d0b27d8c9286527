/**
 * Contract §8.4 on the partner listener (scope `audit:exchange`), the responder's side:
 *
 *   POST /partner/v1/journal/reconcile?from=<RFC 3339>&to=<RFC 3339>
 *     application/octet-stream: one Negentropy v1 message (items = (eventId time, element)) → the next
 *   POST /partner/v1/journal/projections[?from=…&to=…]   {"elements":["<64 hex>", …]} (≤ 1,000)
 *     → {"projections":[{"element","time","projection","at"}]}: our projections of those elements for the
 *       calling partner only; elements we do not hold are left out.
 *
 * The window is [from, to) over the eventId's time. Both answer from the calling partner's day indexes
 * (src/journal/reconcile/store.ts), pinned to our newest signed checkpoint; its tree size is sent as
 * `journal-tree-size` so the initiator can name what it reconciled against. Without a window the
 * projections are searched in the partner's days this instance holds, then in the last
 * SMART_HOME_RECONCILE_MAX_WINDOW_DAYS days.
 */
import { type Static, Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AppError } from '../../errors.ts';
import { Negentropy, NegentropyError } from '../../reconcile/negentropy.ts';
import { MAX_PROJECTION_ELEMENTS, type ProjectionRecord, parseWindow } from '../../reconcile/projection.ts';
import { projectionRecord } from './source.ts';
import { DAY_MS, type ReconStore } from './store.ts';

export interface ReconcileRouteOptions {
  maxWindowDays: number;
  maxMessageBytes: number;
  frameBytes: number;
}

const RFC3339 = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$';

const Window = T.Object(
  {
    from: T.String({ pattern: RFC3339, description: 'RFC 3339, inclusive (eventId time)' }),
    to: T.String({ pattern: RFC3339, description: 'RFC 3339, exclusive' }),
  },
  { additionalProperties: false },
);
const OptionalWindow = T.Object(
  { from: T.Optional(T.String({ pattern: RFC3339 })), to: T.Optional(T.String({ pattern: RFC3339 })) },
  { additionalProperties: false },
);

export const ProjectionsBody = T.Object(
  {
    elements: T.Array(T.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256(JCS(projection)), hex' }), {
      minItems: 1,
      maxItems: MAX_PROJECTION_ELEMENTS,
    }),
  },
  { additionalProperties: false },
);

const ProjectionSchema = T.Object(
  {
    eventId: T.String(),
    action: T.String(),
    device: T.String(),
    subject: T.Union([T.String(), T.Null()]),
    result: T.String(),
    initiator: T.String(),
  },
  { additionalProperties: false },
);

export const ProjectionsAnswer = T.Object(
  {
    projections: T.Array(
      T.Object(
        {
          element: T.String({ pattern: '^[0-9a-f]{64}$' }),
          time: T.Integer({ minimum: 0, description: 'the item time we hold it at (the eventId’s), ms' }),
          projection: ProjectionSchema,
          at: T.String({ description: 'when we recorded the action (RFC 3339, our clock)' }),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

/** The window of a request, checked against the configured longest window. */
export function windowOf(
  q: { from?: string | undefined; to?: string | undefined },
  maxWindowDays: number,
): { from: number; to: number } {
  const w = parseWindow(q.from, q.to);
  if (!w || !(w.to > w.from))
    throw new AppError('invalid-request', 'from and to must be RFC 3339 times with from < to');
  if (w.to - w.from > maxWindowDays * DAY_MS)
    throw new AppError('invalid-request', `the window may span at most ${maxWindowDays} days`);
  return w;
}

export function journalReconcileRoutes(deps: { store: ReconStore; options: ReconcileRouteOptions }) {
  const o = deps.options;
  return async (app: FastifyInstance) => {
    // The raw message is what the request signature's content-digest covers (partner zone).
    app.addContentTypeParser(
      'application/octet-stream',
      { parseAs: 'buffer', bodyLimit: o.maxMessageBytes },
      (req, body, done) => {
        req.rawBody = body as Buffer;
        done(null, body);
      },
    );

    app.post<{ Querystring: Static<typeof Window>; Body: Buffer }>(
      '/journal/reconcile',
      {
        config: { scope: 'audit:exchange' },
        bodyLimit: o.maxMessageBytes,
        schema: {
          summary: 'One round of journal reconciliation (contract §8.4)',
          description:
            'The body is one Negentropy v1 message (protocol 0x61; items are (eventId time in ms, SHA-256(JCS(projection))) of the window [from, to)); the answer is the next message, `application/octet-stream`. The initiator repeats until it has nothing more to send. The `journal-tree-size` header names the size of our signed log the answer was computed on.',
          tags: ['journal'],
          querystring: Window,
        },
      },
      async (req, reply) => {
        const w = windowOf(req.query, o.maxWindowDays);
        if (!Buffer.isBuffer(req.body) || req.body.length === 0)
          throw new AppError(
            'invalid-request',
            'the body must be one application/octet-stream Negentropy message',
          );
        const view = await deps.store.view(req.partner!.id, w.from, w.to);
        let answer: Buffer;
        try {
          answer = new Negentropy(view.storage, { frameSizeLimit: o.frameBytes }).reconcile(req.body);
        } catch (err) {
          if (err instanceof NegentropyError || err instanceof RangeError)
            throw new AppError('invalid-request', `not a valid Negentropy v1 message: ${err.message}`);
          throw err;
        }
        reply
          .header('content-type', 'application/octet-stream')
          .header('cache-control', 'no-store')
          .header('journal-tree-size', String(view.size));
        return answer;
      },
    );

    app.post<{ Querystring: Static<typeof OptionalWindow>; Body: Static<typeof ProjectionsBody> }>(
      '/journal/projections',
      {
        config: { scope: 'audit:exchange' },
        schema: {
          summary: 'Our projections of reconciliation elements (contract §8.4)',
          description:
            'At most 1,000 elements (64 lowercase hex digits each); answers the §8.3 projection and item time of each element we hold for the calling partner, and leaves out the others. `from`/`to` (optional) name the window the elements came from.',
          tags: ['journal'],
          querystring: OptionalWindow,
          body: ProjectionsBody,
          response: { 200: ProjectionsAnswer },
        },
      },
      async (req, reply) => {
        const partnerId = req.partner!.id;
        const { from, to } = req.query;
        let window: { from: number; to: number } | undefined;
        if (from !== undefined || to !== undefined) window = windowOf(req.query, o.maxWindowDays);
        const elements = [...new Set(req.body.elements)];
        let found = await deps.store.lookup(partnerId, elements, window);
        if (!window && found.size < elements.length) {
          // Not in the days this instance holds: search the longest window back from now.
          const now = Date.now();
          const rest = elements.filter((e) => !found.has(e));
          const more = await deps.store.lookup(partnerId, rest, {
            from: now - o.maxWindowDays * DAY_MS + DAY_MS,
            to: now + DAY_MS,
          });
          found = new Map([...found, ...more]);
        }
        const projections: ProjectionRecord[] = [];
        for (const e of elements) {
          const it = found.get(e);
          if (it) projections.push(projectionRecord(it));
        }
        reply.header('cache-control', 'no-store');
        return { projections };
      },
    );
  };
}
