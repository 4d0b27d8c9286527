/**
 * The partner simulator's own journal (contract §8): what it did — barrier decisions it asked, doors it
 * opened, events it sent — each entry a §8.3 projection plus the time the simulator recorded it, kept
 * in memory as a Merkle log (RFC 9162 hashing, C2SP tiles, checkpoints signed with the partner's
 * journal key).
 *
 * The log holds what the simulator really did. On top of it, switches change only the §8.3 view it
 * shows smart-home (the reconciliation set and the projections look-up), so a test can make exactly one
 * kind of difference and check that it — and nothing else — is found:
 * - {@link SimulatorJournal.drop}: an action it did is absent (missing at the partner);
 * - {@link SimulatorJournal.alter}: a field differs (content mismatch);
 * - {@link SimulatorJournal.add}: an action smart-home never saw (missing at smart-home);
 * - {@link SimulatorJournal.shift}: its recording time moves (timing skew).
 */

import { ID_SIZE, ReconIndex } from '../src/reconcile/index.ts';
import {
  canonicalProjection,
  compareItems,
  elementHex,
  eventTime,
  type Projection,
  type ProjectionRecord,
  projectionElement,
  projectionOf,
} from '../src/reconcile/projection.ts';
import { consistencyNodes, consistencyProof, EMPTY_ROOT, HASH_SIZE, leafHash } from '../src/tlog/merkle.ts';
import { formatCheckpoint, type NoteSigner, signNote } from '../src/tlog/note.ts';
import {
  integrate,
  nodesFromTiles,
  partialTiles,
  TILE_WIDTH,
  type Tile,
  type TileId,
} from '../src/tlog/tiles.ts';
import { journalSigner, type PartnerIdentity } from './identity.ts';

/** One action in the simulator's journal: the §8.3 projection and when the simulator recorded it. */
export interface JournalRecord extends Projection {
  /** Unix ms on the simulator's clock. */
  at: number;
}

export interface SimulatorJournalOptions {
  identity: PartnerIdentity;
  /** The simulator's clock, ms (default Date.now). */
  now?: () => number;
  /**
   * How far an entry's recording time may lie from its eventId's time and still belong to a window
   * (as smart-home's `SMART_HOME_RECONCILE_CLOCK_MARGIN_MS`; default 600,000). Beyond it the entry is
   * left out of the window's set, and found only by a look-up of its element.
   */
  clockMarginMs?: number;
}

/** A field change for {@link SimulatorJournal.alter}. */
export type ProjectionChange = Partial<
  Pick<Projection, 'device' | 'subject' | 'result' | 'action' | 'initiator'>
>;

/** The bytes of a log entry: JCS of the projection and its recording time (RFC 3339). */
export function journalEntryBytes(r: JournalRecord): Buffer {
  // RFC 8785 orders `at` right after `action`; the rest is the projection's canonical form.
  const projection = canonicalProjection(r);
  const afterAction = `{"action":${JSON.stringify(r.action)}`.length;
  const at = JSON.stringify(new Date(r.at).toISOString());
  return Buffer.from(
    `${projection.slice(0, afterAction)},"at":${at}${projection.slice(afterAction)}`,
    'utf8',
  );
}

export class SimulatorJournal {
  readonly origin: string;
  readonly signer: NoteSigner;
  readonly #now: () => number;
  readonly #margin: number;
  readonly #records: JournalRecord[] = [];
  /** Per record: its element and eventId time, computed once. */
  readonly #items: ViewItem[] = [];
  readonly #eventIds = new Set<string>();
  readonly #tiles = new Map<string, Buffer>();
  #root: Buffer = Buffer.from(EMPTY_ROOT);
  #checkpoint: { size: number; note: string } | undefined;
  // switches
  readonly #dropped = new Set<string>();
  readonly #altered = new Map<string, ProjectionChange>();
  readonly #shifted = new Map<string, number>();
  readonly #added: JournalRecord[] = [];
  /** Bumped on every record and switch: the cached view and windows are rebuilt after a change. */
  #version = 0;
  #view: { version: number; items: ViewItem[]; byElement?: Map<string, ViewItem> } | undefined;
  readonly #windows = new Map<string, { version: number; index: ReconIndex; chosen: ViewItem[] }>();

  constructor(opts: SimulatorJournalOptions) {
    this.signer = journalSigner(opts.identity);
    this.origin = opts.identity.journal.origin;
    this.#now = opts.now ?? Date.now;
    this.#margin = opts.clockMarginMs ?? 600_000;
  }

  // ---- recording ------------------------------------------------------------------------------------

