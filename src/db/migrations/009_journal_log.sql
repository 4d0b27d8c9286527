-- The journal as an RFC 9162 Merkle log (contract §8.1; src/journal/log/).
--
-- Every journal row records the transaction that wrote it (`tx`). The sequencer integrates rows whose
-- transaction ended before the oldest one still running (pg_snapshot_xmin): nothing committed later can
-- have a smaller `tx`, so batches by `tx` never skip a row that commits late, and no instance needs to
-- hold a lock against writers.
alter table journal add column tx xid8 not null default pg_current_xact_id();
create index journal_tx on journal (tx, seq);

-- Leaf i of the log is journal row journal_seq. Append-only like the journal itself.
create table journal_leaves (
  leaf_index bigint primary key check (leaf_index >= 0),
  journal_seq bigint not null unique
);

-- C2SP tlog-tiles: one row per tile; a partial tile grows in place (its served `.p/W` is a prefix).
create table journal_tiles (
  level smallint not null check (level between 0 and 63),
  idx bigint not null check (idx >= 0),
  hashes bytea not null check (octet_length(hashes) between 32 and 8192 and octet_length(hashes) % 32 = 0),
  primary key (level, idx)
);

-- Every signed checkpoint (C2SP signed note), kept: verification checks each against the rows.
create table journal_checkpoints (
  size bigint primary key check (size >= 0),
  root bytea not null check (octet_length(root) = 32),
  note text not null,
  created_at timestamptz not null default clock_timestamp()
);

-- The sequencer's state: one row. Rows are integrated in (tx, seq) order; (last_tx, last_seq) is the
-- last one integrated, (size, root) the tree after it.
create table journal_log_state (
  id boolean primary key default true check (id),
  size bigint not null default 0,
  root bytea not null default '\xe3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  last_tx xid8 not null default '0',
  last_seq bigint not null default 0
);
insert into journal_log_state default values;

create trigger journal_leaves_no_update before update or delete on journal_leaves
  for each row execute function journal_is_append_only();
create trigger journal_leaves_no_truncate before truncate on journal_leaves
  for each statement execute function journal_is_append_only();
create trigger journal_checkpoints_no_update before update or delete on journal_checkpoints
  for each row execute function journal_is_append_only();
create trigger journal_checkpoints_no_truncate before truncate on journal_checkpoints
  for each statement execute function journal_is_append_only();
