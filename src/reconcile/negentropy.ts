/**
 * Negentropy v1 range-based set reconciliation (hoytech/negentropy, protocol byte 0x61): the wire
 * format of contract §8.4, over any {@link ReconStorage}. Both roles:
 *
 *   const client = new Negentropy(storage);            // the initiator
 *   let msg = client.initiate();
 *   for (;;) {
 *     const answer = await post(msg);                    // the other side: server.reconcile(msg)
 *     const r = client.reconcileAsInitiator(answer);     // collects have/need ids
 *     if (r.next === null) break;
 *     msg = r.next;
 *   }
 *
 * Unlike the only npm implementation, the server answers the final id lists (so the initiator learns
 * the whole difference), varints decode to 2^53 exactly and saturate beyond (times are milliseconds),
 * and everything is bytes.
 */
import { encodeVarInt, FINGERPRINT_SIZE, ID_SIZE, type ReconStorage } from './index.ts';

export const PROTOCOL_VERSION = 0x61;
const MODE_SKIP = 0;
const MODE_FINGERPRINT = 1;
const MODE_ID_LIST = 2;
const BUCKETS = 16;
/** The infinity timestamp (u64 max on the wire, encoded as 0). */
const INF = Number.POSITIVE_INFINITY;

export class NegentropyError extends Error {
  override readonly name = 'NegentropyError';
}

interface Bound {
  time: number;
  /** 0..32 bytes. */
  prefix: Uint8Array;
}