  /** Records an action the simulator did and integrates it into the log at once. */
  record(p: Projection, at = this.#now()): JournalRecord {
    return this.recordMany([{ projection: p, at }])[0]!;
  }

  /** Records many actions in one integration (a benchmark's or a test's bulk load). */
  recordMany(list: ReadonlyArray<{ projection: Projection; at?: number }>): JournalRecord[] {
    const records: JournalRecord[] = [];
    const entries: Buffer[] = [];
    const items: ViewItem[] = [];
    for (const { projection, at } of list) {
      const r: JournalRecord = { ...projectionOf(projection), at: at ?? this.#now() };
      items.push(viewItem(r)); // refuses an eventId that is not a UUIDv7
      records.push(r);
      entries.push(journalEntryBytes(r));
    }
    const size = this.#records.length;
    const rightmost: Tile[] = partialTiles(size).map((t) => ({
      level: t.level,
      index: t.index,
      hashes: this.#tiles.get(`${t.level}/${t.index}`)!,
    }));
    const next = integrate(size, rightmost, entries.map(leafHash));
    for (const t of next.tiles) this.#tiles.set(`${t.level}/${t.index}`, Buffer.from(t.hashes));
    this.#root = next.root;
    for (let i = 0; i < records.length; i++) {
      this.#records.push(records[i]!);
      this.#items.push(items[i]!);
      this.#eventIds.add(records[i]!.eventId);
    }
    this.#version++;
    return records;
  }

  /** Whether an action with this eventId was recorded. */
  has(eventId: string): boolean {
    return this.#eventIds.has(eventId);
  }

  /** Everything recorded, in log order (the truth, whatever the switches show). */
  get records(): readonly JournalRecord[] {
    return this.#records;
  }

  // ---- the log (contract §8.1) ---------------------------------------------------------------------

  get size(): number {
    return this.#records.length;
  }

  get root(): Buffer {
    return this.#root;
  }

  /** The checkpoint of the current size, signed once per size. */
  checkpoint(): { size: number; root: Buffer; note: string } {
    const size = this.size;
    if (this.#checkpoint?.size !== size) {
      const text = formatCheckpoint({ origin: this.origin, size, root: this.#root });
      this.#checkpoint = { size, note: signNote(text, [this.signer]) };
    }
    return { size, root: this.#root, note: this.#checkpoint.note };
  }

  /**
   * A hash tile of the tree of `size` (default: the current one): `width` hashes; undefined beyond it.
   * A partial tile is a prefix of the later wider one, so any size up to the current one is served.
   */
  tile(level: number, index: number, width = TILE_WIDTH, size = this.size): Buffer | undefined {
    const atLevel = Math.floor(size / TILE_WIDTH ** level);
    if (index * TILE_WIDTH + width > atLevel) return undefined;
    const hashes = this.#tiles.get(`${level}/${index}`);
    if (!hashes || hashes.length < width * HASH_SIZE) return undefined;
    return Buffer.from(hashes.subarray(0, width * HASH_SIZE));
  }

  /** The entries of bundle `index` (`width` of them); undefined beyond the tree of `size`. */
  entries(index: number, width = TILE_WIDTH, size = this.size): Buffer[] | undefined {
    const start = index * TILE_WIDTH;
    if (start + width > size) return undefined;
    // Rebuilt from the records (the same bytes as integrated): no second copy of the journal in memory.
    return this.#records.slice(start, start + width).map(journalEntryBytes);
  }

  /** RFC 9162 consistency proof between two sizes of this log. */
  consistency(oldSize: number, newSize = this.size): Buffer[] {
    if (oldSize < 0 || oldSize > newSize || newSize > this.size) throw new RangeError('bad sizes');
    const lookup = (id: TileId) => this.#tiles.get(`${id.level}/${id.index}`);
    return consistencyProof(oldSize, newSize, nodesFromTiles(consistencyNodes(oldSize, newSize), lookup));
  }

  // ---- switches on the §8.3 view -------------------------------------------------------------------

  /** The action is left out of what the simulator shows (smart-home finds it missing at the partner). */
  drop(eventId: string): void {
    this.#requireRecorded(eventId);
    this.#dropped.add(eventId);
    this.#version++;
  }

  /** The action is shown with these fields changed (a content mismatch). */
  alter(eventId: string, change: ProjectionChange): void {
    this.#requireRecorded(eventId);
    this.#altered.set(eventId, { ...this.#altered.get(eventId), ...change });
    this.#version++;
  }

  /** An action smart-home never saw is shown (missing at smart-home). */
  add(p: Projection, at = eventTime(p.eventId)): JournalRecord {
    const r: JournalRecord = { ...projectionOf(p), at };
    eventTime(r.eventId);
    this.#added.push(r);
    this.#version++;
    return r;
  }

  /** The action is shown recorded `ms` later (earlier when negative): a timing difference. */
  shift(eventId: string, ms: number): void {
    this.#requireRecorded(eventId);
    this.#shifted.set(eventId, (this.#shifted.get(eventId) ?? 0) + ms);
    this.#version++;
  }

  /** Every switch off: the view is the journal again. */
  clearSwitches(): void {
    this.#dropped.clear();
    this.#altered.clear();
    this.#shifted.clear();
    this.#added.length = 0;
    this.#version++;
  }

  #requireRecorded(eventId: string): void {
    if (!this.#eventIds.has(eventId)) throw new Error(`no entry for event ${eventId}`);
  }

  // ---- the §8.3 view and §8.4 -------------------------------------------------------------------------

  /** What the simulator shows smart-home: its records with the switches applied. */
  view(): JournalRecord[] {
    return this.#viewItems().items.map((it) => it.record);
  }

  #viewItems(): { version: number; items: ViewItem[]; byElement?: Map<string, ViewItem> } {
    if (this.#view?.version === this.#version) return this.#view;
    const switched = this.#dropped.size + this.#altered.size + this.#shifted.size > 0;
    let items: ViewItem[];
    if (!switched) items = [...this.#items];
    else {
      items = [];
      for (const it of this.#items) {
        const id = it.record.eventId;
        if (this.#dropped.has(id)) continue;
        const change = this.#altered.get(id);
        const shift = this.#shifted.get(id);
        if (change === undefined && shift === undefined) items.push(it);
        else items.push(viewItem({ ...it.record, ...change, at: it.record.at + (shift ?? 0) }));
      }
    }
    for (const r of this.#added) items.push(viewItem(r));
    this.#view = { version: this.#version, items };
    this.#windows.clear();
    return this.#view;
  }

  /**
   * The reconciliation set of the window [from, to): entries whose eventId time is in it and whose
   * recording time is within the clock margin of that time. Cached until the next change.
   */
  window(from: number, to: number): { index: ReconIndex; records: ProjectionRecord[] } {
    const view = this.#viewItems();
    const key = `${from}|${to}`;
    let cached = this.#windows.get(key);
    if (cached?.version !== view.version) {
      const chosen = view.items.filter(
        (it) => it.time >= from && it.time < to && Math.abs(it.record.at - it.time) <= this.#margin,
      );
      chosen.sort(compareItems);
      const times = new Float64Array(chosen.length);
      const ids = new Uint8Array(chosen.length * ID_SIZE);
      let n = 0;
      for (const it of chosen) {
        // The same projection recorded twice is one item.
        const prev = ids.subarray((n - 1) * ID_SIZE, n * ID_SIZE);
        if (n > 0 && times[n - 1] === it.time && Buffer.compare(prev, it.element) === 0) continue;
        times[n] = it.time;
        ids.set(it.element, n * ID_SIZE);
        n++;
      }
      const index = ReconIndex.fromSorted(times.subarray(0, n), ids.subarray(0, n * ID_SIZE));
      cached = { version: view.version, index, chosen };
      if (this.#windows.size >= 16) this.#windows.clear();
      this.#windows.set(key, cached);
    }
    const { index, chosen } = cached;
    return {
      index,
      // Built only when asked (the reconcile route needs the index alone).
      get records() {
        return chosen.map(toRecord);
      },
    };
  }

  /** The projections the simulator shows for these elements (those it does not hold are left out). */
  lookup(elements: readonly Uint8Array[]): ProjectionRecord[] {
    const view = this.#viewItems();
    if (!view.byElement) {
      view.byElement = new Map();
      for (const it of view.items) {
        const hex = elementHex(it.element);
        if (!view.byElement.has(hex)) view.byElement.set(hex, it);
      }
    }
    const out: ProjectionRecord[] = [];
    const seen = new Set<string>();
    for (const e of elements) {
      const hex = elementHex(e);
      const it = view.byElement.get(hex);
      if (it && !seen.has(hex)) {
        seen.add(hex);
        out.push(toRecord(it));
      }
    }
    return out;
  }
}

/** A record as the view holds it: with its element and item time. */
interface ViewItem {
  record: JournalRecord;
  element: Buffer;
  time: number;
}

function viewItem(record: JournalRecord): ViewItem {
  return { record, element: projectionElement(record), time: eventTime(record.eventId) };
}

function toRecord(it: ViewItem): ProjectionRecord {
  return {
    element: elementHex(it.element),
    time: it.time,
    projection: projectionOf(it.record),
    at: new Date(it.record.at).toISOString(),
  };
}
