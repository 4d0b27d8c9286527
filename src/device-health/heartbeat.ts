import { Type as T } from '@sinclair/typebox';

/**
 * Per-partner heartbeat settings (contract §9: "a device sends device.heartbeat at least every 30 s; it
 * is offline for smart-home after three missed heartbeats (both figures configurable per partner)").
 * The bounds match the check constraints of migration 015: below 5 s a heartbeat is load, not liveness;
 * above an hour or 100 misses an outage goes unnoticed too long.
 */
export const HEARTBEAT_DEFAULTS = { intervalSeconds: 30, missed: 3 } as const;

export interface HeartbeatSettings {
  intervalSeconds: number;
  missed: number;
}

const IntervalSeconds = T.Integer({
  minimum: 5,
  maximum: 3600,
  description: `seconds between a device's heartbeats (contract §9; default ${HEARTBEAT_DEFAULTS.intervalSeconds})`,
});
const Missed = T.Integer({
  minimum: 1,
  maximum: 100,
  description: `missed heartbeats after which a device is offline (default ${HEARTBEAT_DEFAULTS.missed})`,
});

/** Both figures, as the operator API shows and takes them. */
export const Heartbeat = T.Object(
  { intervalSeconds: IntervalSeconds, missed: Missed },
  { additionalProperties: false },
);
/** In a provisioning document: either figure may be left to its default. */
export const HeartbeatDocument = T.Object(
  { intervalSeconds: T.Optional(IntervalSeconds), missed: T.Optional(Missed) },
  { additionalProperties: false },
);
