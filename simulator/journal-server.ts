/**
 * Contract §8 on the partner's side, as a Fastify plugin any simulator server mounts under
 * `/v1/journal` (the intercom does; the routes are the smart-home ones minus `/partner`):
 * - §8.1 `GET checkpoint`, `GET tile/<L>/<N>[.p/<W>]`, `GET tile/entries/<N>[.p/<W>]` (C2SP tlog-tiles);
 * - §8.2 `POST witness/add-checkpoint`: the partner witnesses smart-home's log (C2SP tlog-witness);
 * - §8.4 `POST reconcile?from=&to=` (one Negentropy v1 message in, the next out) and
 *   `POST projections` `{"elements":[…]}` (≤ 1,000).
 * The host server authenticates (token with scope `audit:exchange` bound to the client certificate,
 * smart-home's RFC 9421 signature) and signs every answer; this module only decides the answers.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { encodeBundle } from '../src/journal/log/read-api.ts';
import { Negentropy, NegentropyError } from '../src/reconcile/negentropy.ts';
import { MAX_PROJECTION_ELEMENTS, parseElementHex, parseWindow } from '../src/reconcile/projection.ts';
import { parseTilePath } from '../src/tlog/tiles.ts';
import type { SimulatorJournal } from './journal.ts';
import type { SimulatorWitness } from './witness.ts';

/** Contract §8: the scope of every journal route. */
export const AUDIT_SCOPE = 'audit:exchange';

/** An answer for the host to sign and send: JSON `body`, or `raw` bytes of `contentType`. */
export interface JournalAnswer {
  status: number;
  body?: unknown;
  raw?: Buffer;
  contentType?: string;
  headers?: Record<string, string>;
}

export interface JournalServerDeps {
  journal: SimulatorJournal;
  witness: SimulatorWitness;
  /** The host's checks (token with `scope`, request signature over `raw`): a refusal, or undefined. */
  authorize(req: FastifyRequest, scope: string, raw: Buffer | undefined): Promise<JournalAnswer | undefined>;
  /** Signs and sends an answer. */
  send(req: FastifyRequest, reply: FastifyReply, answer: JournalAnswer): unknown;
  /** Refused answers, for the host's record (default: sent like any other). */
  refuse?(req: FastifyRequest, reply: FastifyReply, answer: JournalAnswer): unknown;
  /** Negentropy frame size limit of the answers (0: unlimited; default 0). */
  frameSizeLimit?: number;
  /** Largest body taken, bytes (default 4 MiB). */
  bodyLimit?: number;
}

export const journalProblem = (code: string, status: number, title: string): JournalAnswer => ({
  status,
  body: { type: `urn:smart-home:problem:${code}`, title, status },
});

/** The plugin; register it with `{ prefix: '/v1/journal' }`. */
export function journalRoutes(deps: JournalServerDeps) {
  const bodyLimit = deps.bodyLimit ?? 4 * 1024 * 1024;
  const refuse = deps.refuse ?? deps.send;
  return async (app: FastifyInstance) => {
    // Every body as the exact bytes received: the request signature's content-digest covers them.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));

    /** Runs the host's checks, then the handler; any refusal goes through `refuse`. */
    const guarded =
      (handler: (req: FastifyRequest, raw: Buffer | undefined) => JournalAnswer | Promise<JournalAnswer>) =>
      async (req: FastifyRequest, reply: FastifyReply) => {
        const raw = Buffer.isBuffer(req.body) ? req.body : undefined;
        const refused = await deps.authorize(req, AUDIT_SCOPE, raw);
        if (refused) return refuse(req, reply, refused);
        const answer = await handler(req, raw);
        return answer.status >= 400 ? refuse(req, reply, answer) : deps.send(req, reply, answer);
      };

    app.get(
      '/checkpoint',
      guarded(() => ({
        status: 200,
        raw: Buffer.from(deps.journal.checkpoint().note, 'utf8'),
        contentType: 'text/plain; charset=utf-8',
        headers: { 'cache-control': 'no-store' },
      })),
    );

    app.get(
      '/tile/*',
      guarded((req) => {
        const path = parseTilePath((req.params as { '*': string })['*']);
        if (!path) return journalProblem('not-found', 404, 'Not a tile path');
        const { level, index, width } = path;
        let raw: Buffer | undefined;
        if (level === 'entries') {
          const entries = deps.journal.entries(index, width);
          // Every entry of the partner's journal is about its own devices: all served in full.
          raw = entries && encodeBundle(entries);
        } else {
          raw = deps.journal.tile(level, index, width);
        }
        if (!raw) return journalProblem('not-found', 404, 'Beyond the log');
        return {
          status: 200,
          raw,
          contentType: 'application/octet-stream',
          headers: { 'cache-control': 'public, max-age=31536000, immutable' },
        };
      }),
    );

    app.post(
      '/witness/add-checkpoint',
      guarded((_req, raw) => {
        const a = deps.witness.addCheckpoint((raw ?? Buffer.alloc(0)).toString('utf8'));
        return { status: a.status, raw: Buffer.from(a.body, 'utf8'), contentType: a.contentType };
      }),
    );

    app.post(
      '/reconcile',
      guarded((req, raw) => {
        const q = req.query as Record<string, unknown>;
        const window = parseWindow(q['from'], q['to']);
        if (!window)
          return journalProblem('invalid-request', 400, 'from and to must be RFC 3339 times, from ≤ to');
        if (!raw || raw.length === 0)
          return journalProblem('invalid-request', 400, 'The body must be one Negentropy v1 message');
        const { index } = deps.journal.window(window.from, window.to);
        try {
          const next = new Negentropy(index, { frameSizeLimit: deps.frameSizeLimit ?? 0 }).reconcile(raw);
          return {
            status: 200,
            raw: next,
            contentType: 'application/octet-stream',
            headers: { 'cache-control': 'no-store', 'journal-tree-size': String(deps.journal.size) },
          };
        } catch (err) {
          if (err instanceof NegentropyError || err instanceof RangeError)
            return journalProblem('invalid-request', 400, 'Not a valid Negentropy v1 message');
          throw err;
        }
      }),
    );

    app.post(
      '/projections',
      guarded((_req, raw) => {
        let body: unknown;
        try {
          body = JSON.parse((raw ?? Buffer.alloc(0)).toString('utf8'));
        } catch {
          body = undefined;
        }
        const elements = (body as { elements?: unknown } | undefined)?.elements;
        if (
          typeof body !== 'object' ||
          body === null ||
          Object.keys(body).length !== 1 ||
          !Array.isArray(elements) ||
          elements.length > MAX_PROJECTION_ELEMENTS
        ) {
          return journalProblem(
            'invalid-request',
            400,
            `{"elements":[…]} with at most ${MAX_PROJECTION_ELEMENTS}`,
          );
        }
        const parsed = elements.map(parseElementHex);
        if (parsed.some((e) => e === undefined))
          return journalProblem('invalid-request', 400, 'An element is 64 lowercase hex digits');
        return {
          status: 200,
          body: { projections: deps.journal.lookup(parsed as Buffer[]) },
          headers: { 'cache-control': 'no-store' },
        };
      }),
    );
  };
}
