/**
 * C2SP tlog-tiles: the Merkle tree stored and served as tiles of 256 hashes (height 8).
 *
 * Tile (L, N) holds the hashes of tree level 8·L, indices [256·N, 256·N + W): at level 0 the leaf
 * hashes, above that the root of each full tile below. A partial tile (W < 256) is a prefix of the
 * full tile it grows into, so a store keeps one row per tile and serves `.p/W` as its first W hashes.
 *
 * {@link integrate} appends leaf hashes to a tree given its rightmost tiles, and returns every tile it
 * changed and the new root; {@link nodeFromTiles} reads any complete subtree's hash from tiles, which
 * is all the proof builders of merkle.ts need.
 */
import { HASH_SIZE, type NodeId, nodeHash, nodeKey, rootFromNodes, rootNodes } from './merkle.ts';

export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 256;

export interface TileId {
  level: number;
  index: number;
}

export interface Tile extends TileId {
  /** W·32 bytes, 1 ≤ W ≤ 256. */
  hashes: Buffer;
}

export const tileWidth = (t: { hashes: Uint8Array }): number => t.hashes.length / HASH_SIZE;

/** `x001/x234/067` for 1234067 (C2SP tlog-tiles path element encoding). */
export function encodeTileIndex(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`bad tile index ${n}`);
  const groups: string[] = [];
  let rest = n;
  do {
    groups.unshift(String(rest % 1000).padStart(3, '0'));
    rest = Math.floor(rest / 1000);
  } while (rest > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

/** `tile/<L>/<N>[.p/<W>]`, or `tile/entries/<N>[.p/<W>]` when level is 'entries'. */
export function tilePath(level: number | 'entries', index: number, width = TILE_WIDTH): string {
  const p = `tile/${level}/${encodeTileIndex(index)}`;
  if (width === TILE_WIDTH) return p;
  if (!Number.isInteger(width) || width < 1 || width > 255) throw new RangeError(`bad tile width ${width}`);
  return `${p}.p/${width}`;
}

/**
 * Parses the part after `tile/`: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`. Undefined when it is not
 * a canonical tile path (leading zeros, wrong groups, out of range).
 */
export function parseTilePath(
  p: string,
): { level: number | 'entries'; index: number; width: number } | undefined {
  const m = /^(entries|0|[1-9][0-9]?)\/((?:x[0-9]{3}\/)*[0-9]{3})(?:\.p\/([1-9][0-9]{0,2}))?$/.exec(p);
  if (!m) return undefined;
  const level = m[1] === 'entries' ? 'entries' : Number(m[1]);
  if (level !== 'entries' && level > 63) return undefined;
  const groups = m[2]!.split('/').map((g) => g.replace(/^x/, ''));
  if (groups.length > 1 && groups[0] === '000') return undefined; // no leading zero groups
  const index = groups.reduce((acc, g) => acc * 1000 + Number(g), 0);
  if (!Number.isSafeInteger(index)) return undefined;
  const width = m[3] ? Number(m[3]) : TILE_WIDTH;
  if (width > 255 && m[3]) return undefined;
  return { level, index, width };
}

/** The rightmost (partial) tile at each level of a tree of `size`, with its width; none when empty. */
export function partialTiles(size: number): Array<TileId & { width: number }> {
  const out: Array<TileId & { width: number }> = [];
  for (let level = 0; TILE_WIDTH ** level <= size; level++) {
    const atLevel = Math.floor(size / TILE_WIDTH ** level); // hashes at tree level 8·level
    const width = atLevel % TILE_WIDTH;
    if (width > 0) out.push({ level, index: Math.floor(atLevel / TILE_WIDTH), width });
  }
  return out;
}

/** Perfect-tree root of 2^k hashes laid end to end in `buf` from `start` (k ≤ 8). */
function perfectRoot(buf: Uint8Array, start: number, count: number): Buffer {
  let level: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const o = (start + i) * HASH_SIZE;
    level.push(Buffer.from(buf.subarray(o, o + HASH_SIZE)));
  }
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    level = next;
  }
  return level[0]!;
}

/** The tile holding the hashes a complete subtree is computed from, and which of them. */
export function tileOfNode(node: NodeId): TileId & { from: number; count: number } {
  const level = Math.floor(node.level / TILE_HEIGHT);
  const sub = node.level - level * TILE_HEIGHT;
  const first = node.index * 2 ** sub; // index at tree level 8·level
  return { level, index: Math.floor(first / TILE_WIDTH), from: first % TILE_WIDTH, count: 2 ** sub };
}

