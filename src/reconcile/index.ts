/**
 * The reconciliation index (contract §8.4): items (time, element) sorted by time then element, held
 * as columns — a Float64Array of millisecond times and one Uint8Array of 32-byte elements — with
 * block prefix sums of the elements (mod 2^256, the Negentropy v1 accumulator) every
 * {@link BLOCK} items. A range's fingerprint is then two prefix look-ups and at most 2·(BLOCK−1)
 * additions, whatever the range's size: microseconds, where a scanning storage needs the whole range.
 *
 * One index per day; {@link ReconIndex.append} extends a day as it grows (items at or after its last
 * one), and {@link concatIndexes} presents consecutive days as one sorted sequence.
 */
import { createHash } from 'node:crypto';

export const ID_SIZE = 32;
export const FINGERPRINT_SIZE = 16;
/** Items per prefix-sum block: memory n/BLOCK·32 bytes, at most 2·(BLOCK−1) additions per fingerprint. */
export const BLOCK = 64;

/** What the Negentropy engine reads: a sorted sequence of (time, id) with range fingerprints. */
export interface ReconStorage {
  readonly size: number;
  time(i: number): number;
  /** The element at i (a view; do not keep it across appends). */
  id(i: number): Uint8Array;
  /** Negentropy v1 fingerprint of items [lo, hi). */
  fingerprint(lo: number, hi: number): Buffer;
  /** First index in [lo, hi) whose item is ≥ (time, id prefix zero-filled); hi when none. */
  lowerBound(lo: number, hi: number, time: number, idPrefix: Uint8Array): number;
}

// ---- 256-bit little-endian accumulator (8 × u32 limbs) ------------------------------------------------

/** acc += the 32 bytes of `src` at `off` (both little-endian 256-bit integers, mod 2^256). */
export function addId(acc: Uint32Array, accOff: number, src: Uint8Array, off: number): void {
  let carry = 0;
  for (let k = 0; k < 8; k++) {
    const o = off + 4 * k;
    const w = (src[o]! | (src[o + 1]! << 8) | (src[o + 2]! << 16) | (src[o + 3]! << 24)) >>> 0;
    const s = acc[accOff + k]! + w + carry;
    acc[accOff + k] = s >>> 0;
    carry = s > 0xffffffff ? 1 : 0;
  }
}

function addLimbs(acc: Uint32Array, a: Uint32Array, aOff: number): void {
  let carry = 0;
  for (let k = 0; k < 8; k++) {
    const s = acc[k]! + a[aOff + k]! + carry;
    acc[k] = s >>> 0;
    carry = s > 0xffffffff ? 1 : 0;
  }
}

function subLimbs(acc: Uint32Array, b: Uint32Array): void {
  let borrow = 0;
  for (let k = 0; k < 8; k++) {
    let d = acc[k]! - b[k]! - borrow;
    borrow = d < 0 ? 1 : 0;
    if (d < 0) d += 0x100000000;
    acc[k] = d;
  }
}

