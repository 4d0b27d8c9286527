/**
 * Partner events (contract §9): the wire shape, and what the rest of smart-home sees once an event is
 * stored. Shared by the ingest route, the processor, the gap backfill, device health and the simulator.
 */
import { type Static, Type as T } from '@sinclair/typebox';
import type { Queryable } from '../db/db.ts';

const UUID_V7 = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$';
const RFC3339 = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$';

export const EVENT_TYPES = ['access.granted', 'access.denied', 'device.status', 'device.heartbeat'] as const;
export const EVENT_METHODS = ['face', 'app', 'key', 'plate', 'manual'] as const;
export const DEVICE_STATUSES = [
  'online',
  'offline',
  'tamper',
  'door_forced',
  'door_held_open',
  'reboot',
] as const;
/** Statuses that open an operator alert (issue 5). */
export const ALERT_STATUSES = ['tamper', 'door_forced', 'door_held_open'] as const;

const nullable = <S extends ReturnType<typeof T.String> | ReturnType<typeof T.Union>>(s: S) =>
  T.Union([s, T.Null()]);

/** One event as the partner sends it (contract §9). Unknown fields are refused. */
export const PartnerEvent = T.Object(
  {
    eventId: T.String({ pattern: UUID_V7 }),
    seq: T.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
    type: T.Union(EVENT_TYPES.map((t) => T.Literal(t))),
    occurredAt: T.String({ pattern: RFC3339, description: 'RFC 3339, the device clock' }),
    device: T.String({ minLength: 1, maxLength: 100, description: "the partner's own device id" }),
    method: nullable(T.Union(EVENT_METHODS.map((m) => T.Literal(m)))),
    subject: nullable(
      T.String({ pattern: '^[A-Za-z0-9_-]{1,100}$', description: 'pseudonym (contract §7)' }),
    ),
    status: nullable(T.Union(DEVICE_STATUSES.map((s) => T.Literal(s)))),
  },
  { additionalProperties: false },
);
export type PartnerEvent = Static<typeof PartnerEvent>;

/** `POST /partner/v1/events` body: 1 to 100 events. */
export const EventBatch = T.Object(
  { events: T.Array(PartnerEvent, { minItems: 1, maxItems: 100 }) },
  { additionalProperties: false },
);
export type EventBatch = Static<typeof EventBatch>;

export const EventBatchAnswer = T.Object(
  { accepted: T.Integer({ minimum: 0 }), duplicates: T.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);

/** How an event reached us. */
export type EventVia = 'delivery' | 'backfill';

/** An event once stored and being processed: what journal, device health and alerts work from. */
export interface StoredEvent {
  partnerId: string;
  eventId: string;
  seq: number;
  type: PartnerEvent['type'];
  occurredAt: Date;
  receivedAt: Date;
  /** Our internal device id. */
  deviceId: string;
  deviceExternalId: string;
  method: PartnerEvent['method'];
  /** The partner's pseudonym as received (never stored beyond the inbox). */
  subject: string | null;
  /** The resident the pseudonym resolved to (internal id), or null. */
  residentId: string | null;
  status: PartnerEvent['status'];
  /** receivedAt − occurredAt, ms (positive: the device clock is behind or delivery was late). */
  skewMs: number;
  /** Too old to act upon (SMART_HOME_EVENTS_STALE_AFTER_S): stored and journaled, never triggers actions. */
  stale: boolean;
  /** How it reached us (the processor always sets it; optional for fixtures built by hand). */
  via?: EventVia;
}

/**
 * What device health does with processed events, inside the processor's transaction (so an event's
 * journal entry, its health effect and its "processed" mark commit together, exactly once).
 */
export interface DeviceEventSink {
  apply(tx: Queryable, events: readonly StoredEvent[]): Promise<void>;
}
