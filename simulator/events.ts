/**
 * The partner's own event log (contract §9), as a vendor keeps it: every event its devices produce gets
 * the next `seq` (+1 per event, no gaps), a UUIDv7 `eventId` minted from the device's clock, and stays in
 * the log whether or not its delivery ever succeeds — the log is what `GET /v1/events?afterSeq=` serves
 * when smart-home sees a gap (simulator/events-server.ts).
 *
 * The devices: each has its own clock (skewed by `clockSkewMs`), sends `device.heartbeat` on its own
 * schedule, and can reboot (a `device.status` `reboot`, after which it has lost its subscription state
 * until smart-home reconciles it). Access events carry a method and a subject pseudonym (contract §7).
 * Everything random is drawn from a seeded generator, so a run is reproducible from its seed.
 */
import type { PartnerEvent } from '../src/events/model.ts';

/** A small, fast, seedable PRNG (mulberry32): reproducible fault injection, not cryptography. */
export class Rng {
  #s: number;
  constructor(seed: number) {
    this.#s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0;
    let t = this.#s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)] as T;
  }
  /** RFC 9562 UUIDv7 for the millisecond `ms`, its random bits from this generator. */
  uuidv7(ms: number): string {
    const b = Buffer.alloc(16);
    b.writeUIntBE(ms, 0, 6);
    for (let i = 6; i < 16; i += 2) b.writeUInt16BE(this.int(0x10000), i);
    b[6] = ((b[6] ?? 0) & 0x0f) | 0x70;
    b[8] = ((b[8] ?? 0) & 0x3f) | 0x80;
    const h = b.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
}

/** In-place Fisher–Yates shuffle of `items[from, to)`. */
export function shuffleRange<T>(items: T[], from: number, to: number, rng: Rng): void {
  for (let i = to - 1; i > from; i--) {
    const j = from + rng.int(i - from + 1);
    const tmp = items[i] as T;
    items[i] = items[j] as T;
    items[j] = tmp;
  }
}

/** What a device reports, before the log gives it a seq and an eventId. */
export type EventInput = Pick<PartnerEvent, 'type' | 'device'> &
  Partial<Pick<PartnerEvent, 'method' | 'subject' | 'status'>> & {
    /** The device clock's reading (ms); default: the log's clock plus the device's skew. */
    occurredAt?: number;
  };

/**
 * The partner's event log: append-only, seq from 1 with no gaps (contract §9). Reads by seq are O(1):
 * the backfill route pages through it.
 */
export class PartnerEventLog {
  readonly #events: PartnerEvent[] = [];
  readonly #rng: Rng;
  readonly #now: () => number;

  constructor(opts: { seed?: number; now?: () => number } = {}) {
    this.#rng = new Rng(opts.seed ?? 1);
    this.#now = opts.now ?? Date.now;
  }

  /** The highest seq in the log (0 when empty). */
  get lastSeq(): number {
    return this.#events.length;
  }

  append(input: EventInput): PartnerEvent {
    const at = input.occurredAt ?? this.#now();
    const event: PartnerEvent = {
      // The partner mints the id when the event happens, on the device's clock (contract §8.3).
      eventId: this.#rng.uuidv7(Math.max(0, Math.floor(at))),
      seq: this.#events.length + 1,
      type: input.type,
      occurredAt: new Date(at).toISOString(),
      device: input.device,
      method: input.method ?? null,
      subject: input.subject ?? null,
      status: input.status ?? null,
    };
    this.#events.push(event);
    return event;
  }

  /** Takes back events kept from an earlier run (seq must continue the log: 1, 2, … without gaps). */
  restore(events: Iterable<PartnerEvent>): void {
    for (const e of events) {
      if (e.seq !== this.#events.length + 1) throw new Error(`event log: seq ${e.seq} after ${this.lastSeq}`);
      this.#events.push(e);
    }
  }

  /** The event of `seq`, or undefined. */
  get(seq: number): PartnerEvent | undefined {
    return Number.isInteger(seq) && seq >= 1 ? this.#events[seq - 1] : undefined;
  }

  /** Contract §9 backfill: up to `limit` events with seq > `afterSeq`, in seq order. */
  after(afterSeq: number, limit: number): PartnerEvent[] {
    const from = Math.max(0, Math.floor(afterSeq));
    return this.#events.slice(from, from + Math.max(0, Math.floor(limit)));
  }

  /** Every event (seq order); the caller must not change them. */
  all(): readonly PartnerEvent[] {
    return this.#events;
  }
}

export interface DeviceSpec {
  /** The partner's own device id. */
  id: string;
  /** Added to the real time on this device's clock, ms (negative: behind). */
  clockSkewMs?: number;
}

export interface GeneratorOptions {
  devices: readonly (string | DeviceSpec)[];
  /** Pseudonyms of the residents the devices recognise (contract §7 `subject`); default: none. */
  subjects?: readonly string[];
  seed?: number;
  /** Share of access events that are denials (default 0.2). */
  deniedRatio?: number;
  /** A heartbeat per device every this many access events across all devices (default 0: none). */
  heartbeatEvery?: number;
  /** Share of events that are stale: their occurredAt lies `staleAgeMs` in the past (default 0). */
  staleRatio?: number;
  /** How far in the past a stale event happened (default 1 h). */
  staleAgeMs?: number;
  /** Share of events after which the device reboots (default 0). */
  rebootRatio?: number;
  /** Share of device.status events among the generated ones, with alert-worthy statuses (default 0). */
  statusRatio?: number;
  now?: () => number;
}

export interface DeviceState {
  id: string;
  clockSkewMs: number;
  /** What smart-home asked the device to hold; a reboot loses it (issue 5: reconciliation restores it). */
  subscribed: boolean;
  reboots: number;
  heartbeats: number;
}

const METHODS = ['face', 'app', 'key', 'plate', 'manual'] as const;
const ALERT_STATUSES = ['tamper', 'door_forced', 'door_held_open'] as const;

/**
 * The partner's devices producing events into a log, the way real ones do: access events (granted or
 * denied, by method, with a pseudonym where the device knows the person), heartbeats, reboots, alert
 * statuses, clocks that run ahead or behind, and some events reported long after they happened.
 */
export class DeviceFleet {
  readonly log: PartnerEventLog;
  readonly devices: Map<string, DeviceState>;
  readonly #rng: Rng;
  readonly #opts: GeneratorOptions;
  readonly #now: () => number;
  #sinceHeartbeat = 0;

