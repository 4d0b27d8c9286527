-- The role the service runs as (docs/security-model.md, "Database roles"): a group role that may read
-- and write the registry and its own state, but may only INSERT into the journal and its log — never
-- UPDATE, DELETE or TRUNCATE them. The tables' owner (who runs migrations) keeps every right; the
-- service's login role is made a member of smart_home_app and owns nothing. The append-only triggers
-- refuse such changes for the owner too; privileges make the refusal the database's own.
do $$
begin
  if not exists (select from pg_roles where rolname = 'smart_home_app') then
    create role smart_home_app nologin;
  end if;
  execute format('grant usage on schema %I to smart_home_app', current_schema());
  execute format('grant select, insert, update, delete on all tables in schema %I to smart_home_app', current_schema());
  execute format('grant usage, select on all sequences in schema %I to smart_home_app', current_schema());
  execute format('alter default privileges in schema %I grant select, insert, update, delete on tables to smart_home_app', current_schema());
  execute format('alter default privileges in schema %I grant usage, select on sequences to smart_home_app', current_schema());
end
$$;
revoke update, delete, truncate on journal, journal_leaves, journal_checkpoints from smart_home_app;