class Reader {
  #buf: Uint8Array;
  #pos = 0;
  constructor(buf: Uint8Array) {
    this.#buf = buf;
  }
  get done(): boolean {
    return this.#pos >= this.#buf.length;
  }
  byte(): number {
    if (this.#pos >= this.#buf.length) throw new NegentropyError('message ends prematurely');
    return this.#buf[this.#pos++]!;
  }
  bytes(n: number): Uint8Array {
    if (this.#pos + n > this.#buf.length) throw new NegentropyError('message ends prematurely');
    const out = this.#buf.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }
  /** A varint; values past 2^53 saturate to Infinity (only times can be that large). */
  varint(): number {
    let res = 0;
    for (let i = 0; ; i++) {
      if (i >= 10) throw new NegentropyError('varint too long');
      const b = this.byte();
      res = res * 128 + (b & 0x7f);
      if ((b & 0x80) === 0) break;
    }
    return Number.isSafeInteger(res) ? res : INF;
  }
}

class Writer {
  readonly parts: number[] = [];
  byte(b: number): void {
    this.parts.push(b);
  }
  varint(n: number): void {
    for (const b of encodeVarInt(n)) this.parts.push(b);
  }
  bytes(b: Uint8Array): void {
    for (const x of b) this.parts.push(x);
  }
  get length(): number {
    return this.parts.length;
  }
  toBuffer(): Buffer {
    return Buffer.from(this.parts);
  }
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!;
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export interface NegentropyOptions {
  /** Largest message in bytes (0: unlimited, else ≥ 4096), as the reference implementation. */
  frameSizeLimit?: number;
  /** Most ids one message may list (protects the server). Default 1,000,000. */
  maxIdsPerMessage?: number;
}

export class Negentropy {
  readonly #storage: ReconStorage;
  readonly #frameSizeLimit: number;
  readonly #maxIds: number;
  #initiator = false;
  #lastIn = 0;
  #lastOut = 0;

  constructor(storage: ReconStorage, opts: NegentropyOptions = {}) {
    const limit = opts.frameSizeLimit ?? 0;
    if (limit !== 0 && limit < 4096) throw new NegentropyError('frameSizeLimit too small');
    this.#storage = storage;
    this.#frameSizeLimit = limit;
    this.#maxIds = opts.maxIdsPerMessage ?? 1_000_000;
  }

  /** The first message of the initiator. */
  initiate(): Buffer {
    if (this.#initiator) throw new NegentropyError('already initiated');
    this.#initiator = true;
    this.#lastOut = 0;
    const w = new Writer();
    w.byte(PROTOCOL_VERSION);
    this.#splitRange(0, this.#storage.size, { time: INF, prefix: new Uint8Array(0) }, w);
    return w.toBuffer();
  }

  /** The server's answer to one message. */
  reconcile(query: Uint8Array): Buffer {
    if (this.#initiator) throw new NegentropyError('the initiator uses reconcileAsInitiator');
    return this.#reconcile(query, [], []);
  }

  /**
   * The initiator's step: the next message (null when done) and the ids found so far in this step —
   * `have`: only we hold them; `need`: only the other side does.
   */
  reconcileAsInitiator(answer: Uint8Array): { next: Buffer | null; have: Buffer[]; need: Buffer[] } {
    if (!this.#initiator) throw new NegentropyError('initiate first');
    const have: Buffer[] = [];
    const need: Buffer[] = [];
    const out = this.#reconcile(answer, have, need);
    return { next: out.length === 1 ? null : out, have, need };
  }

  #reconcile(query: Uint8Array, have: Buffer[], need: Buffer[]): Buffer {
    this.#lastIn = 0;
    this.#lastOut = 0;
    const r = new Reader(query);
    const full = new Writer();
    full.byte(PROTOCOL_VERSION);
    const version = r.byte();
    if (version < 0x60 || version > 0x6f) throw new NegentropyError('invalid protocol version byte');
    if (version !== PROTOCOL_VERSION) {
      if (this.#initiator) throw new NegentropyError(`unsupported protocol version ${version - 0x60}`);
      return full.toBuffer(); // tells the initiator which version we speak
    }
    const st = this.#storage;
    const size = st.size;
    let prevBound: Bound = { time: 0, prefix: new Uint8Array(0) };
    let prevIndex = 0;
    let skip = false;
    let idsSeen = 0;
    while (!r.done) {
      const o = new Writer();
      const doSkip = () => {
        if (skip) {
          skip = false;
          this.#encodeBound(prevBound, o);
          o.varint(MODE_SKIP);
        }
      };
      const currBound = this.#decodeBound(r);
      const mode = r.varint();
      const lower = prevIndex;
      let upper = st.lowerBound(prevIndex, size, currBound.time, currBound.prefix);
      if (mode === MODE_SKIP) {
        skip = true;
      } else if (mode === MODE_FINGERPRINT) {
        const theirs = r.bytes(FINGERPRINT_SIZE);
        const ours = st.fingerprint(lower, upper);
        if (compareBytes(theirs, ours) !== 0) {
          doSkip();
          this.#splitRange(lower, upper, currBound, o);
        } else {
          skip = true;
        }
      } else if (mode === MODE_ID_LIST) {
        const n = r.varint();
        idsSeen += n;
        if (!Number.isSafeInteger(n) || idsSeen > this.#maxIds)
          throw new NegentropyError('too many ids in one message');
        const theirs = new Map<string, Uint8Array>();
        for (let i = 0; i < n; i++) {
          const e = r.bytes(ID_SIZE);
          theirs.set(Buffer.from(e.buffer, e.byteOffset, ID_SIZE).toString('hex'), e);
        }
        for (let i = lower; i < upper; i++) {
          const k = Buffer.from(st.id(i)).toString('hex');
          if (theirs.has(k)) theirs.delete(k);
          else if (this.#initiator) have.push(Buffer.from(st.id(i)));
        }
        if (this.#initiator) {
          skip = true;
          for (const v of theirs.values()) need.push(Buffer.from(v));
        } else {
          doSkip();
          const ids = new Writer();
          let count = 0;
          let endBound: Bound = currBound;
          for (let i = lower; i < upper; i++) {
            if (this.#exceeded(full.length + ids.length)) {
              endBound = { time: st.time(i), prefix: st.id(i) };
              upper = i;
              break;
            }
            ids.bytes(st.id(i));
            count++;
          }
          this.#encodeBound(endBound, o);
          o.varint(MODE_ID_LIST);
          o.varint(count);
          for (const b of ids.parts) o.byte(b);
          for (const b of o.parts) full.byte(b);
          o.parts.length = 0;
        }
      } else {
        throw new NegentropyError(`unexpected mode ${mode}`);
      }
      if (this.#exceeded(full.length + o.length)) {
        // Over the frame limit: a fingerprint for everything left, resumed next round.
        const rest = st.fingerprint(upper, size);
        this.#encodeBound({ time: INF, prefix: new Uint8Array(0) }, full);
        full.varint(MODE_FINGERPRINT);
        full.bytes(rest);
        break;
      }
      for (const b of o.parts) full.byte(b);
      prevIndex = upper;
      prevBound = currBound;
    }
    return full.toBuffer();
  }

  #exceeded(n: number): boolean {
    return this.#frameSizeLimit !== 0 && n > this.#frameSizeLimit - 200;
  }

  #splitRange(lower: number, upper: number, upperBound: Bound, o: Writer): void {
    const st = this.#storage;
    const n = upper - lower;
    if (n < BUCKETS * 2) {
      this.#encodeBound(upperBound, o);
      o.varint(MODE_ID_LIST);
      o.varint(n);
      for (let i = lower; i < upper; i++) o.bytes(st.id(i));
      return;
    }
    const per = Math.floor(n / BUCKETS);
    const extra = n % BUCKETS;
    let curr = lower;
    for (let i = 0; i < BUCKETS; i++) {
      const size = per + (i < extra ? 1 : 0);
      const fp = st.fingerprint(curr, curr + size);
      curr += size;
      const next = curr === upper ? upperBound : this.#minimalBound(curr - 1, curr);
      this.#encodeBound(next, o);
      o.varint(MODE_FINGERPRINT);
      o.bytes(fp);
    }
  }

  #minimalBound(prev: number, curr: number): Bound {
    const st = this.#storage;
    const t = st.time(curr);
    if (t !== st.time(prev)) return { time: t, prefix: new Uint8Array(0) };
    const a = st.id(prev);
    const b = st.id(curr);
    let shared = 0;
    while (shared < ID_SIZE && a[shared] === b[shared]) shared++;
    return { time: t, prefix: Uint8Array.from(b.subarray(0, Math.min(shared + 1, ID_SIZE))) };
  }

  #encodeBound(b: Bound, o: Writer): void {
    if (b.time === INF) {
      this.#lastOut = INF;
      o.varint(0);
    } else {
      if (b.time < this.#lastOut) throw new NegentropyError('bounds out of order');
      o.varint(b.time - this.#lastOut + 1);
      this.#lastOut = b.time;
    }
    o.varint(b.prefix.length);
    o.bytes(b.prefix);
  }

  #decodeBound(r: Reader): Bound {
    const enc = r.varint();
    let time = enc === 0 ? INF : enc - 1 + this.#lastIn;
    if (!Number.isSafeInteger(time)) time = INF; // saturate, as the reference does past u64
    this.#lastIn = time;
    const len = r.varint();
    if (len > ID_SIZE) throw new NegentropyError('bound prefix longer than an id');
    return { time, prefix: r.bytes(len) };
  }
}
