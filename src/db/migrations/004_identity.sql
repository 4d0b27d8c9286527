-- The people's authorization server (issue 3): oidc-provider's models, sign-in challenges, operators.

-- Every oidc-provider model (Session, Grant, AuthorizationCode, RefreshToken, Interaction,
-- PushedAuthorizationRequest, ReplayDetection, …) in one table; the payload is the provider's own JSON.
-- Tokens are stored by their id (the provider's jti), which is the token value itself for opaque tokens:
-- only the server ever reads this table.
create table oidc_models (
  model text not null,
  id text not null,
  payload jsonb not null,
  grant_id text,
  uid text,
  user_code text,
  expires_at timestamptz,
  -- set once, by a single UPDATE … WHERE consumed_at IS NULL (refresh rotation, single-use codes)
  consumed_at timestamptz,
  primary key (model, id)
);
create index oidc_models_grant on oidc_models (grant_id) where grant_id is not null;
create index oidc_models_uid on oidc_models (model, uid) where uid is not null;
create index oidc_models_user_code on oidc_models (model, user_code) where user_code is not null;
create index oidc_models_expires on oidc_models (expires_at) where expires_at is not null;

-- Operators of PropDevelopment: password (scrypt) + TOTP (RFC 6238).
create table operators (
  id uuid primary key,
  login text not null unique,
  -- "scrypt$N$r$p$salt$hash" (base64url)
  password_hash text not null,
  -- the TOTP secret, field-cipher ciphertext bound to (operators, totp_secret_enc, id)
  totp_secret_enc text not null,
  -- the last accepted TOTP time step: a step is never accepted twice (RFC 6238 §5.2)
  totp_last_step bigint,
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- One-time sign-in codes for residents, one per interaction. The code is stored only as a keyed hash;
-- the phone only as its keyed blind index. resident_id is null for an unknown number (same answer).
create table sign_in_codes (
  interaction_uid text primary key,
  phone_index text not null,
  resident_id uuid references residents(id) on delete cascade,
  code_hash text not null,
  attempts integer not null default 0,
  expires_at timestamptz not null,
  consumed_at timestamptz,
  created_at timestamptz not null default now()
);
create index sign_in_codes_expires on sign_in_codes (expires_at);

-- Failed sign-in counters and lockouts, by subject ("phone:<blind index>", "operator:<login>").
create table sign_in_lockouts (
  subject text primary key,
  failures integer not null default 0,
  locked_until timestamptz,
  updated_at timestamptz not null default now()
);
