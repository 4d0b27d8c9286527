import { Type as T, type TSchema } from '@sinclair/typebox';
import { ALERT_STATUSES, DEVICE_STATUSES } from '../events/model.ts';

/** JSON Schemas of device health in the operator API (`/admin/v1/devices`, `/admin/v1/alerts`). */

const Uuid = T.String({
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  description: 'UUID',
});
const Nullable = <S extends TSchema>(s: S) => T.Union([s, T.Null()]);
const Timestamp = (description = 'RFC 3339 date-time') => T.String({ description });

export const DEVICE_STATES = ['unknown', 'online', 'offline'] as const;
const State = T.Union(
  DEVICE_STATES.map((s) => T.Literal(s)),
  { description: 'unknown: never heard from' },
);
const Status = T.Union(DEVICE_STATUSES.map((s) => T.Literal(s)));
const AlertKind = T.Union(ALERT_STATUSES.map((s) => T.Literal(s)));

export const DeviceHealth = T.Object(
  {
    state: State,
    lastStatus: Nullable(Status),
    lastSeenAt: Nullable(Timestamp('when its newest event was received (our clock)')),
    lastHeartbeatAt: Nullable(
      Timestamp('when its newest heartbeat or status other than offline was received (our clock)'),
    ),
    lastOccurredAt: Nullable(Timestamp('the newest occurredAt it reported (its clock)')),
    skewMs: Nullable(
      T.Integer({
        description: 'receivedAt − occurredAt of its newest event, ms (positive: its clock is behind)',
      }),
    ),
    skewFlagged: T.Boolean({ description: '|skewMs| beyond SMART_HOME_DEVICE_MAX_SKEW_MS' }),
    reconcilePending: T.Boolean({ description: 'rebooted; reconciliation not yet run' }),
    openAlerts: T.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);

export const StatusChange = T.Object(
  {
    status: Status,
    occurredAt: Timestamp('the device clock; for a time-out, ours'),
    receivedAt: Timestamp(),
    eventId: Nullable(Uuid),
    source: T.Union([T.Literal('event'), T.Literal('heartbeat-timeout')]),
    stale: T.Boolean({ description: 'too old to act upon: recorded, not acted on' }),
  },
  { additionalProperties: false },
);

export const Alert = T.Object(
  {
    id: Uuid,
    deviceId: Uuid,
    partnerId: Uuid,
    kind: AlertKind,
    raisedAt: Timestamp('when the first event was received'),
    occurredAt: Timestamp('the first event’s time on the device'),
    lastOccurredAt: Timestamp('the latest repeat’s time on the device'),
    eventId: Uuid,
    occurrences: T.Integer({ minimum: 1, description: 'events of this kind while it was open' }),
    resolvedAt: Nullable(Timestamp()),
    resolvedBy: Nullable(T.String({ description: 'operator id' })),
    note: Nullable(T.String()),
  },
  { additionalProperties: false },
);

/** Filters of `GET /admin/v1/devices` beyond the registry's. */
export const DeviceHealthFilters = {
  state: State,
  flagged: T.Union([T.Literal('true'), T.Literal('false')], { description: 'clock skew flagged' }),
};

export const DeviceHistoryLimit = 20;

export const AlertQuery = T.Object(
  {
    state: T.Optional(
      T.Union([T.Literal('open'), T.Literal('resolved'), T.Literal('all')], { description: 'default open' }),
    ),
    deviceId: T.Optional(Uuid),
    partnerId: T.Optional(Uuid),
    kind: T.Optional(AlertKind),
    limit: T.Optional(
      T.String({
        pattern: '^([1-9][0-9]?|[1-4][0-9]{2}|500)$',
        description: 'items per page, 1–500 (default 50)',
      }),
    ),
    cursor: T.Optional(
      T.String({ pattern: '^[A-Za-z0-9_-]{1,200}$', description: 'the `nextCursor` of the previous page' }),
    ),
  },
  { additionalProperties: false },
);

export const AlertResolve = T.Object(
  {
    note: T.Optional(
      T.String({
        minLength: 1,
        maxLength: 1000,
        description: 'what was found and done; kept on the alert, not copied into the journal',
      }),
    ),
  },
  { additionalProperties: false },
);
