/**
 * Telling the differences of a reconciliation apart (issue 4). Negentropy yields the elements only we
 * hold and those only the partner holds; with the projections of both lists, every difference is one of
 *
 *   missing_at_partner  an eventId only we recorded
 *   missing_at_us       an eventId only the partner recorded
 *   content_mismatch    the same eventId with other content: `fields` names the members that differ
 *   timing_skew         the same action held at times further apart than the tolerance
 *
 * Time is the eventId's (contract §8.3), so the same eventId normally has the same item time on both
 * sides, and a skew cannot hide in it. It shows instead as (a) the same element at two item times
 * (a side that keys an action by another time), (b) the two sides' recording times (`at`, carried in
 * a projections answer) further apart than the tolerance, or (c) our own recording time further from
 * the eventId's time than the tolerance — for an action the partner started, that is the partner's
 * clock against ours (checked locally on every entry of the window, since identical entries are never
 * exchanged).
 */
import {
  differingFields,
  eventTime,
  type Projection,
  type ProjectionField,
} from '../../reconcile/projection.ts';

export const DIFFERENCE_KINDS = [
  'missing_at_partner',
  'missing_at_us',
  'content_mismatch',
  'timing_skew',
] as const;
export type DifferenceKind = (typeof DIFFERENCE_KINDS)[number];

/** One side's item: the element (hex), its item time, the projection, and when that side recorded it. */
export interface SideItem {
  element: string;
  time: number;
  projection: Projection;
  /** Recording time, ms, when known. */
  at?: number | undefined;
}

export type SkewBasis =
  /** The same element at two item times. */
  | 'item_time'
  /** The two sides' recording times. */
  | 'recorded_at'
  /** Our recording time against the eventId's time. */
  | 'recorded_vs_event_id';

export interface Difference {
  kind: DifferenceKind;
  eventId: string;
  /** The eventId's time, RFC 3339. */
  time: string;
  ours?: Projection;
  theirs?: Projection;
  /** content_mismatch: the projection members that differ. */
  fields?: ProjectionField[];
  /** timing_skew: theirs − ours (or our recording − eventId time), ms, and what was compared. */
  skewMs?: number;
  skewBasis?: SkewBasis;
}

export type Summary = Record<DifferenceKind, number>;

export function emptySummary(): Summary {
  return { missing_at_partner: 0, missing_at_us: 0, content_mismatch: 0, timing_skew: 0 };
}

export function summarise(diffs: readonly Difference[]): Summary {
  const s = emptySummary();
  for (const d of diffs) s[d.kind]++;
  return s;
}

const iso = (ms: number) => new Date(ms).toISOString();

function byEventId(items: readonly SideItem[]): Map<string, SideItem[]> {
  const m = new Map<string, SideItem[]>();
  for (const it of items) {
    const k = it.projection.eventId.toLowerCase();
    const list = m.get(k);
    if (list) list.push(it);
    else m.set(k, [it]);
  }
  return m;
}

/**
 * Classifies the items only one side holds (by element or by item time). `ours`: our items the
 * exchange found only with us; `theirs`: the partner's items found only with it.
 */
export function classify(
  ours: readonly SideItem[],
  theirs: readonly SideItem[],
  opts: { skewToleranceMs: number },
): Difference[] {
  const out: Difference[] = [];
  const tol = opts.skewToleranceMs;
  const o = byEventId(ours);
  const t = byEventId(theirs);
  const ids = [...new Set([...o.keys(), ...t.keys()])].sort();
  for (const id of ids) {
    const a = o.get(id) ?? [];
    const b = t.get(id) ?? [];
    const time = iso(eventTimeOr(id, (a[0] ?? b[0])!.time));
    if (b.length === 0) {
      for (const x of a) out.push({ kind: 'missing_at_partner', eventId: id, time, ours: x.projection });
      continue;
    }
    if (a.length === 0) {
      for (const y of b) out.push({ kind: 'missing_at_us', eventId: id, time, theirs: y.projection });
      continue;
    }
    // Both hold the eventId: pair each of ours with the partner's closest in content.
    const left = [...b];
    for (const x of a) {
      if (left.length === 0) {
        // More of ours than of theirs under this eventId: the rest are ours alone.
        out.push({ kind: 'missing_at_partner', eventId: id, time, ours: x.projection });
        continue;
      }
      let best = 0;
      let bestFields = differingFields(x.projection, left[0]!.projection);
      for (let i = 1; i < left.length; i++) {
        const f = differingFields(x.projection, left[i]!.projection);
        if (f.length < bestFields.length) {
          best = i;
          bestFields = f;
        }
      }
      const y = left.splice(best, 1)[0]!;
      if (bestFields.length > 0)
        out.push({
          kind: 'content_mismatch',
          eventId: id,
          time,
          ours: x.projection,
          theirs: y.projection,
          fields: bestFields,
        });
      const itemSkew = y.time - x.time;
      if (Math.abs(itemSkew) > tol)
        out.push({
          kind: 'timing_skew',
          eventId: id,
          time,
          ours: x.projection,
          theirs: y.projection,
          skewMs: itemSkew,
          skewBasis: 'item_time',
        });
      else if (x.at !== undefined && y.at !== undefined && Math.abs(y.at - x.at) > tol)
        out.push({
          kind: 'timing_skew',
          eventId: id,
          time,
          ours: x.projection,
          theirs: y.projection,
          skewMs: y.at - x.at,
          skewBasis: 'recorded_at',
        });
    }
    for (const y of left) out.push({ kind: 'missing_at_us', eventId: id, time, theirs: y.projection });
  }
  return out;
}

/** Our entries recorded further from their eventId's time than the tolerance (basis (c) above). */
export function recordingSkews(items: Iterable<SideItem>, opts: { skewToleranceMs: number }): Difference[] {
  const out: Difference[] = [];
  for (const it of items) {
    if (it.at === undefined) continue;
    const skew = it.at - it.time;
    if (Math.abs(skew) > opts.skewToleranceMs)
      out.push({
        kind: 'timing_skew',
        eventId: it.projection.eventId,
        time: iso(it.time),
        ours: it.projection,
        skewMs: skew,
        skewBasis: 'recorded_vs_event_id',
      });
  }
  return out;
}

function eventTimeOr(eventId: string, fallback: number): number {
  try {
    return eventTime(eventId);
  } catch {
    return fallback;
  }
}

/** Orders differences by time, then eventId, then kind (stable output for reports and tests). */
export function sortDifferences(diffs: Difference[]): Difference[] {
  return diffs.sort(
    (x, y) =>
      x.time.localeCompare(y.time) ||
      x.eventId.localeCompare(y.eventId) ||
      DIFFERENCE_KINDS.indexOf(x.kind) - DIFFERENCE_KINDS.indexOf(y.kind),
  );
}
