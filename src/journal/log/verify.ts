/**
 * `smart-home journal verify`: recomputes the Merkle log from the journal rows alone and checks every
 * stored checkpoint (its signature, and its root against the recomputed root at its size), the
 * sequencer's state and the stored level-0 tiles. Whatever was changed around the application and
 * its triggers — a row edited by a superuser, a row deleted, two rows swapped, a tail cut off — shows
 * up as a root that no longer matches a signed checkpoint.
 */
import type { Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { EMPTY_ROOT, leafHash, nodeHash } from '../../tlog/merkle.ts';
import { type NoteVerifier, openNote, parseCheckpoint } from '../../tlog/note.ts';
import { TILE_WIDTH } from '../../tlog/tiles.ts';
import { entryOf, JOURNAL_ROW_COLUMNS, type JournalRow } from './leaf.ts';
import { loadTiles, logState } from './sequencer.ts';

/** RFC 9162 root of a growing tree from its perfect subtrees (a compact range), leaf by leaf. */
export class CompactRange {
  /** Perfect subtree roots, largest (leftmost) first; sizes are the set bits of `size`. */
  readonly #hashes: Buffer[] = [];
  #size = 0;
  get size(): number {
    return this.#size;
  }
  append(leaf: Buffer): void {
    let h = leaf;
    let n = this.#size;
    while (n % 2 === 1) {
      h = nodeHash(this.#hashes.pop()!, h);
      n = Math.floor(n / 2);
    }
    this.#hashes.push(h);
    this.#size++;
  }
  root(): Buffer {
    if (this.#hashes.length === 0) return Buffer.from(EMPTY_ROOT);
    let h = this.#hashes[this.#hashes.length - 1]!;
    for (let i = this.#hashes.length - 2; i >= 0; i--) h = nodeHash(this.#hashes[i]!, h);
    return h;
  }
}

export interface VerifyOptions {
  /** Keys trusted to sign checkpoints (the log's own; old ones after a rotation). */
  verifiers: readonly NoteVerifier[];
  /** Expected origin line. */
  origin: string;
  /** Rows read per query. */
  chunk?: number;
  /**
   * Checkpoints kept outside this database — cosigned by a witness (contract §8.2), or saved by an
   * auditor — as signed notes. The rows must reach each one and give its root: this is what catches a
   * tail cut off together with its checkpoints.
   */
  anchors?: readonly string[];
  /**
   * Checkpoints cosigned by a witness (contract §8.2; src/journal/witness/anchors.ts), each with the
   * witness's own verifier (its cosignature/v1 key as registered): the cosignature must verify, and the
   * note is then an anchor like those of {@link anchors}.
   */
  witnessed?: ReadonlyArray<{ note: string; witness: NoteVerifier; label: string }>;
  onProgress?: (done: number, total: number) => void;
}

export interface VerifyResult {
  ok: boolean;
  /** Leaves recomputed. */
  size: number;
  checkpoints: number;
  /** What failed, in order found; empty when ok. */
  problems: string[];
}

export async function verifyLog(q: Queryable, opts: VerifyOptions): Promise<VerifyResult> {
  const problems: string[] = [];
  const state = await logState(q);
  const cps = await q.query<{ size: string; root: Buffer; note: string }>(
    sql`select c.size::text as size, c.root, c.note from journal_checkpoints c order by c.size`,
  );
  const checkpoints = cps.map((c) => ({ size: Number(c.size), root: Buffer.from(c.root), note: c.note }));
  const maxCheckpoint = checkpoints.length > 0 ? checkpoints[checkpoints.length - 1]!.size : 0;
  const total = Math.max(state.size, maxCheckpoint);
  // (anchors only add sizes to check; the total is what the rows should hold)
  // Checkpoint signatures and their own content first.
  for (const c of checkpoints) {
    try {
      const parsed = parseCheckpoint(openNote(c.note, opts.verifiers).text);
      if (parsed.origin !== opts.origin) problems.push(`checkpoint ${c.size}: origin ${parsed.origin}`);
      if (parsed.size !== c.size || !parsed.root.equals(c.root))
        problems.push(`checkpoint ${c.size}: note and row disagree`);
    } catch (err) {
      problems.push(`checkpoint ${c.size}: ${(err as Error).message}`);
    }
  }
  const bySize = new Map<number, { root: Buffer; what: string }>();
  for (const c of checkpoints) bySize.set(c.size, { root: c.root, what: `checkpoint ${c.size}` });
  let maxAnchor = 0;
  const anchorNotes = (opts.anchors ?? []).map((note, k) => ({ note, label: `anchor ${k + 1}` }));
  for (const w of opts.witnessed ?? []) {
    try {
      openNote(w.note, [w.witness]);
      anchorNotes.push({ note: w.note, label: w.label });
    } catch (err) {
      problems.push(`${w.label}: no valid cosignature by ${w.witness.name} (${(err as Error).message})`);
    }
  }
  for (const { note, label } of anchorNotes) {
    try {
      const a = parseCheckpoint(openNote(note, opts.verifiers).text);
      if (a.origin !== opts.origin) {
        problems.push(`${label}: origin ${a.origin}`);
        continue;
      }
      const same = bySize.get(a.size);
      if (same && !same.root.equals(a.root))
        problems.push(`${label}: a stored checkpoint of size ${a.size} has another root`);
      bySize.set(a.size, { root: a.root, what: `${label} (size ${a.size})` });
      maxAnchor = Math.max(maxAnchor, a.size);
    } catch (err) {
      problems.push(`${label}: ${(err as Error).message}`);
    }
  }
  const range = new CompactRange();
  const chunk = opts.chunk ?? 5000;
  let tile: Buffer[] = [];
  const checkTile = async (index: number) => {
    const [stored] = await loadTiles(q, [{ level: 0, index }]);
    const want = Buffer.concat(tile);
    if (!stored?.hashes.subarray(0, want.length).equals(want)) {
      problems.push(`tile 0/${index}: does not hold the rows' leaf hashes`);
    }
  };
  let next = 0;
  for (;;) {
    const rows = await q.query<JournalRow & { leaf_index: string; present: boolean }>(sql`
      select l.leaf_index::text as leaf_index, j.seq is not null as present, ${JOURNAL_ROW_COLUMNS}
      from journal_leaves l left join journal j on j.seq = l.journal_seq
      where l.leaf_index >= ${String(next)}::bigint order by l.leaf_index limit ${chunk}`);
    if (rows.length === 0) break;
    for (const r of rows) {
      const i = Number(r.leaf_index);
      if (i !== next) {
        problems.push(`leaves ${next}…${i - 1} are missing`);
        return { ok: false, size: next, checkpoints: checkpoints.length, problems };
      }
      let leaf: Buffer;
      if (!r.present) {
        problems.push(`leaf ${i}: its journal row is gone`);
        leaf = Buffer.alloc(32); // keeps the position so later checkpoints still name the damage
      } else {
        leaf = leafHash(entryOf(r));
      }
      range.append(leaf);
      tile.push(leaf);
      next++;
      if (tile.length === TILE_WIDTH) {
        await checkTile(Math.floor((next - 1) / TILE_WIDTH));
        tile = [];
      }
      const cp = bySize.get(next);
      if (cp && !cp.root.equals(range.root())) problems.push(`${cp.what}: root differs from the rows`);
    }
    opts.onProgress?.(next, total);
  }
  if (tile.length > 0) await checkTile(Math.floor((next - 1) / TILE_WIDTH));
  if (next < maxCheckpoint)
    problems.push(`the log has ${next} leaves but a checkpoint was signed for ${maxCheckpoint}`);
  if (next < maxAnchor) problems.push(`the log has ${next} leaves but an anchor checkpoint has ${maxAnchor}`);
  if (next !== state.size)
    problems.push(`the sequencer's state says ${state.size} leaves, the rows give ${next}`);
  else if (!state.root.equals(range.root())) problems.push("the sequencer's root differs from the rows");
  return { ok: problems.length === 0, size: next, checkpoints: checkpoints.length, problems };
}
