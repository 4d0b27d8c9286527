/**
 * The reconciliation index of contract §8.4 per partner per UTC day, kept in memory and extended as
 * the day grows (issue 4): a day is built once from the journal — the partner's projectable rows whose
 * eventId time falls in the day and that were recorded (`journal.at`, our clock) within the clock
 * margin of that time (the eventId may come from the partner's clock; the look-up goes by `at`, with
 * the margin either side of the day) — and afterwards only the rows integrated into the Merkle
 * log since (the watermark: a leaf index) are read and added. A row joins the index once it is in the
 * signed log, so a window's set is exactly what the newest checkpoint commits to.
 *
 *   const store = new ReconStore({ db, cipher, clockMarginMs, cacheDays });
 *   const view = await store.view(partnerId, from, to);   // view.storage for Negentropy, view.checkpoint
 *   view.lookup(element)                                   // the projection behind an element
 */
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Db } from '../../db/db.ts';
import { concatIndexes, ID_SIZE, ReconIndex, type ReconStorage } from '../../reconcile/index.ts';
import { compareItems } from '../../reconcile/projection.ts';
import { latestCheckpoint } from '../log/sequencer.ts';
import { type JournalProjection, Projector, rowsAtLeaves, rowsRecordedIn } from './source.ts';

export const DAY_MS = 86_400_000;

export interface ReconItem extends JournalProjection {
  element: Buffer;
}

interface Day {
  partnerId: string;
  start: number;
  index: ReconIndex;
  byElement: Map<string, ReconItem>;
  /** When we recorded the item at each index position (ms): a window's skews without touching items. */
  recorded: number[];
}

interface PartnerState {
  /** Every cached day of this partner holds its rows at leaves below this. */
  size: number;
  /** Serialises building and extending this partner's days. */
  queue: Promise<unknown>;
  /** The partner's registration the days were projected under (see registryVersion). */
  version: string;
}

export interface ReconView {
  /** The items with from ≤ time < to, sorted, for {@link Negentropy}. */
  storage: ReconStorage;
  /** The log size (and its signed checkpoint note) the view is pinned to. */
  size: number;
  checkpoint: string | undefined;
  /** The item behind an element (32 bytes or 64 hex digits), when it is in the view's days. */
  lookup(element: Uint8Array | string): ReconItem | undefined;
  /** Every item in the window, in (time, element) order. */
  items(): Generator<ReconItem>;
  /** The window's items we recorded more than `toleranceMs` from their eventId's time. */
  skewed(toleranceMs: number): ReconItem[];
}

export interface ReconStoreOptions {
  db: Db;
  cipher: FieldCipher;
  clockMarginMs: number;
  /** Most (partner, day) indexes kept; least recently used dropped first. */
  cacheDays: number;
  /**
   * What the projections depend on in the partner's registration (its device ids, its pseudonym key
   * versions): when it changes, the partner's days are projected again. Default: never changes.
   */
  registryVersion?: (partnerId: string) => string;
}

const hex = (e: Uint8Array | string) =>
  typeof e === 'string' ? e.toLowerCase() : Buffer.from(e).toString('hex');

export class ReconStore {
  readonly #o: ReconStoreOptions;
  /** `${partnerId}/${dayStart}` → day, in least-recently-used order. */
  readonly #days = new Map<string, Day>();
  readonly #partners = new Map<string, PartnerState>();

  constructor(opts: ReconStoreOptions) {
    this.#o = opts;
  }

  /** Days held in memory (for tests and metrics). */
  get cachedDays(): number {
    return this.#days.size;
  }

