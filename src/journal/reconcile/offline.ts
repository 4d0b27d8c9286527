/**
 * Offline reconciliation for auditors: two exported projection files compared without any network.
 *
 * File format (JSON Lines, UTF-8, one item per line, blank lines ignored): either a bare §8.3
 * projection `{"eventId","action","device","subject","result","initiator"}`, or a projections-answer
 * record `{"element","time","projection","at"?}` as `POST …/journal/projections` answers it and
 * `smart-home journal reconcile --partner … --from … --to … --export <file>` writes it. A record's
 * element must be its projection's; its time defaults to the eventId's.
 *
 * The two sets are reconciled with the same Negentropy code as the online exchange (in memory), then
 * classified the same way.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { concatIndexes, type ReconIndex } from '../../reconcile/index.ts';
import { Negentropy } from '../../reconcile/negentropy.ts';
import {
  elementHex,
  eventTime,
  indexItems,
  parseProjection,
  projectionElement,
} from '../../reconcile/projection.ts';
import { classify, type Difference, recordingSkews, type SideItem, sortDifferences } from './classify.ts';

export class OfflineInputError extends Error {
  override readonly name = 'OfflineInputError';
  readonly code = 'ERR_RECONCILE_INPUT';
}

export interface ProjectionFile {
  items: SideItem[];
  sha256: string;
}

/** Reads and checks one JSONL file of projections. */
export async function readProjectionFile(file: string): Promise<ProjectionFile> {
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256');
  const stream = createReadStream(file);
  stream.on('data', (c) => hash.update(c));
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  const items: SideItem[] = [];
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new OfflineInputError(`${file}:${n}: not JSON`);
    }
    const rec = v as { projection?: unknown; element?: unknown; time?: unknown; at?: unknown };
    const isRecord = typeof v === 'object' && v !== null && 'projection' in rec;
    const p = parseProjection(isRecord ? rec.projection : v);
    if ('error' in p) throw new OfflineInputError(`${file}:${n}: ${p.error}`);
    const element = elementHex(projectionElement(p));
    if (isRecord && rec.element !== undefined && rec.element !== element)
      throw new OfflineInputError(`${file}:${n}: the element is not its projection's`);
    let time = eventTime(p.eventId);
    if (isRecord && rec.time !== undefined) {
      if (typeof rec.time !== 'number' || !Number.isSafeInteger(rec.time) || rec.time < 0)
        throw new OfflineInputError(`${file}:${n}: bad time`);
      time = rec.time;
    }
    let at: number | undefined;
    if (isRecord && rec.at !== undefined) {
      at = typeof rec.at === 'string' ? Date.parse(rec.at) : Number.NaN;
      if (Number.isNaN(at)) throw new OfflineInputError(`${file}:${n}: bad at`);
    }
    items.push({ element, time, projection: p, at });
  }
  return { items, sha256: hash.digest('hex') };
}

function indexOf(items: SideItem[]): { index: ReconIndex; byKey: Map<string, SideItem> } {
  const { index, items: unique } = indexItems(
    items.map((side) => ({ side, time: side.time, element: Buffer.from(side.element, 'hex') })),
  );
  return { index, byKey: new Map(unique.map(({ side }) => [`${side.time}/${side.element}`, side])) };
}

/** Compares two sets of items within [from, to): the differences and the round trips it took. */
export function compareOffline(
  ours: SideItem[],
  theirs: SideItem[],
  opts: { from: number; to: number; skewToleranceMs: number; frameBytes?: number },
): { differences: Difference[]; rounds: number; ourItems: number; theirItems: number } {
  const a = indexOf(ours);
  const b = indexOf(theirs);
  const sa = concatIndexes([a.index], opts.from, opts.to);
  const sb = concatIndexes([b.index], opts.from, opts.to);
  const client = new Negentropy(sa, { frameSizeLimit: opts.frameBytes ?? 0 });
  const server = new Negentropy(sb, { frameSizeLimit: opts.frameBytes ?? 0 });
  const have: SideItem[] = [];
  const need: SideItem[] = [];
  const byElement = (items: Iterable<SideItem>) => {
    const m = new Map<string, SideItem[]>();
    for (const it of items) {
      if (it.time < opts.from || it.time >= opts.to) continue;
      const l = m.get(it.element);
      if (l) l.push(it);
      else m.set(it.element, [it]);
    }
    return m;
  };
  const aByElement = byElement(a.byKey.values());
  const bByElement = byElement(b.byKey.values());
  let rounds = 0;
  let msg: Buffer | null = client.initiate();
  const haveIds: Buffer[] = [];
  const needIds: Buffer[] = [];
  while (msg) {
    const r = client.reconcileAsInitiator(server.reconcile(msg));
    rounds++;
    haveIds.push(...r.have);
    needIds.push(...r.need);
    msg = r.next;
  }
  const takeAll = (ids: Buffer[], by: Map<string, SideItem[]>, out: SideItem[]) => {
    for (const k of new Set(ids.map((e) => e.toString('hex')))) out.push(...(by.get(k) ?? []));
  };
  takeAll(haveIds, aByElement, have);
  takeAll(needIds, bByElement, need);
  // An element both hold at the same time is no difference; only the other time of it is.
  const key = (it: SideItem) => `${it.time}/${it.element}`;
  const haveKeys = new Set(have.map(key));
  const needKeys = new Set(need.map(key));
  const ourOnly = have.filter((it) => !needKeys.has(key(it)));
  const theirOnly = need.filter((it) => !haveKeys.has(key(it)));
  const differences = classify(ourOnly, theirOnly, { skewToleranceMs: opts.skewToleranceMs });
  // Offline, both files are whole: the recording times of entries both hold are compared too (online,
  // identical entries are never exchanged), and ours against their eventId times.
  const skewed = new Set(differences.filter((d) => d.kind === 'timing_skew').map((d) => d.eventId));
  const extra: Difference[] = [];
  for (const [element, list] of aByElement) {
    const other = bByElement.get(element);
    if (!other) continue;
    for (const x of list) {
      const y = other.find((z) => z.time === x.time);
      if (!y || x.at === undefined || y.at === undefined || skewed.has(x.projection.eventId)) continue;
      if (Math.abs(y.at - x.at) > opts.skewToleranceMs) {
        skewed.add(x.projection.eventId);
        extra.push({
          kind: 'timing_skew',
          eventId: x.projection.eventId,
          time: new Date(x.time).toISOString(),
          ours: x.projection,
          theirs: y.projection,
          skewMs: y.at - x.at,
          skewBasis: 'recorded_at',
        });
      }
    }
  }
  for (const list of aByElement.values())
    for (const d of recordingSkews(list, opts))
      if (!skewed.has(d.eventId)) {
        skewed.add(d.eventId);
        extra.push(d);
      }
  differences.push(...extra);
  sortDifferences(differences);
  return { differences, rounds, ourItems: sa.size, theirItems: sb.size };
}