/** A complete subtree's hash from its tile (full, or a partial tile wide enough). */
export function nodeFromTiles(node: NodeId, tile: (id: TileId) => Uint8Array | undefined): Buffer {
  const t = tileOfNode(node);
  const hashes = tile(t);
  if (!hashes || hashes.length < (t.from + t.count) * HASH_SIZE) {
    throw new RangeError(`tile ${t.level}/${t.index} does not hold node ${node.level}/${node.index}`);
  }
  return perfectRoot(hashes, t.from, t.count);
}

/** The tiles the given nodes are read from (deduplicated). */
export function tilesForNodes(nodes: readonly NodeId[]): TileId[] {
  const seen = new Map<string, TileId>();
  for (const n of nodes) {
    const t = tileOfNode(n);
    seen.set(`${t.level}/${t.index}`, { level: t.level, index: t.index });
  }
  return [...seen.values()];
}

/** Node map for the proof builders of merkle.ts from tiles. */
export function nodesFromTiles(
  nodes: readonly NodeId[],
  tile: (id: TileId) => Uint8Array | undefined,
): Map<string, Buffer> {
  return new Map(nodes.map((n) => [nodeKey(n.level, n.index), nodeFromTiles(n, tile)]));
}

/**
 * Appends `leaves` (leaf hashes) to a tree of `size` whose rightmost tiles are given (exactly those of
 * {@link partialTiles}(size), as stored). Returns every tile that changed (complete contents) and the
 * root of the new tree. Pure: the caller stores the tiles and signs the checkpoint.
 */
export function integrate(
  size: number,
  rightmost: readonly Tile[],
  leaves: readonly Uint8Array[],
): { size: number; root: Buffer; tiles: Tile[] } {
  const expected = partialTiles(size);
  const byLevel = new Map<number, Buffer>();
  for (const e of expected) {
    const t = rightmost.find((r) => r.level === e.level && r.index === e.index);
    if (!t || tileWidth(t) < e.width)
      throw new RangeError(`tile ${e.level}/${e.index} (width ${e.width}) is missing`);
    byLevel.set(e.level, Buffer.from(t.hashes.subarray(0, e.width * HASH_SIZE)));
  }
  const changed = new Map<string, Tile>();
  // Hashes to append at each tile level; level 0 gets the leaves.
  let pending: Uint8Array[] = [...leaves];
  let countAtLevel = size; // hashes already at tree level 8·level
  for (let level = 0; pending.length > 0; level++) {
    // One full-width buffer per tile being filled; `filled` hashes of it are set.
    const start = byLevel.get(level);
    let current = Buffer.alloc(TILE_WIDTH * HASH_SIZE);
    let filled = 0;
    if (start) {
      start.copy(current);
      filled = start.length / HASH_SIZE;
    }
    let index = Math.floor(countAtLevel / TILE_WIDTH);
    const up: Uint8Array[] = [];
    for (const h of pending) {
      if (h.length !== HASH_SIZE) throw new RangeError('a leaf hash is 32 bytes');
      current.set(h, filled * HASH_SIZE);
      filled++;
      if (filled === TILE_WIDTH) {
        changed.set(`${level}/${index}`, { level, index, hashes: current });
        up.push(perfectRoot(current, 0, TILE_WIDTH));
        current = Buffer.alloc(TILE_WIDTH * HASH_SIZE);
        filled = 0;
        index++;
      }
    }
    if (filled > 0)
      changed.set(`${level}/${index}`, { level, index, hashes: current.subarray(0, filled * HASH_SIZE) });
    countAtLevel = Math.floor(countAtLevel / TILE_WIDTH);
    pending = up;
  }
  const newSize = size + leaves.length;
  // The root from the new rightmost tiles (changed, or unchanged from before).
  const lookup = (id: TileId): Uint8Array | undefined =>
    changed.get(`${id.level}/${id.index}`)?.hashes ??
    (byLevel.has(id.level) && expected.find((e) => e.level === id.level)?.index === id.index
      ? byLevel.get(id.level)
      : undefined);
  const need = rootNodes(newSize);
  const root = rootFromNodes(newSize, nodesFromTiles(need, lookup));
  return { size: newSize, root, tiles: [...changed.values()] };
}
