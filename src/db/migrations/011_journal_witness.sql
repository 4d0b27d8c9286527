-- Contract §8.2, witnessing both ways (src/journal/witness/).
--
-- A partner's journal keys, as C2SP signed-note verifier keys (`name+id+base64(type ‖ key)`):
-- `log_key` (type 0x01, Ed25519) checks the checkpoints of the partner's own journal; its name is the
-- log's origin (`log_origin`, kept apart so it is unique and looked up by an index). `witness_key`
-- (type 0x04, cosignature/v1) checks the partner's cosignatures of smart-home's checkpoints.
alter table partners add column log_key text;
alter table partners add column log_origin text;
alter table partners add column witness_key text;
alter table partners add constraint partners_log_origin_with_key
  check ((log_key is null) = (log_origin is null));
create unique index partners_log_origin on partners (log_origin);

-- smart-home as the witness of a partner's log: the newest checkpoint it cosigned for that partner
-- and origin. A row is created at size 0 (note null) and then only moved forward, under its row lock
-- (`select … for update`) in the transaction that cosigns, so two instances never roll a size back.
create table witness_state (
  partner_id uuid not null references partners(id) on delete cascade,
  origin text not null,
  size bigint not null default 0 check (size >= 0),
  root bytea check (root is null or octet_length(root) = 32),
  note text,
  updated_at timestamptz not null default clock_timestamp(),
  primary key (partner_id, origin),
  check ((size = 0) = (note is null))
);

-- smart-home's checkpoints as cosigned by a partner (the submitter): our signed checkpoint with the
-- partner's verified cosignature line appended, a self-contained anchor for `journal verify`. The
-- verifier key it was checked with is kept, so the anchor stays checkable after a key change. No
-- foreign key: like the journal, this evidence outlives the partner's registration.
create table witness_cosignatures (
  partner_id uuid not null,
  size bigint not null check (size >= 0),
  root bytea not null check (octet_length(root) = 32),
  note text not null,
  witness_key text not null,
  cosigned_at timestamptz not null,
  received_at timestamptz not null default clock_timestamp(),
  primary key (partner_id, size)
);

create trigger witness_cosignatures_no_update before update or delete on witness_cosignatures
  for each row execute function journal_is_append_only();
create trigger witness_cosignatures_no_truncate before truncate on witness_cosignatures
  for each statement execute function journal_is_append_only();
revoke update, delete, truncate on witness_cosignatures from smart_home_app;
