-- Partner events (contract §9; src/events/).
--
-- The inbox: every event a partner delivered (or we fetched back through a backfill), stored before the
-- partner gets its 2xx ("2xx = stored durably"). The primary key makes an event exist once however many
-- instances receive its retries at the same time; `content_hash` (SHA-256 of the RFC 8785 canonical
-- event) tells a retry (same hash) from a conflict (same eventId, other content). The pseudonym in
-- `subject` never leaves this table: the journal holds the resident's internal id it resolves to.
create table event_inbox (
  partner_id uuid not null references partners(id),
  event_id uuid not null,
  seq bigint not null check (seq >= 1),
  type text not null check (type in ('access.granted', 'access.denied', 'device.status', 'device.heartbeat')),
  occurred_at timestamptz not null,
  received_at timestamptz not null,
  -- the partner's own device id as sent, and ours (the route only accepts the partner's own devices)
  device_external_id text not null,
  device_id uuid not null references devices(id),
  method text,
  subject text,
  status text,
  content_hash bytea not null check (octet_length(content_hash) = 32),
  via text not null check (via in ('delivery', 'backfill')),
  -- null until the processor journaled the event and handed it to device health (exactly once)
  processed_at timestamptz,
  primary key (partner_id, event_id),
  -- contract §9: seq is +1 per event per partner; two events with one seq is a conflict
  unique (partner_id, seq)
);
-- The processor's work queue: only the unprocessed rows, oldest first (`for update skip locked`).
create index event_inbox_unprocessed on event_inbox (received_at) where processed_at is null;

-- Per partner, what of its sequence we hold (contract §9 gaps): every seq ≤ `contiguous` is stored;
-- `max_seen` is the largest stored. A gap (max_seen > contiguous) older than the grace period is
-- backfilled from the partner, one instance at a time: the instance that sets `backfill_lease_until`
-- (a conditional UPDATE, decided by the row lock) runs it; a crashed instance's lease just expires.
create table event_cursors (
  partner_id uuid primary key references partners(id),
  contiguous bigint not null default 0 check (contiguous >= 0),
  max_seen bigint not null default 0 check (max_seen >= contiguous),
  -- when the current gap was first seen; null without a gap
  gap_since timestamptz,
  backfill_attempts integer not null default 0,
  backfill_next_at timestamptz,
  backfill_last_at timestamptz,
  backfill_last_error text,
  backfill_lease_until timestamptz,
  updated_at timestamptz not null default now()
);

-- The service role (010_app_role.sql): it reads, stores, marks processed and moves cursors. The
-- default privileges of 010 cover tables its owner creates; granted explicitly all the same, so the
-- rights do not depend on which role ran this migration.
grant select, insert, update on event_inbox, event_cursors to smart_home_app;
