/**
 * RFC 9162 §2.1 Merkle trees: hashing, audit paths (inclusion proofs) and consistency proofs, and
 * their verification.
 *
 * Proof generation never needs the whole tree: every node the RFC's recursion visits starts at a
 * multiple of the largest power of two not above its size, so it is either a complete subtree (a
 * stored node: level ℓ, index i covers leaves [i·2^ℓ, (i+1)·2^ℓ)) or the hash of two such parts.
 * {@link inclusionNodes} / {@link consistencyNodes} list the complete subtrees a proof needs, so a
 * store can fetch them in one go (from tiles), and {@link inclusionProof} / {@link consistencyProof}
 * then assemble the proof from a map of them.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export const HASH_SIZE = 32;

/** SHA-256 of nothing: the root of the empty tree (RFC 9162 §2.1.1). */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** `SHA-256(0x00 ‖ entry)` */
export function leafHash(entry: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(entry).digest();
}

/** `SHA-256(0x01 ‖ left ‖ right)` */
export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

/** Largest power of two strictly below n (n ≥ 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** A complete subtree: level ℓ, index i covers leaves [i·2^ℓ, (i+1)·2^ℓ). */
export interface NodeId {
  level: number;
  index: number;
}

export const nodeKey = (level: number, index: number): string => `${level}/${index}`;

/** Nodes by {@link nodeKey}. */
export type NodeMap = ReadonlyMap<string, Uint8Array>;

function isPow2(n: number): boolean {
  return n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

function log2(n: number): number {
  return Math.round(Math.log2(n));
}

/** Visits the complete subtrees making up MTH(D[begin:end]) (the RFC's recursion, flattened). */
function rangeParts(begin: number, end: number, out: NodeId[]): void {
  const n = end - begin;
  if (n <= 0) return;
  if (isPow2(n)) {
    out.push({ level: log2(n), index: begin / n });
    return;
  }
  const k = splitPoint(n);
  rangeParts(begin, begin + k, out);
  rangeParts(begin + k, end, out);
}

function rangeHash(begin: number, end: number, nodes: NodeMap): Buffer {
  const n = end - begin;
  if (isPow2(n)) {
    const level = log2(n);
    const h = nodes.get(nodeKey(level, begin / n));
    if (!h) throw new RangeError(`node ${level}/${begin / n} missing`);
    return Buffer.from(h);
  }
  const k = splitPoint(n);
  return nodeHash(rangeHash(begin, begin + k, nodes), rangeHash(begin + k, end, nodes));
}

/** The complete subtrees that the root of a tree of `size` leaves is computed from (its right border). */
export function rootNodes(size: number): NodeId[] {
  const out: NodeId[] = [];
  rangeParts(0, size, out);
  return out;
}

/** The root of a tree of `size` leaves from the nodes listed by {@link rootNodes}. */
export function rootFromNodes(size: number, nodes: NodeMap): Buffer {
  return size === 0 ? Buffer.from(EMPTY_ROOT) : rangeHash(0, size, nodes);
}

/** MTH over leaf hashes held in memory (tests, verification of a recomputed log). */
export function rootOfLeafHashes(leaves: readonly Uint8Array[]): Buffer {
  if (leaves.length === 0) return Buffer.from(EMPTY_ROOT);
  // Bottom-up with the RFC's shape: pair left to right, carry an odd last node up unchanged.
  let level: Uint8Array[] = [...leaves];
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    level = next;
  }
  return Buffer.from(level[0]!);
}

// ---- inclusion (RFC 9162 §2.1.3) ------------------------------------------------------------------

function checkIndex(index: number, size: number): void {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
    throw new RangeError(`leaf ${index} is not in a tree of ${size}`);
  }
}

function pathRanges(m: number, begin: number, end: number, out: Array<[number, number]>): void {
  const n = end - begin;
  if (n === 1) return;
  const k = splitPoint(n);
  if (m < k) {
    pathRanges(m, begin, begin + k, out);
    out.push([begin + k, end]);
  } else {
    pathRanges(m - k, begin + k, end, out);
    out.push([begin, begin + k]);
  }
}

