import { hash } from 'node:crypto';
import { canonicalJson } from '../util/jcs.ts';
import { isUuidV7, uuidv7Time } from '../util/uuid.ts';
import { ID_SIZE, ReconIndex } from './index.ts';

/**
 * Contract §8.3: what both parties record identically about one access action. smart-home and the
 * partner simulator both build their reconciliation sets from this one module, so an element means
 * the same thing on either side.
 */

export const PROJECTION_ACTIONS = ['barrier.decision', 'door.open', 'face.decision', 'access.event'] as const;
export type ProjectionAction = (typeof PROJECTION_ACTIONS)[number];

export const PROJECTION_INITIATORS = ['partner', 'smart-home'] as const;
export type ProjectionInitiator = (typeof PROJECTION_INITIATORS)[number];

/** The §8.3 projection; its members are exactly these six (no more enter the element). */
export interface Projection {
  /** UUIDv7 minted by whoever started the action. */
  eventId: string;
  action: ProjectionAction;
  /** The partner's own device id. */
  device: string;
  /** The pseudonym, or null where the partner has none. */
  subject: string | null;
  /** The decision or status. */
  result: string;
  initiator: ProjectionInitiator;
}

/** The fields that can differ between two projections of the same eventId (content_mismatch). */
export const PROJECTION_FIELDS = ['action', 'device', 'subject', 'result', 'initiator'] as const;
export type ProjectionField = (typeof PROJECTION_FIELDS)[number];

/** Exactly the six members, in a fresh plain object (extra members a caller holds never leak in). */
export function projectionOf(p: Projection): Projection {
  return {
    eventId: p.eventId,
    action: p.action,
    device: p.device,
    subject: p.subject,
    result: p.result,
    initiator: p.initiator,
  };
}

/** Checks a value received from the other party; returns the projection or a reason it is not one. */
export function parseProjection(value: unknown): Projection | { error: string } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { error: 'not an object' };
  const v = value as Record<string, unknown>;
  const keys = Object.keys(v);
  if (keys.length !== 6) return { error: 'a projection has exactly six members' };
  if (typeof v.eventId !== 'string' || !isUuidV7(v.eventId)) return { error: 'eventId must be a UUIDv7' };
  if (!PROJECTION_ACTIONS.includes(v.action as ProjectionAction)) return { error: 'unknown action' };
  if (typeof v.device !== 'string' || v.device === '') return { error: 'device must be a non-empty string' };
  if (v.subject !== null && typeof v.subject !== 'string')
    return { error: 'subject must be a string or null' };
  if (typeof v.result !== 'string') return { error: 'result must be a string' };
  if (!PROJECTION_INITIATORS.includes(v.initiator as ProjectionInitiator))
    return { error: 'unknown initiator' };
  return projectionOf(v as unknown as Projection);
}

/** RFC 8785 canonical form of the projection (the bytes the element hashes). */
export function canonicalProjection(p: Projection): string {
  // The six members in RFC 8785 order, written directly: the same bytes as canonicalJson (a test
  // checks it) at a fraction of the cost, since every item of a day index is hashed from this.
  const { action, device, eventId, initiator, result, subject } = p;
  if (
    typeof action !== 'string' ||
    typeof device !== 'string' ||
    typeof eventId !== 'string' ||
    typeof initiator !== 'string' ||
    typeof result !== 'string' ||
    (subject !== null && typeof subject !== 'string')
  ) {
    return canonicalJson(projectionOf(p)); // not a well-typed projection: the general path
  }
  if (
    !action.isWellFormed() ||
    !device.isWellFormed() ||
    !eventId.isWellFormed() ||
    !initiator.isWellFormed() ||
    !result.isWellFormed() ||
    (subject !== null && !subject.isWellFormed())
  ) {
    throw new TypeError('a lone surrogate cannot be canonicalised');
  }
  return `{"action":${JSON.stringify(action)},"device":${JSON.stringify(device)},"eventId":${JSON.stringify(eventId)},"initiator":${JSON.stringify(initiator)},"result":${JSON.stringify(result)},"subject":${subject === null ? 'null' : JSON.stringify(subject)}}`;
}

/** Contract §8.3 element: SHA-256(JCS(projection)), 32 bytes. */
export function projectionElement(p: Projection): Buffer {
  return hash('sha256', canonicalProjection(p), 'buffer');
}

/** Contract §8.3 time: the Unix millisecond timestamp inside the eventId's UUIDv7. */
export function eventTime(eventId: string): number {
  if (!isUuidV7(eventId)) throw new RangeError('eventId must be a UUIDv7');
  return uuidv7Time(eventId);
}

