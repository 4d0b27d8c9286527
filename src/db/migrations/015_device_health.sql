-- Device health (issue 5, contract §9): online/offline from heartbeats and statuses, clock skew, status
-- history and operator alerts. Written by src/device-health/ inside the event processor's transaction,
-- and by its sweeper (heartbeat time-outs, reconciliation after a reboot).

-- Contract §9: "a device sends device.heartbeat at least every 30 s; it is offline for smart-home after
-- three missed heartbeats (both figures configurable per partner)".
alter table partners
  add column heartbeat_interval_s integer not null default 30
    check (heartbeat_interval_s between 5 and 3600),
  add column heartbeat_missed integer not null default 3
    check (heartbeat_missed between 1 and 100);

-- One row per device that has sent anything; a device without a row has never been heard from.
create table device_health (
  device_id uuid primary key references devices(id) on delete cascade,
  state text not null default 'unknown' check (state in ('unknown', 'online', 'offline')),
  -- (occurredAt, seq) of the event that last set `state`: an older event never overwrites a newer state
  -- (events arrive late and out of order, contract §9). A heartbeat time-out keeps them: the next
  -- heartbeat newer than the last one heard brings the device back.
  state_at timestamptz,
  state_seq bigint,
  -- the newest device.status (by occurredAt, seq) of an event recent enough to act upon
  last_status text,
  last_status_at timestamptz,
  last_status_seq bigint,
  -- our clock: when the newest event of the device was received (any event, stale ones too)
  last_seen_at timestamptz,
  -- our clock: when the newest liveness signal (a heartbeat or a status other than offline) was received;
  -- the sweeper's time-out counts from here, so a device clock that is off cannot keep a device online
  last_heartbeat_at timestamptz,
  -- the device's clock: the newest occurredAt seen
  last_occurred_at timestamptz,
  -- receivedAt − occurredAt of the newest received event (skew_at, skew_seq), and whether it is beyond
  -- SMART_HOME_DEVICE_MAX_SKEW_MS; the flag clears when a later event is back within the bound
  skew_ms bigint,
  skew_flagged boolean not null default false,
  skew_at timestamptz,
  skew_seq bigint,
  -- a reboot asks for the device's reconciliation; the sweeper runs it after commit and clears the flag,
  -- so a process dying right after the event's commit loses nothing
  reconcile_pending boolean not null default false,
  reconcile_requested_at timestamptz,
  updated_at timestamptz not null default now()
-- Every processed event batch updates its devices' rows: room on each page and no index on a column that
-- changes with every event (last seen, last heartbeat, skew) keep those updates HOT (heap-only, no index
-- writes) — measured 2–3× faster on PostgreSQL than with an index on last_heartbeat_at. The sweeper's
-- time-out scan reads the online rows without one (a few thousand devices per partner).
) with (fillfactor = 70);
create index device_health_reconcile on device_health (reconcile_requested_at) where reconcile_pending;

-- Every status a device reported (stale ones too: history, never action), and every time-out.
create table device_status_history (
  id bigint generated always as identity primary key,
  device_id uuid not null references devices(id) on delete cascade,
  status text not null check (status in ('online', 'offline', 'tamper', 'door_forced', 'door_held_open', 'reboot')),
  -- the device's clock; for a time-out, our clock when it was declared
  occurred_at timestamptz not null,
  received_at timestamptz not null,
  -- the partner's eventId; null for a state derived by smart-home (a heartbeat time-out)
  event_id uuid,
  source text not null check (source in ('event', 'heartbeat-timeout')),
  stale boolean not null default false,
  check ((source = 'event') = (event_id is not null))
);
create index device_status_history_device on device_status_history (device_id, occurred_at desc, id desc);
create unique index device_status_history_event on device_status_history (device_id, event_id)
  where event_id is not null;
-- the sweeper's purge of rows older than SMART_HOME_DEVICE_HISTORY_DAYS
create index device_status_history_received on device_status_history (received_at);

-- Operator alerts: tamper, door forced, door held open. At most one OPEN alert per device and kind; a
-- repeat while it is open counts on that alert instead of opening another.
create table device_alerts (
  id uuid primary key,
  device_id uuid not null references devices(id) on delete cascade,
  partner_id uuid not null references partners(id),
  kind text not null check (kind in ('tamper', 'door_forced', 'door_held_open')),
  -- our clock when it was opened; the device's clock of the first and latest events
  raised_at timestamptz not null,
  occurred_at timestamptz not null,
  last_occurred_at timestamptz not null,
  event_id uuid not null,
  occurrences integer not null default 1,
  resolved_at timestamptz,
  -- the operator's id (never a name)
  resolved_by text,
  resolution_note text,
  check ((resolved_at is null) = (resolved_by is null))
);
create unique index device_alerts_open on device_alerts (device_id, kind) where resolved_at is null;
create index device_alerts_raised on device_alerts (raised_at desc, id desc);
create index device_alerts_device on device_alerts (device_id, raised_at desc);

-- The service role (010_app_role.sql): default privileges cover tables created by the same owner; say
-- it explicitly so a migration run by another owner grants the same.
grant select, insert, update, delete on device_health, device_status_history, device_alerts to smart_home_app;
grant usage, select on sequence device_status_history_id_seq to smart_home_app;