/** The complete subtrees an inclusion proof of leaf `index` in a tree of `size` is built from. */
export function inclusionNodes(index: number, size: number): NodeId[] {
  checkIndex(index, size);
  const ranges: Array<[number, number]> = [];
  pathRanges(index, 0, size, ranges);
  const out: NodeId[] = [];
  for (const [b, e] of ranges) rangeParts(b, e, out);
  return out;
}

/** PATH(index, D[size]): the audit path, leaf side first. */
export function inclusionProof(index: number, size: number, nodes: NodeMap): Buffer[] {
  checkIndex(index, size);
  const ranges: Array<[number, number]> = [];
  pathRanges(index, 0, size, ranges);
  return ranges.map(([b, e]) => rangeHash(b, e, nodes));
}

/** RFC 9162 §2.1.3.2: the root an inclusion proof leads to, or undefined when it is malformed. */
export function rootFromInclusionProof(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
): Buffer | undefined {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size)
    return undefined;
  if (leaf.length !== HASH_SIZE || proof.some((p) => p.length !== HASH_SIZE)) return undefined;
  let fn = index;
  let sn = size - 1;
  let r: Buffer = Buffer.from(leaf);
  for (const p of proof) {
    if (sn === 0) return undefined;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : undefined;
}

export function verifyInclusion(
  index: number,
  size: number,
  leaf: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  const got = rootFromInclusionProof(index, size, leaf, proof);
  return got !== undefined && root.length === HASH_SIZE && timingSafeEqual(got, root);
}

// ---- consistency (RFC 9162 §2.1.4) ----------------------------------------------------------------

function checkSizes(size1: number, size2: number): void {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0 || size1 > size2) {
    throw new RangeError(`no consistency proof from ${size1} to ${size2}`);
  }
}

function subproofRanges(
  m: number,
  begin: number,
  end: number,
  whole: boolean,
  out: Array<[number, number]>,
): void {
  const n = end - begin;
  if (m === n) {
    if (!whole) out.push([begin, end]);
    return;
  }
  const k = splitPoint(n);
  if (m <= k) {
    subproofRanges(m, begin, begin + k, whole, out);
    out.push([begin + k, end]);
  } else {
    subproofRanges(m - k, begin + k, end, false, out);
    out.push([begin, begin + k]);
  }
}

function consistencyRanges(size1: number, size2: number): Array<[number, number]> {
  checkSizes(size1, size2);
  const out: Array<[number, number]> = [];
  if (size1 === 0 || size1 === size2) return out;
  subproofRanges(size1, 0, size2, true, out);
  return out;
}

/** The complete subtrees a consistency proof from `size1` to `size2` is built from. */
export function consistencyNodes(size1: number, size2: number): NodeId[] {
  const out: NodeId[] = [];
  for (const [b, e] of consistencyRanges(size1, size2)) rangeParts(b, e, out);
  return out;
}

/** PROOF(size1, D[size2]); empty when size1 is 0 or equals size2. */
export function consistencyProof(size1: number, size2: number, nodes: NodeMap): Buffer[] {
  return consistencyRanges(size1, size2).map(([b, e]) => rangeHash(b, e, nodes));
}

/** RFC 9162 §2.1.4.2. */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): boolean {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0 || size2 < size1)
    return false;
  if (proof.some((p) => p.length !== HASH_SIZE)) return false;
  const eq = (a: Uint8Array, b: Uint8Array) => a.length === b.length && timingSafeEqual(a, b);
  if (size1 === size2) return proof.length === 0 && eq(root1, root2);
  if (size1 === 0) return proof.length === 0;
  if (proof.length === 0 || root1.length !== HASH_SIZE || root2.length !== HASH_SIZE) return false;
  // If size1 is an exact power of two, prepend root1 to the proof.
  const path: Uint8Array[] = isPow2(size1) ? [root1, ...proof] : [...proof];
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr: Buffer = Buffer.from(path[0]!);
  let sr: Buffer = Buffer.from(path[0]!);
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && eq(fr, root1) && eq(sr, root2);
}
