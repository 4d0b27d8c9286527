-- Grants revoked by the people's authorization server (a replayed refresh token, a reused code, a
-- revocation): the API refuses their access tokens at once, not only at their exp. A row is kept as
-- long as any access token of the grant could still be valid, then purged by housekeeping.
create table revoked_grants (
  grant_id text primary key,
  revoked_at timestamptz not null default now(),
  expires_at timestamptz not null
);
create index revoked_grants_expiry on revoked_grants (expires_at);
