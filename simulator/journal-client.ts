/**
 * The partner's side of contract §8.2 towards smart-home: it submits its own journal's newest
 * checkpoint to `POST /partner/v1/journal/witness/add-checkpoint` (C2SP tlog-witness) with the
 * consistency proof from the size smart-home last cosigned, and keeps smart-home's cosignature.
 */
import { rootFromNodes, rootNodes } from '../src/tlog/merkle.ts';
import { openNote, parseNote, verifierFromKeyString } from '../src/tlog/note.ts';
import { nodesFromTiles, TILE_WIDTH, tilesForNodes } from '../src/tlog/tiles.ts';
import { formatAddCheckpoint } from '../src/tlog/witness.ts';
import type { SimulatorJournal } from './journal.ts';
import type { PartnerClient } from './partner-client.ts';

export const WITNESS_PATH = '/partner/v1/journal/witness/add-checkpoint';

export interface SubmitResult {
  status: number;
  /** The size submitted. */
  size: number;
  /** smart-home's cosignature line(s) on 200. */
  cosignature?: string;
  /** On 409: the size smart-home says it holds. */
  knownSize?: number;
  /** Whether smart-home's response signature verified (undefined without its key). */
  signatureValid: boolean | undefined;
}

/** What the partner remembers of smart-home's witnessing of its log. */
export interface WitnessedByPeer {
  size: number;
  cosignature: string;
  note: string;
}

/**
 * Submits the journal's current checkpoint. `state` holds the last size smart-home cosigned (updated
 * on success). On a 409 naming another size, submits once more from that size (the witness's state is
 * the truth). With `witnessKey` (smart-home's cosignature verifier key string), a cosignature that does
 * not verify is an error.
 */
export async function submitCheckpoint(
  client: PartnerClient,
  journal: SimulatorJournal,
  state: { last?: WitnessedByPeer },
  opts: { witnessKey?: string; oldSize?: number; proof?: Buffer[] } = {},
): Promise<SubmitResult> {
  const cp = journal.checkpoint();
  const post = async (oldSize: number, proof: Buffer[]): Promise<SubmitResult> => {
    const res = await client.send<string>('POST', WITNESS_PATH, {
      scope: 'audit:exchange',
      rawBody: Buffer.from(formatAddCheckpoint({ oldSize, proof, note: cp.note }), 'utf8'),
      headers: { 'content-type': 'text/plain; charset=utf-8', accept: 'text/plain' },
    });
    const text = res.rawBody.toString('utf8');
    const out: SubmitResult = { status: res.status, size: cp.size, signatureValid: res.signatureValid };
    if (res.status === 200) out.cosignature = text;
    if (res.status === 409 && /^text\/x\.tlog\.size/.test(String(res.headers['content-type'] ?? ''))) {
      const m = /^(0|[1-9][0-9]{0,15})\n?$/.exec(text);
      if (m) out.knownSize = Number(m[1]);
    }
    return out;
  };
  const proofFrom = (oldSize: number) =>
    oldSize > 0 && oldSize < cp.size ? journal.consistency(oldSize, cp.size) : [];
  const first = opts.oldSize ?? state.last?.size ?? 0;
  let result = await post(first, opts.proof ?? proofFrom(first));
  if (
    opts.proof === undefined &&
    result.status === 409 &&
    result.knownSize !== undefined &&
    result.knownSize !== first &&
    result.knownSize <= cp.size
  ) {
    result = await post(result.knownSize, proofFrom(result.knownSize));
  }
  if (result.status === 200 && result.cosignature !== undefined) {
    if (opts.witnessKey) {
      const { text } = parseNote(cp.note);
      // Throws when the cosignature is not smart-home's or does not verify.
      openNote(`${text}\n${result.cosignature}`, [verifierFromKeyString(opts.witnessKey)]);
    }
    state.last = { size: cp.size, cosignature: result.cosignature, note: cp.note };
  }
  return result;
}

/**
 * Submits the checkpoint every `intervalMs` (contract §8.2: at least every 60 s) while the log grows:
 * a tick with nothing new since the last cosigned size sends nothing. Failures are kept in `errors`
 * and retried at the next tick. `tick()` runs one at once (tests, shutdown).
 */
export function startCheckpointSubmitter(
  client: PartnerClient,
  journal: SimulatorJournal,
  opts: { intervalMs?: number; witnessKey?: string } = {},
): {
  state: { last?: WitnessedByPeer };
  errors: unknown[];
  readonly submissions: number;
  tick(): Promise<void>;
  stop(): void;
} {
  const state: { last?: WitnessedByPeer } = {};
  const errors: unknown[] = [];
  let submissions = 0;
  let running: Promise<void> | undefined;
  const once = async () => {
    if (journal.size === 0 || state.last?.size === journal.size) return;
    submissions++;
    try {
      const r = await submitCheckpoint(
        client,
        journal,
        state,
        opts.witnessKey ? { witnessKey: opts.witnessKey } : {},
      );
      if (r.status !== 200) errors.push(new Error(`add-checkpoint answered ${r.status}`));
    } catch (err) {
      errors.push(err);
    }
  };
  const tick = () => {
    running ??= once().finally(() => {
      running = undefined;
    });
    return running;
  };
  const timer = setInterval(() => void tick(), opts.intervalMs ?? 60_000);
  timer.unref();
  return {
    state,
    errors,
    get submissions() {
      return submissions;
    },
    tick,
    stop: () => clearInterval(timer),
  };
}

/** The width of tile (level, index) in a tree of `size`: 256 when full, else its partial width. */
export function tileWidthAt(level: number, index: number, size: number): number {
  const atLevel = Math.floor(size / TILE_WIDTH ** level);
  return Math.max(0, Math.min(TILE_WIDTH, atLevel - index * TILE_WIDTH));
}

/**
 * Recomputes the root of a tree of `size` from its hash tiles, fetched as a C2SP tlog-tiles client
 * would (`fetch(level, index, width)`): what a party checks a checkpoint's root hash against.
 */
export async function rootFromTiles(
  size: number,
  fetch: (level: number, index: number, width: number) => Promise<Uint8Array> | Uint8Array,
): Promise<Buffer> {
  const need = rootNodes(size);
  const tiles = new Map<string, Uint8Array>();
  for (const id of tilesForNodes(need)) {
    const width = tileWidthAt(id.level, id.index, size);
    const hashes = await fetch(id.level, id.index, width);
    if (hashes.length !== width * 32) throw new Error(`tile ${id.level}/${id.index} has the wrong width`);
    tiles.set(`${id.level}/${id.index}`, hashes);
  }
  return rootFromNodes(
    size,
    nodesFromTiles(need, (id) => tiles.get(`${id.level}/${id.index}`)),
  );
}