export function encodeVarInt(n: number): number[] {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`varint out of range: ${n}`);
  const out = [n % 128];
  let rest = Math.floor(n / 128);
  while (rest > 0) {
    out.unshift((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  return out;
}

/** Negentropy v1: SHA-256(sum as 32 bytes LE ‖ varint(count))[:16]. */
export function fingerprintOf(sum: Uint32Array, count: number): Buffer {
  const bytes = Buffer.from(sum.buffer, sum.byteOffset, 32);
  // Uint32Array is host-endian: every supported host (x86-64, arm64) is little-endian.
  return createHash('sha256')
    .update(bytes)
    .update(Uint8Array.from(encodeVarInt(count)))
    .digest()
    .subarray(0, FINGERPRINT_SIZE);
}

/** prefix[j] = sum of ids [0, j·BLOCK) (8 limbs each), from ids as u32 limbs (little-endian host). */
function blockPrefixSums(w: Uint32Array, n: number): Uint32Array {
  const prefix = new Uint32Array((Math.floor(n / BLOCK) + 1) * 8);
  let a0 = 0;
  let a1 = 0;
  let a2 = 0;
  let a3 = 0;
  let a4 = 0;
  let a5 = 0;
  let a6 = 0;
  let a7 = 0;
  for (let i = 0; i < n; i++) {
    const o = i * 8;
    let s = a0 + w[o]!;
    a0 = s >>> 0;
    s = a1 + w[o + 1]! + (s > 0xffffffff ? 1 : 0);
    a1 = s >>> 0;
    s = a2 + w[o + 2]! + (s > 0xffffffff ? 1 : 0);
    a2 = s >>> 0;
    s = a3 + w[o + 3]! + (s > 0xffffffff ? 1 : 0);
    a3 = s >>> 0;
    s = a4 + w[o + 4]! + (s > 0xffffffff ? 1 : 0);
    a4 = s >>> 0;
    s = a5 + w[o + 5]! + (s > 0xffffffff ? 1 : 0);
    a5 = s >>> 0;
    s = a6 + w[o + 6]! + (s > 0xffffffff ? 1 : 0);
    a6 = s >>> 0;
    s = a7 + w[o + 7]! + (s > 0xffffffff ? 1 : 0);
    a7 = s >>> 0;
    if ((i + 1) % BLOCK === 0) {
      const p = ((i + 1) / BLOCK) * 8;
      prefix[p] = a0;
      prefix[p + 1] = a1;
      prefix[p + 2] = a2;
      prefix[p + 3] = a3;
      prefix[p + 4] = a4;
      prefix[p + 5] = a5;
      prefix[p + 6] = a6;
      prefix[p + 7] = a7;
    }
  }
  return prefix;
}

function compareId(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, len: number): number {
  for (let k = 0; k < len; k++) {
    const d = a[aOff + k]! - b[bOff + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

// ---- the day index ---------------------------------------------------------------------------------------

export class ReconIndex implements ReconStorage {
  #times: Float64Array;
  #ids: Uint8Array;
  /** prefix[j] = sum of ids [0, j·BLOCK), 8 limbs each. */
  #prefix: Uint32Array;
  #size = 0;
  readonly #scratch = new Uint32Array(8);
  readonly #scratch2 = new Uint32Array(8);

  constructor(capacity = 1024) {
    const cap = Math.max(BLOCK, capacity);
    this.#times = new Float64Array(cap);
    this.#ids = new Uint8Array(cap * ID_SIZE);
    this.#prefix = new Uint32Array((Math.floor(cap / BLOCK) + 1) * 8);
  }

  /**
   * Builds from columns already sorted by (time, id) — as a database returns them with
   * `order by time, element`. Checks the order and refuses duplicates.
   */
  static fromSorted(times: ArrayLike<number>, ids: Uint8Array): ReconIndex {
    const n = times.length;
    if (ids.length !== n * ID_SIZE) throw new RangeError('ids must be 32 bytes per time');
    const index = new ReconIndex(0);
    // Adopt the columns as they are (no copy) when they have the layout the index keeps.
    const t = times instanceof Float64Array ? times : Float64Array.from(times);
    const own = ids.byteOffset % 4 === 0 ? ids : Uint8Array.from(ids);
    for (let i = 0; i < n; i++) {
      const ti = t[i]!;
      if (!(ti >= 0) || !Number.isFinite(ti)) throw new RangeError(`bad time ${ti}`);
      if (i > 0) {
        const tp = t[i - 1]!;
        if (ti < tp) throw new RangeError('items must come sorted by (time, element)');
        if (ti === tp) {
          const c = compareId(own, i * ID_SIZE, own, (i - 1) * ID_SIZE, ID_SIZE);
          if (c < 0) throw new RangeError('items must come sorted by (time, element)');
          if (c === 0) throw new RangeError('duplicate item');
        }
      }
    }
    index.#times = t;
    index.#ids = own;
    index.#size = n;
    index.#prefix = blockPrefixSums(new Uint32Array(own.buffer, own.byteOffset, n * 8), n);
    return index;
  }

  get size(): number {
    return this.#size;
  }

  time(i: number): number {
    return this.#times[i]!;
  }

  id(i: number): Uint8Array {
    return this.#ids.subarray(i * ID_SIZE, (i + 1) * ID_SIZE);
  }

  get lastTime(): number {
    return this.#size === 0 ? Number.NEGATIVE_INFINITY : this.#times[this.#size - 1]!;
  }

  /** Bytes held (columns and prefix sums), for the benchmark's memory figure. */
  get byteLength(): number {
    return this.#times.byteLength + this.#ids.byteLength + this.#prefix.byteLength;
  }

  #grow(min: number): void {
    if (this.#times.length >= min) return;
    let cap = Math.max(BLOCK, this.#times.length);
    while (cap < min) cap *= 2;
    const t = new Float64Array(cap);
    t.set(this.#times.subarray(0, this.#size));
    const ids = new Uint8Array(cap * ID_SIZE);
    ids.set(this.#ids.subarray(0, this.#size * ID_SIZE));
    const p = new Uint32Array((Math.floor(cap / BLOCK) + 1) * 8);
    p.set(this.#prefix.subarray(0, (Math.floor(this.#size / BLOCK) + 1) * 8));
    this.#times = t;
    this.#ids = ids;
    this.#prefix = p;
  }

  /** Orders (time, id at off) against item i: negative when it sorts before item i. */
  #cmpItem(time: number, id: Uint8Array, off: number, i: number): number {
    const t = this.#times[i]!;
    if (time !== t) return time < t ? -1 : 1;
    return compareId(id, off, this.#ids, i * ID_SIZE, ID_SIZE);
  }

  #appendMany(times: ArrayLike<number>, ids: Uint8Array, from: number, to: number): void {
    this.#grow(this.#size + (to - from));
    const acc = this.#scratch;
    // The running sum since the last block boundary.
    const base = Math.floor(this.#size / BLOCK) * 8;
    acc.set(this.#prefix.subarray(base, base + 8));
    for (let i = Math.floor(this.#size / BLOCK) * BLOCK; i < this.#size; i++)
      addId(acc, 0, this.#ids, i * ID_SIZE);
    for (let k = from; k < to; k++) {
      const t = times[k]!;
      if (!Number.isFinite(t) || t < 0) throw new RangeError(`bad time ${t}`);
      const n = this.#size;
      if (n > 0) {
        const c = this.#cmpItem(t, ids, k * ID_SIZE, n - 1);
        if (c < 0) throw new RangeError('items must come sorted by (time, element)');
        if (c === 0) throw new RangeError('duplicate item');
      }
      this.#times[n] = t;
      this.#ids.set(ids.subarray(k * ID_SIZE, (k + 1) * ID_SIZE), n * ID_SIZE);
      addId(acc, 0, this.#ids, n * ID_SIZE);
      this.#size = n + 1;
      if (this.#size % BLOCK === 0) this.#prefix.set(acc, (this.#size / BLOCK) * 8);
    }
  }

  /** Appends items sorted by (time, id) that sort after the last one held. */
  append(times: ArrayLike<number>, ids: Uint8Array): void {
    if (ids.length !== times.length * ID_SIZE) throw new RangeError('ids must be 32 bytes per time');
    this.#appendMany(times, ids, 0, times.length);
  }

  /** Sum of ids [0, x) into `out`. */
  #sumTo(x: number, out: Uint32Array): void {
    const b = Math.floor(x / BLOCK);
    out.set(this.#prefix.subarray(b * 8, b * 8 + 8));
    for (let i = b * BLOCK; i < x; i++) addId(out, 0, this.#ids, i * ID_SIZE);
  }

  /** Sum of ids [lo, hi), 8 limbs (a copy). */
  sum(lo: number, hi: number): Uint32Array {
    if (lo < 0 || hi > this.#size || lo > hi) throw new RangeError(`bad range [${lo}, ${hi})`);
    const out = new Uint32Array(8);
    if (hi - lo <= BLOCK) {
      for (let i = lo; i < hi; i++) addId(out, 0, this.#ids, i * ID_SIZE);
      return out;
    }
    this.#sumTo(hi, out);
    this.#sumTo(lo, this.#scratch2);
    subLimbs(out, this.#scratch2);
    return out;
  }

  fingerprint(lo: number, hi: number): Buffer {
    return fingerprintOf(this.sum(lo, hi), hi - lo);
  }

  lowerBound(lo: number, hi: number, time: number, idPrefix: Uint8Array): number {
    const bound = new Uint8Array(ID_SIZE);
    bound.set(idPrefix.subarray(0, ID_SIZE));
    let first = lo;
    let count = hi - lo;
    while (count > 0) {
      const step = Math.floor(count / 2);
      const it = first + step;
      if (this.#cmpItem(time, bound, 0, it) > 0) {
        first = it + 1;
        count -= step + 1;
      } else {
        count = step;
      }
    }
    return first;
  }
}

/**
 * Consecutive day indexes (each day's items all before the next day's) seen as one sorted sequence,
 * optionally cut to the items with from ≤ time < to.
 */
export function concatIndexes(
  days: readonly ReconIndex[],
  from = 0,
  to = Number.POSITIVE_INFINITY,
): ReconStorage {
  const parts: Array<{ index: ReconIndex; lo: number; hi: number; start: number }> = [];
  let start = 0;
  const none = new Uint8Array(0);
  for (const index of days) {
    const lo = index.lowerBound(0, index.size, from, none);
    const hi = index.lowerBound(lo, index.size, to, none);
    if (hi > lo) {
      if (parts.length > 0) {
        const prev = parts[parts.length - 1]!;
        if (prev.index.time(prev.hi - 1) > index.time(lo))
          throw new RangeError('day indexes overlap or are out of order');
      }
      parts.push({ index, lo, hi, start });
      start += hi - lo;
    }
  }
  const size = start;
  const locate = (i: number) => {
    let a = 0;
    let b = parts.length - 1;
    while (a < b) {
      const m = (a + b + 1) >> 1;
      if (parts[m]!.start <= i) a = m;
      else b = m - 1;
    }
    const p = parts[a]!;
    return { p, at: p.lo + (i - p.start) };
  };
  return {
    size,
    time(i) {
      const { p, at } = locate(i);
      return p.index.time(at);
    },
    id(i) {
      const { p, at } = locate(i);
      return p.index.id(at);
    },
    fingerprint(lo, hi) {
      if (lo < 0 || hi > size || lo > hi) throw new RangeError(`bad range [${lo}, ${hi})`);
      const total = new Uint32Array(8);
      for (const p of parts) {
        const a = Math.max(lo, p.start);
        const b = Math.min(hi, p.start + (p.hi - p.lo));
        if (a < b) addLimbs(total, p.index.sum(p.lo + (a - p.start), p.lo + (b - p.start)), 0);
      }
      return fingerprintOf(total, hi - lo);
    },
    lowerBound(lo, hi, time, idPrefix) {
      for (const p of parts) {
        const end = p.start + (p.hi - p.lo);
        if (end <= lo) continue;
        if (p.start >= hi) return hi;
        const a = p.lo + (Math.max(lo, p.start) - p.start);
        const b = p.lo + (Math.min(hi, end) - p.start);
        const at = p.index.lowerBound(a, b, time, idPrefix);
        if (at < b) return p.start + (at - p.lo);
      }
      return hi;
    },
  };
}