  constructor(log: PartnerEventLog, opts: GeneratorOptions) {
    if (opts.devices.length === 0) throw new Error('a fleet needs at least one device');
    this.log = log;
    this.#opts = opts;
    this.#rng = new Rng((opts.seed ?? 1) ^ 0x5eed);
    this.#now = opts.now ?? Date.now;
    this.devices = new Map(
      opts.devices.map((d) => {
        const spec = typeof d === 'string' ? { id: d } : d;
        return [
          spec.id,
          { id: spec.id, clockSkewMs: spec.clockSkewMs ?? 0, subscribed: true, reboots: 0, heartbeats: 0 },
        ];
      }),
    );
  }

  /** The device clock of `id` (ms). */
  clock(id: string): number {
    return this.#now() + (this.devices.get(id)?.clockSkewMs ?? 0);
  }

  setClockSkew(id: string, ms: number): void {
    const d = this.devices.get(id);
    if (!d) throw new Error(`unknown device ${id}`);
    d.clockSkewMs = ms;
  }

  /** Smart-home reconciled the device: it holds its subscription state again. */
  resubscribe(id: string): void {
    const d = this.devices.get(id);
    if (d) d.subscribed = true;
  }

  #occurredAt(device: string): number {
    const o = this.#opts;
    const at = this.clock(device);
    return this.#rng.chance(o.staleRatio ?? 0) ? at - (o.staleAgeMs ?? 3_600_000) : at;
  }

  heartbeat(device: string): PartnerEvent {
    const d = this.devices.get(device);
    if (d) d.heartbeats++;
    return this.log.append({ type: 'device.heartbeat', device, occurredAt: this.clock(device) });
  }

  /** The device restarts: it reports `reboot` and has forgotten its subscription state. */
  reboot(device: string): PartnerEvent {
    const d = this.devices.get(device);
    if (d) {
      d.reboots++;
      d.subscribed = false;
    }
    return this.log.append({
      type: 'device.status',
      device,
      status: 'reboot',
      occurredAt: this.clock(device),
    });
  }

  status(device: string, status: NonNullable<PartnerEvent['status']>): PartnerEvent {
    return this.log.append({ type: 'device.status', device, status, occurredAt: this.#occurredAt(device) });
  }

  /** One access event at a random device. */
  access(): PartnerEvent {
    const o = this.#opts;
    const device = this.#rng.pick([...this.devices.keys()]);
    const denied = this.#rng.chance(o.deniedRatio ?? 0.2);
    const method = this.#rng.pick(METHODS);
    const subjects = o.subjects ?? [];
    // A denied stranger has no pseudonym; a key or a manual open may not name anyone either.
    const subject = !denied && subjects.length > 0 && method !== 'manual' ? this.#rng.pick(subjects) : null;
    return this.log.append({
      type: denied ? 'access.denied' : 'access.granted',
      device,
      method,
      subject,
      occurredAt: this.#occurredAt(device),
    });
  }

  /**
   * Produces `n` events into the log: access events, with heartbeats, statuses and reboots interleaved
   * as configured. Returns the events appended (heartbeats and reboots included; they count toward n).
   */
  produce(n: number): PartnerEvent[] {
    const o = this.#opts;
    const out: PartnerEvent[] = [];
    const ids = [...this.devices.keys()];
    while (out.length < n) {
      if (o.heartbeatEvery && ++this.#sinceHeartbeat >= o.heartbeatEvery) {
        this.#sinceHeartbeat = 0;
        for (const id of ids) if (out.length < n) out.push(this.heartbeat(id));
        continue;
      }
      if (this.#rng.chance(o.rebootRatio ?? 0)) {
        out.push(this.reboot(this.#rng.pick(ids)));
        continue;
      }
      if (this.#rng.chance(o.statusRatio ?? 0)) {
        out.push(this.status(this.#rng.pick(ids), this.#rng.pick(ALERT_STATUSES)));
        continue;
      }
      out.push(this.access());
    }
    return out;
  }
}