  #state(partnerId: string): PartnerState {
    let s = this.#partners.get(partnerId);
    if (!s) {
      s = { size: 0, queue: Promise.resolve(), version: '' };
      this.#partners.set(partnerId, s);
    }
    return s;
  }

  #serial<T>(partnerId: string, fn: (s: PartnerState) => Promise<T>): Promise<T> {
    const s = this.#state(partnerId);
    const run = s.queue.then(() => {
      const version = this.#o.registryVersion?.(partnerId) ?? '';
      if (version !== s.version) {
        // A device renamed or a pseudonym key rotated: this partner's days are stale.
        for (const [key, d] of this.#days) if (d.partnerId === partnerId) this.#days.delete(key);
        s.size = 0;
        s.version = version;
      }
      return fn(s);
    });
    s.queue = run.catch(() => {});
    return run;
  }

  #touch(key: string, day: Day): void {
    this.#days.delete(key);
    this.#days.set(key, day);
  }

  #evict(keep: ReadonlySet<string>): void {
    for (const key of this.#days.keys()) {
      if (this.#days.size <= this.#o.cacheDays) break;
      if (!keep.has(key)) this.#days.delete(key);
    }
  }

  /**
   * Whether an item belongs to the reconciliation set: recorded within the clock margin of its
   * eventId's time (as the partner simulator decides for its own entries). One recorded further away
   * is found only by its eventId or element, as a timing difference.
   */
  #inMargin(it: { at: number; time: number }): boolean {
    return Math.abs(it.at - it.time) <= this.#o.clockMarginMs;
  }

  /** The partner's cached days brought up to the log's newest checkpoint. */
  async #extend(partnerId: string, s: PartnerState, size: number): Promise<void> {
    if (size <= s.size) return;
    const mine = [...this.#days.values()].filter((d) => d.partnerId === partnerId);
    if (mine.length > 0) {
      const projector = new Projector(this.#o.db, this.#o.cipher, partnerId);
      try {
        const rows = await rowsAtLeaves(this.#o.db, partnerId, s.size, size);
        const items = await projector.project(rows);
        const byDay = new Map<number, ReconItem[]>();
        for (const it of items) {
          const start = Math.floor(it.time / DAY_MS) * DAY_MS;
          if (!this.#inMargin(it)) continue;
          const list = byDay.get(start) ?? [];
          if (list.length === 0) byDay.set(start, list);
          list.push(it);
        }
        for (const d of mine) {
          const added = byDay.get(d.start);
          if (added) addToDay(d, added);
        }
      } finally {
        await projector.dispose();
      }
    }
    s.size = size;
  }

  async #build(partnerId: string, start: number, size: number): Promise<Day> {
    const projector = new Projector(this.#o.db, this.#o.cipher, partnerId);
    try {
      const m = this.#o.clockMarginMs;
      const rows = await rowsRecordedIn(this.#o.db, partnerId, start - m, start + DAY_MS + m, size);
      const items: ReconItem[] = [];
      for (const it of await projector.project(rows)) {
        if (it.time >= start && it.time < start + DAY_MS && this.#inMargin(it)) items.push(it);
      }
      const day: Day = { partnerId, start, index: new ReconIndex(0), byElement: new Map(), recorded: [] };
      addToDay(day, items);
      return day;
    } finally {
      await projector.dispose();
    }
  }

  /**
   * The partner's items with from ≤ eventId time < to (ms), pinned to the newest checkpoint: the days
   * it spans are built or extended first.
   */
  async view(partnerId: string, from: number, to: number): Promise<ReconView> {
    if (!(to > from)) throw new RangeError('the window must end after it starts');
    return this.#serial(partnerId, async (s) => {
      const cp = await latestCheckpoint(this.#o.db);
      const size = cp?.size ?? 0;
      await this.#extend(partnerId, s, size);
      const days: Day[] = [];
      const keys = new Set<string>();
      for (let start = Math.floor(from / DAY_MS) * DAY_MS; start < to; start += DAY_MS) {
        const key = `${partnerId}/${start}`;
        let day = this.#days.get(key);
        if (!day) day = await this.#build(partnerId, start, s.size);
        this.#touch(key, day);
        keys.add(key);
        days.push(day);
      }
      this.#evict(keys);
      // Each view reads a snapshot: the columns of a day may grow later, but only past these bounds.
      const storage = concatIndexes(
        days.map((d) => d.index),
        from,
        to,
      );
      const maps = days.map((d) => d.byElement);
      // Each day's positions in the window, and its recording times as they are now (a snapshot).
      const spans = days.map((d) => {
        const none = new Uint8Array(0);
        const lo = d.index.lowerBound(0, d.index.size, from, none);
        const hi = d.index.lowerBound(lo, d.index.size, to, none);
        return { index: d.index, recorded: d.recorded, lo, hi };
      });
      const lookup = (element: Uint8Array | string) => {
        const k = hex(element);
        for (const m of maps) {
          const it = m.get(k);
          if (it && it.time >= from && it.time < to) return it;
        }
        return undefined;
      };
      return {
        storage,
        size: s.size,
        checkpoint: cp?.note,
        lookup,
        *items() {
          for (let i = 0; i < storage.size; i++) {
            const it = lookup(storage.id(i));
            if (it) yield it;
          }
        },
        skewed(toleranceMs) {
          const out: ReconItem[] = [];
          for (const { index, recorded, lo, hi } of spans)
            for (let i = lo; i < hi; i++) {
              if (Math.abs(recorded[i]! - index.time(i)) <= toleranceMs) continue;
              const it = lookup(index.id(i));
              if (it) out.push(it);
            }
          return out;
        },
      };
    });
  }

  /**
   * Items behind elements, searched in the partner's cached days (brought up to date), then in the
   * days of [from, to) when a window is given.
   */
  async lookup(
    partnerId: string,
    elements: readonly string[],
    window?: { from: number; to: number },
  ): Promise<Map<string, ReconItem>> {
    const found = new Map<string, ReconItem>();
    if (window) {
      const v = await this.view(partnerId, window.from, window.to);
      for (const e of elements) {
        const it = v.lookup(e);
        if (it) found.set(hex(e), it);
      }
      return found;
    }
    await this.#serial(partnerId, async (s) => {
      const cp = await latestCheckpoint(this.#o.db);
      await this.#extend(partnerId, s, cp?.size ?? 0);
      for (const d of this.#days.values()) {
        if (d.partnerId !== partnerId) continue;
        for (const e of elements) {
          const it = d.byElement.get(hex(e));
          if (it) found.set(hex(e), it);
        }
      }
    });
    return found;
  }

  /** Forgets every day (a registry change may alter device ids or pseudonym keys). */
  clear(): void {
    this.#days.clear();
    this.#partners.clear();
  }
}

/** Adds items to a day: appended when they all sort after its last one, else the day is rebuilt. */
function addToDay(day: Day, items: ReconItem[]): void {
  const fresh = items.filter((it) => !day.byElement.has(it.element.toString('hex')));
  if (fresh.length === 0) return;
  fresh.sort(compareItems);
  const unique: ReconItem[] = [];
  for (const it of fresh) {
    const prev = unique[unique.length - 1];
    if (prev === undefined || compareItems(prev, it) !== 0) unique.push(it);
  }
  const idx = day.index;
  const first = unique[0]!;
  const after =
    idx.size === 0 ||
    compareItems({ time: idx.time(idx.size - 1), element: idx.id(idx.size - 1) }, first) < 0;
  for (const it of unique) day.byElement.set(it.element.toString('hex'), it);
  if (after) {
    const { times, ids } = columns(unique);
    idx.append(times, ids);
    for (const it of unique) day.recorded.push(it.at);
    return;
  }
  const all = [...day.byElement.values()].sort(compareItems);
  const { times, ids } = columns(all);
  day.index = ReconIndex.fromSorted(times, ids);
  day.recorded = all.map((it) => it.at);
}

function columns(items: readonly ReconItem[]): { times: Float64Array; ids: Uint8Array } {
  const times = new Float64Array(items.length);
  const ids = new Uint8Array(items.length * ID_SIZE);
  items.forEach((it, i) => {
    times[i] = it.time;
    ids.set(it.element, i * ID_SIZE);
  });
  return { times, ids };
}