/** Names of the fields that differ between two projections of the same eventId. */
export function differingFields(a: Projection, b: Projection): ProjectionField[] {
  return PROJECTION_FIELDS.filter((f) => a[f] !== b[f]);
}

/** One reconciliation item: (time, element) with its projection. */
export interface ProjectionItem {
  time: number;
  element: Buffer;
  projection: Projection;
}

export function projectionItem(p: Projection): ProjectionItem {
  const projection = projectionOf(p);
  return { time: eventTime(projection.eventId), element: projectionElement(projection), projection };
}

/** Orders items as Negentropy does: by time, then by element bytes. */
export function compareItems(
  a: { time: number; element: Uint8Array },
  b: { time: number; element: Uint8Array },
): number {
  if (a.time !== b.time) return a.time - b.time;
  return Buffer.compare(a.element, b.element);
}

/**
 * A ReconIndex over projections (any order; duplicates — the same projection twice — count once).
 * Returns the index and the items sorted, so an element can be looked up again.
 */
export function indexProjections(projections: Iterable<Projection>): {
  index: ReconIndex;
  items: ProjectionItem[];
} {
  const items: ProjectionItem[] = [];
  for (const p of projections) items.push(projectionItem(p));
  return indexItems(items);
}

/**
 * A ReconIndex over items, which it sorts in place (any order; the same (time, element) twice counts
 * once, the first kept). Returns the index and the unique items sorted.
 */
export function indexItems<T extends { time: number; element: Uint8Array }>(
  items: T[],
): { index: ReconIndex; items: T[] } {
  items.sort(compareItems);
  const unique: T[] = [];
  for (const it of items) {
    const prev = unique[unique.length - 1];
    if (prev !== undefined && compareItems(prev, it) === 0) continue;
    unique.push(it);
  }
  const times = new Float64Array(unique.length);
  const ids = new Uint8Array(unique.length * ID_SIZE);
  unique.forEach((it, i) => {
    times[i] = it.time;
    ids.set(it.element, i * ID_SIZE);
  });
  return { index: ReconIndex.fromSorted(times, ids), items: unique };
}

// ---- how each kind of action is projected (both sides use these, so elements agree) ----------------

/** Contract §6: a barrier decision the partner asked for. No pseudonym exists at a barrier. */
export function barrierDecisionProjection(a: {
  eventId: string;
  barrierId: string;
  decision: 'open' | 'deny';
}): Projection {
  return {
    eventId: a.eventId,
    action: 'barrier.decision',
    device: a.barrierId,
    subject: null,
    result: a.decision,
    initiator: 'partner',
  };
}

/** Contract §7: a door command smart-home sent, with the status the partner answered. */
export function doorOpenProjection(a: {
  commandId: string;
  doorId: string;
  subject: string;
  status: string;
}): Projection {
  return {
    eventId: a.commandId,
    action: 'door.open',
    device: a.doorId,
    subject: a.subject,
    result: a.status,
    initiator: 'smart-home',
  };
}

// ---- the §8.4 wire forms --------------------------------------------------------------------------------

/** Contract §8.4: at most this many elements in one projections request. */
export const MAX_PROJECTION_ELEMENTS = 1000;

/** An element in JSON: 64 lowercase hex digits. */
export const elementHex = (element: Uint8Array): string => Buffer.from(element).toString('hex');

export function parseElementHex(s: unknown): Buffer | undefined {
  return typeof s === 'string' && /^[0-9a-f]{64}$/.test(s) ? Buffer.from(s, 'hex') : undefined;
}

/**
 * One answer item of `POST …/journal/projections`: the element asked for, its item time (the eventId's,
 * ms), the projection, and (optionally) when this side recorded the action (RFC 3339, its own clock — what a
 * timing difference is told by). Elements a side does not hold are left out of its answer.
 */
export interface ProjectionRecord {
  element: string;
  time: number;
  projection: Projection;
  at?: string;
}

/** The `from`/`to` query of `POST …/journal/reconcile`: RFC 3339 times, the window [from, to) in ms. */
export function parseWindow(from: unknown, to: unknown): { from: number; to: number } | undefined {
  const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;
  if (typeof from !== 'string' || typeof to !== 'string' || !rfc3339.test(from) || !rfc3339.test(to))
    return undefined;
  const f = Date.parse(from);
  const t = Date.parse(to);
  if (Number.isNaN(f) || Number.isNaN(t) || f > t) return undefined;
  return { from: f, to: t };
}
