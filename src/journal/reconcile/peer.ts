/**
 * The other side of a reconciliation as the initiator sees it, and its implementation over the
 * outbound partner channel (contract §8.4 at `{partnerBase}/v1/journal/…`, signed both ways, scope
 * `audit:exchange`). Answers are checked: a projection must be a §8.3 projection whose element is the
 * one it is given for, or it is refused.
 */
import type { Outbound } from '../../outbound/outbound.ts';
import type { PartnerInfo } from '../../partners/partner-directory.ts';
import {
  elementHex,
  MAX_PROJECTION_ELEMENTS,
  type ProjectionRecord,
  parseProjection,
  projectionElement,
} from '../../reconcile/projection.ts';

export const AUDIT_SCOPE = 'audit:exchange';

export class ReconcileError extends Error {
  override readonly name = 'ReconcileError';
  readonly code = 'ERR_RECONCILE';
}

export interface ReconcilePeer {
  /** One Negentropy message for the window [from, to) (ms) → the answer. */
  reconcile(window: { from: number; to: number }, message: Buffer): Promise<Buffer>;
  /** The partner's projections of these elements (hex; it leaves out those it does not hold). */
  projections(window: { from: number; to: number }, elements: readonly string[]): Promise<ProjectionRecord[]>;
  /** The partner's newest signed checkpoint (note text), or null when it has none. */
  checkpoint(): Promise<string | null>;
}

const q = (w: { from: number; to: number }) =>
  `from=${encodeURIComponent(new Date(w.from).toISOString())}&to=${encodeURIComponent(new Date(w.to).toISOString())}`;

/** Checks a projections answer: every item a valid projection under the element it claims. */
export function parseProjectionsAnswer(body: unknown, asked: ReadonlySet<string>): ProjectionRecord[] {
  const list = (body as { projections?: unknown } | null)?.projections;
  if (!Array.isArray(list)) throw new ReconcileError('the projections answer has no projections list');
  const out: ProjectionRecord[] = [];
  for (const raw of list) {
    const r = raw as Partial<ProjectionRecord> | null;
    if (!r || typeof r !== 'object') throw new ReconcileError('a projections item is not an object');
    const p = parseProjection(r.projection);
    if ('error' in p) throw new ReconcileError(`a projection of the answer is not valid: ${p.error}`);
    const element = elementHex(projectionElement(p));
    if (r.element !== element)
      throw new ReconcileError('a projection does not hash to the element it is given for');
    if (!asked.has(element)) throw new ReconcileError('the answer holds an element that was not asked for');
    if (typeof r.time !== 'number' || !Number.isSafeInteger(r.time) || r.time < 0)
      throw new ReconcileError('a projections item has no valid time');
    if (r.at !== undefined && (typeof r.at !== 'string' || Number.isNaN(Date.parse(r.at))))
      throw new ReconcileError('a projections item has an invalid at');
    out.push({ element, time: r.time, projection: p, ...(r.at !== undefined ? { at: r.at } : {}) });
  }
  return out;
}

export function outboundPeer(
  outbound: Outbound,
  partner: string | PartnerInfo,
  opts: { maxMessageBytes: number },
): ReconcilePeer {
  const fail = (what: string, status: number, body: Buffer) => {
    let detail = '';
    try {
      const p = JSON.parse(body.toString('utf8')) as { type?: string; detail?: string };
      detail = [p.type, p.detail].filter(Boolean).join(': ');
    } catch {}
    return new ReconcileError(`the partner answered ${what} with ${status}${detail ? ` (${detail})` : ''}`);
  };
  return {
    async reconcile(window, message) {
      const a = await outbound.send(partner, 'POST', `/v1/journal/reconcile?${q(window)}`, {
        scope: AUDIT_SCOPE,
        body: message,
        contentType: 'application/octet-stream',
        accept: 'application/octet-stream',
        maxResponseBytes: opts.maxMessageBytes,
      });
      if (a.status !== 200) throw fail('a reconcile message', a.status, a.body);
      return a.body;
    },
    async projections(window, elements) {
      const out: ProjectionRecord[] = [];
      for (let i = 0; i < elements.length; i += MAX_PROJECTION_ELEMENTS) {
        const chunk = elements.slice(i, i + MAX_PROJECTION_ELEMENTS);
        const a = await outbound.send(partner, 'POST', `/v1/journal/projections?${q(window)}`, {
          scope: AUDIT_SCOPE,
          body: { elements: chunk },
          maxResponseBytes: opts.maxMessageBytes,
        });
        if (a.status !== 200) throw fail('a projections request', a.status, a.body);
        let body: unknown;
        try {
          body = JSON.parse(a.body.toString('utf8'));
        } catch {
          throw new ReconcileError('the projections answer is not JSON');
        }
        out.push(...parseProjectionsAnswer(body, new Set(chunk)));
      }
      return out;
    },
    async checkpoint() {
      const a = await outbound.send(partner, 'GET', '/v1/journal/checkpoint', {
        scope: AUDIT_SCOPE,
        accept: 'text/plain',
      });
      if (a.status === 404) return null;
      if (a.status !== 200) throw fail('the checkpoint request', a.status, a.body);
      return a.body.toString('utf8');
    },
  };
}
