/**
 * The partner side of contract §9's backfill, as a Fastify plugin a simulator server mounts under
 * `/v1/events`: `GET /v1/events?afterSeq=<n>&limit=<1..500>` answers `{"events":[…]}` — the same event
 * objects it delivers, in `seq` order, from the partner's log. The host server authenticates (token with
 * scope `events:read` bound to the client certificate, smart-home's RFC 9421 signature) and signs every
 * answer. The contract names no scope for this route; `events:read` is the one both sides use.
 *
 * Switches, for fault tests: `down` (the connection is cut without an answer, as a partner whose
 * service is not there), `unavailable` (503 with Retry-After), `slow` (the answer held `slowMs`).
 */
import { type Static, Type as T } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PartnerEventLog } from './events.ts';
import { type JournalAnswer, journalProblem } from './journal-server.ts';

export const EVENTS_READ_SCOPE = 'events:read';
/** Contract §9: `limit` ≤ 500. */
export const MAX_BACKFILL_LIMIT = 500;

const DIGITS = '^(0|[1-9][0-9]{0,15})$';
/** The query: both as strings of digits (a query string has no numbers); unknown parameters refused. */
const BackfillQuery = T.Object(
  { afterSeq: T.String({ pattern: DIGITS }), limit: T.Optional(T.String({ pattern: DIGITS })) },
  { additionalProperties: false },
);
const checkQuery = TypeCompiler.Compile(BackfillQuery);

export type EventsMode = 'normal' | 'down' | 'unavailable' | 'slow';

/** The partner's backfill endpoint: its log, how it behaves, what it was asked. */
export class PartnerEventsEndpoint {
  readonly log: PartnerEventLog;
  mode: EventsMode = 'normal';
  /** How long `slow` holds an answer, ms. */
  slowMs = 5_000;
  /** The Retry-After of `unavailable`, seconds. */
  retryAfterS = 1;
  /** Requests that reached the route (any mode, before any check). */
  requests = 0;
  /** Events served in 200 answers. */
  served = 0;
  /** The `afterSeq` of each authorised request, in order. */
  readonly asked: number[] = [];

  constructor(log: PartnerEventLog) {
    this.log = log;
  }

  set(mode: EventsMode, opts: { slowMs?: number; retryAfterS?: number } = {}): void {
    this.mode = mode;
    if (opts.slowMs !== undefined) this.slowMs = opts.slowMs;
    if (opts.retryAfterS !== undefined) this.retryAfterS = opts.retryAfterS;
  }
}

export interface EventsServerDeps {
  endpoint: PartnerEventsEndpoint;
  /** The host's checks (token with `scope`, request signature): a refusal, or undefined. */
  authorize(req: FastifyRequest, scope: string, raw: Buffer | undefined): Promise<JournalAnswer | undefined>;
  send(req: FastifyRequest, reply: FastifyReply, answer: JournalAnswer): unknown;
  refuse?(req: FastifyRequest, reply: FastifyReply, answer: JournalAnswer): unknown;
  /** Resolves when the host stops (a held `slow` answer is released then). */
  stopping?: AbortSignal;
}

/** Parses and bounds the query; a problem answer when it is not valid. */
export function parseBackfillQuery(
  query: unknown,
): { afterSeq: number; limit: number } | { problem: JournalAnswer } {
  if (!checkQuery.Check(query)) {
    return { problem: journalProblem('invalid-request', 400, 'afterSeq (≥ 0) and limit (1–500) only') };
  }
  const q = query as Static<typeof BackfillQuery>;
  const afterSeq = Number(q.afterSeq);
  const limit = q.limit === undefined ? MAX_BACKFILL_LIMIT : Number(q.limit);
  if (!Number.isSafeInteger(afterSeq) || limit < 1 || limit > MAX_BACKFILL_LIMIT) {
    return { problem: journalProblem('invalid-request', 400, 'afterSeq (≥ 0) and limit (1–500) only') };
  }
  return { afterSeq, limit };
}

/** The plugin; register it with `{ prefix: '/v1/events' }`. */
export function eventsRoutes(deps: EventsServerDeps) {
  const refuse = deps.refuse ?? deps.send;
  const ep = deps.endpoint;
  return async (app: FastifyInstance) => {
    app.get('/', async (req, reply) => {
      ep.requests++;
      if (ep.mode === 'down') {
        // As if nothing listened: no TLS answer, no HTTP answer.
        reply.hijack();
        req.raw.socket.destroy();
        return;
      }
      if (ep.mode === 'unavailable') {
        return refuse(req, reply, {
          ...journalProblem('unavailable', 503, 'The event log is not available now'),
          headers: { 'retry-after': String(ep.retryAfterS) },
        });
      }
      const refused = await deps.authorize(req, EVENTS_READ_SCOPE, undefined);
      if (refused) return refuse(req, reply, refused);
      const parsed = parseBackfillQuery(req.query);
      if ('problem' in parsed) return refuse(req, reply, parsed.problem);
      ep.asked.push(parsed.afterSeq);
      if (ep.mode === 'slow') {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, ep.slowMs);
          deps.stopping?.addEventListener(
            'abort',
            () => {
              clearTimeout(t);
              resolve();
            },
            { once: true },
          );
        });
      }
      const events = ep.log.after(parsed.afterSeq, parsed.limit);
      ep.served += events.length;
      return deps.send(req, reply, {
        status: 200,
        body: { events },
        headers: { 'cache-control': 'no-store' },
      });
    });
  };
}
