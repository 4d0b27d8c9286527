-- The inbox without foreign keys (issue 5, bench:events).
--
-- Each inbox row referenced `partners` and `devices`. A foreign key check runs once per inserted row and
-- takes a FOR KEY SHARE lock on the referenced row; every concurrent batch of one partner locks the same
-- partner row, which PostgreSQL records as a MultiXact. Measured on the 2-core bench machine at 16–19k
-- events/s: PostgreSQL's CPU for the same ingestion fell from 81 % to 59 % of a core without them.
--
-- What the keys guaranteed is kept another way:
-- - rows are only written by the ingest route and the backfill, which take partner_id from the
--   authenticated partner and device_id from the registry's directory of THAT partner's devices;
-- - deleting a device is refused while the inbox holds unprocessed events of it, and deleting a partner
--   deletes its inbox rows and cursor with it (src/registry/service/);
-- - an event stored for a device deleted at the same moment is still journaled; device health skips
--   devices that no longer exist (src/device-health/sink.ts).
alter table event_inbox drop constraint if exists event_inbox_partner_id_fkey;
alter table event_inbox drop constraint if exists event_inbox_device_id_fkey;

-- A delivered batch is first stored by one plain, autocommitted INSERT (src/events/store.ts): cheaper
-- than INSERT … ON CONFLICT in a transaction (no speculative insertion, no BEGIN/COMMIT round trips),
-- and atomic all the same. It must fail, not skip the row, when an event lies at or below the partner's
-- contiguous mark (a purged event sent again, or a seq reused): this raises SQLSTATE SH001, and the
-- batch then takes the careful path that tells duplicates from conflicts.
create function event_inbox_below_mark(seq bigint) returns bigint language plpgsql as $$
begin
  raise exception 'event seq % is at or below the contiguous mark', seq using errcode = 'SH001';
end
$$;
