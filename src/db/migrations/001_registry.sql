-- The registry: complexes → buildings → entrances → apartments, residents, partners, devices,
-- vehicles and guest passes. Personal data (names, phones, plates) is stored only as AES-256-GCM
-- ciphertext (text "v1.<key id>.<base64url>", see src/crypto/field-cipher.ts); lookups go through keyed
-- tokens, never through plaintext.

create table complexes (
  id uuid primary key,
  code text not null unique,
  name text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table buildings (
  id uuid primary key,
  complex_id uuid not null references complexes(id),
  code text not null,
  name text not null,
  unique (complex_id, code)
);

create table entrances (
  id uuid primary key,
  building_id uuid not null references buildings(id),
  code text not null,
  name text not null,
  unique (building_id, code)
);

create table apartments (
  id uuid primary key,
  entrance_id uuid not null references entrances(id),
  number text not null,
  unique (entrance_id, number)
);

create table residents (
  id uuid primary key,
  -- the operator's stable key for this resident in provisioning documents (not personal data)
  ref text not null unique,
  full_name_enc text not null,
  phone_enc text not null,
  -- keyed blind index of the normalised phone number, for sign-in look-ups (HMAC, never the number)
  phone_index text not null unique,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table resident_apartments (
  resident_id uuid not null references residents(id) on delete cascade,
  apartment_id uuid not null references apartments(id),
  primary key (resident_id, apartment_id)
);
create index resident_apartments_apartment on resident_apartments (apartment_id);

create table partners (
  id uuid primary key,
  -- the OAuth client_id of the partner
  code text not null unique,
  name text not null,
  scopes text[] not null,
  enabled boolean not null default true,
  -- where smart-home calls the partner (door commands, backfills); null for barrier-only partners
  base_url text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

-- the partner's perimeter: the complexes it serves
create table partner_complexes (
  partner_id uuid not null references partners(id) on delete cascade,
  complex_id uuid not null references complexes(id),
  primary key (partner_id, complex_id)
);

create table partner_networks (
  partner_id uuid not null references partners(id) on delete cascade,
  cidr cidr not null,
  primary key (partner_id, cidr)
);

create table partner_certificates (
  -- RFC 8705 x5t#S256 of the partner's client certificate
  thumbprint text primary key,
  partner_id uuid not null references partners(id) on delete cascade,
  added_at timestamptz not null default now()
);
create index partner_certificates_partner on partner_certificates (partner_id);

create table partner_signing_keys (
  kid text primary key,
  partner_id uuid not null references partners(id) on delete cascade,
  public_jwk jsonb not null,
  -- RFC 7638 thumbprint, read back over a second channel at onboarding
  thumbprint text not null,
  added_at timestamptz not null default now()
);
create index partner_signing_keys_partner on partner_signing_keys (partner_id);

create table partner_encryption_keys (
  kid text primary key,
  partner_id uuid not null references partners(id) on delete cascade,
  public_jwk jsonb not null,
  thumbprint text not null,
  added_at timestamptz not null default now()
);
create index partner_encryption_keys_partner on partner_encryption_keys (partner_id);

-- Versioned per-partner master secrets; plate-token and pseudonym keys are derived from them with HKDF.
-- The newest version is current; older ones still verify until retired.
create table partner_secrets (
  partner_id uuid not null references partners(id) on delete cascade,
  version integer not null,
  -- key id shown to the partner (plate tokens carry it, contract §5.2)
  kid text not null unique,
  secret_enc text not null,
  created_at timestamptz not null default now(),
  retired_at timestamptz,
  primary key (partner_id, version)
);

create table devices (
  id uuid primary key,
  partner_id uuid not null references partners(id),
  -- the partner's own id of the device: the only device id a partner ever sees
  external_id text not null,
  kind text not null check (kind in ('barrier', 'door')),
  name text not null,
  complex_id uuid not null references complexes(id),
  building_id uuid references buildings(id),
  entrance_id uuid references entrances(id),
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (partner_id, external_id),
  -- an entrance-scoped device names its building too
  check (entrance_id is null or building_id is not null)
);

create table vehicles (
  id uuid primary key,
  resident_id uuid not null references residents(id) on delete cascade,
  plate_enc text not null,
  -- keyed blind index of the canonical plate under our own key: one resident registers a plate once
  plate_index text not null,
  created_at timestamptz not null default now(),
  unique (resident_id, plate_index)
);

create table guest_passes (
  id uuid primary key,
  ref text unique,
  issued_by uuid not null references residents(id) on delete cascade,
  plate_enc text not null,
  valid_from timestamptz not null,
  valid_until timestamptz not null,
  revoked_at timestamptz,
  created_at timestamptz not null default now(),
  check (valid_until > valid_from)
);

create table guest_pass_devices (
  pass_id uuid not null references guest_passes(id) on delete cascade,
  device_id uuid not null references devices(id),
  primary key (pass_id, device_id)
);

-- Per-partner plate tokens (contract §5.2) of every vehicle and pass: the look-up index of the barrier
-- decision. Recomputed when a partner's key rotates.
create table plate_tokens (
  partner_id uuid not null references partners(id) on delete cascade,
  kid text not null,
  token text not null,
  vehicle_id uuid references vehicles(id) on delete cascade,
  pass_id uuid references guest_passes(id) on delete cascade,
  check ((vehicle_id is null) <> (pass_id is null))
);
create unique index plate_tokens_vehicle on plate_tokens (partner_id, kid, token, vehicle_id) where vehicle_id is not null;
create unique index plate_tokens_pass on plate_tokens (partner_id, kid, token, pass_id) where pass_id is not null;

-- Data-encryption keys per purpose, wrapped by the key-encryption key (RFC 3394 AES key wrap).
create table data_keys (
  id text primary key,
  purpose text not null,
  version integer not null,
  kek_id text not null,
  wrapped bytea not null,
  created_at timestamptz not null default now(),
  unique (purpose, version)
);

-- Barrier decisions by partner event id, for idempotent retries (contract §6: 24 h).
create table barrier_decisions (
  partner_id uuid not null references partners(id),
  event_id uuid not null,
  request_hash text not null,
  response jsonb not null,
  created_at timestamptz not null default now(),
  primary key (partner_id, event_id)
);
create index barrier_decisions_created on barrier_decisions (created_at);
