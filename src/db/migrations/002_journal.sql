-- The journal: every access decision and every provisioning change, written in the same transaction as
-- the change itself. Append-only: the application has no UPDATE or DELETE path, and these triggers
-- refuse both (and TRUNCATE) for anyone who is not a superuser bypassing triggers.
create table journal (
  seq bigint generated always as identity primary key,
  id uuid not null unique,
  at timestamptz not null default clock_timestamp(),
  actor_type text not null check (actor_type in ('partner', 'resident', 'operator', 'system')),
  actor_id text,
  action text not null,
  partner_id uuid,
  device_id uuid,
  subject_type text,
  subject_id text,
  result text not null,
  request_id text,
  -- internal ids and pseudonyms only: no names, phones or plates (checked in tests)
  details jsonb not null default '{}'
);
create index journal_at on journal (at);
create index journal_device on journal (device_id, at);
create index journal_partner on journal (partner_id, at);

create function journal_is_append_only() returns trigger language plpgsql as $$
begin
  raise exception 'journal is append-only (% refused)', tg_op using errcode = 'insufficient_privilege';
end;
$$;

create trigger journal_no_update before update or delete on journal
  for each row execute function journal_is_append_only();
create trigger journal_no_truncate before truncate on journal
  for each statement execute function journal_is_append_only();
