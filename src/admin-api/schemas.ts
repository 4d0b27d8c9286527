import { Type as T, type TSchema } from '@sinclair/typebox';
import { Heartbeat } from '../device-health/heartbeat.ts';
import { Alert, DeviceHealth, StatusChange } from '../device-health/schemas.ts';

/** JSON Schemas of the operator API (`/admin/v1`): every route validates params, query and body with them. */

export const Uuid = T.String({
  pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  description: 'UUID',
});
const Nullable = <S extends TSchema>(s: S) => T.Union([s, T.Null()]);
export const Code = T.String({
  pattern: '^[a-z0-9][a-z0-9-]{0,62}$',
  description: 'lower-case code: a-z, 0-9, -',
});
export const Name = T.String({ minLength: 1, maxLength: 200 });
const Timestamp = T.String({ description: 'RFC 3339 date-time' });
const ApartmentNumber = T.String({ pattern: '^[0-9A-Za-zА-Яа-я-]{1,10}$' });

/** Page size of every list: `limit` in the query, at most this many items per page. */
export const PAGE_MAX = 500;
export const PAGE_DEFAULT = 50;

export const IdParams = T.Object({ id: Uuid }, { additionalProperties: false });

const Limit = T.String({
  // 1–500 (PAGE_MAX): query values are strings, never coerced (STRICT_AJV)
  pattern: '^([1-9][0-9]?|[1-4][0-9]{2}|500)$',
  description: `items per page, 1–${PAGE_MAX} (default ${PAGE_DEFAULT})`,
});
const Cursor = T.String({
  pattern: '^[A-Za-z0-9_-]{1,200}$',
  description: 'the `nextCursor` of the previous page',
});

/** The query of a registry list: a page, and optional filters by parent. */
export const ListQuery = (filters: Record<string, TSchema>) =>
  T.Object(
    {
      limit: T.Optional(Limit),
      cursor: T.Optional(Cursor),
      ...Object.fromEntries(Object.entries(filters).map(([k, v]) => [k, T.Optional(v)])),
    },
    { additionalProperties: false },
  );

export const Page = <S extends TSchema>(item: S) =>
  T.Object(
    {
      items: T.Array(item),
      nextCursor: Nullable(
        T.String({ description: 'pass as `cursor` for the next page; null on the last page' }),
      ),
    },
    { additionalProperties: false },
  );

export const Problem = T.Object(
  {
    type: T.String(),
    title: T.String(),
    status: T.Integer(),
    detail: T.Optional(T.String()),
    instance: T.Optional(T.String()),
  },
  { description: 'RFC 9457 problem details' },
);

export const Deleted = T.Object({ id: Uuid, deleted: T.Literal(true) }, { additionalProperties: false });

// Topology

export const Complex = T.Object(
  { id: Uuid, code: Code, name: Name, createdAt: Timestamp, updatedAt: Timestamp },
  { additionalProperties: false },
);
export const ComplexCreate = T.Object({ code: Code, name: Name }, { additionalProperties: false });
export const NamedPatch = T.Object({ name: T.Optional(Name) }, { additionalProperties: false });

export const Building = T.Object(
  { id: Uuid, complexId: Uuid, code: Code, name: Name },
  { additionalProperties: false },
);
export const BuildingCreate = T.Object(
  { complexId: Uuid, code: Code, name: Name },
  { additionalProperties: false },
);
export const Entrance = T.Object(
  { id: Uuid, buildingId: Uuid, code: Code, name: Name },
  { additionalProperties: false },
);
export const EntranceCreate = T.Object(
  { buildingId: Uuid, code: Code, name: Name },
  { additionalProperties: false },
);
export const Apartment = T.Object(
  {
    id: Uuid,
    entranceId: Uuid,
    number: ApartmentNumber,
    path: T.String({ description: '`complex/building/entrance/number` (codes)' }),
  },
  { additionalProperties: false },
);
export const ApartmentCreate = T.Object(
  { entranceId: Uuid, number: ApartmentNumber },
  { additionalProperties: false },
);
export const ApartmentPatch = T.Object(
  { number: T.Optional(ApartmentNumber) },
  { additionalProperties: false },
);

// Residents: name, phone and plates are write-only except in the detail view.

const FullName = T.String({ minLength: 1, maxLength: 200, description: 'personal data: stored encrypted' });
const Phone = T.String({
  pattern: '^\\+[1-9][0-9]{7,14}$',
  description: 'E.164; personal data: stored encrypted',
});
const Plates = T.Array(T.String({ minLength: 1, maxLength: 32 }), {
  maxItems: 20,
  description: 'licence plates; the list replaces the resident’s vehicles',
});
const ExternalSubject = T.String({
  pattern: '^[\\x21-\\x7e]{1,255}$',
  description: 'external IdP mode: the `sub` of its tokens for this resident',
});

export const Resident = T.Object(
  {
    id: Uuid,
    ref: Code,
    apartmentIds: T.Array(Uuid),
    vehicleCount: T.Integer({ minimum: 0 }),
    externalSubject: Nullable(T.String()),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { additionalProperties: false },
);
export const ResidentDetail = T.Object(
  {
    id: Uuid,
    ref: Code,
    fullName: T.String(),
    phone: T.String(),
    vehicles: T.Array(T.String()),
    apartmentIds: T.Array(Uuid),
    vehicleCount: T.Integer({ minimum: 0 }),
    externalSubject: Nullable(T.String()),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { additionalProperties: false, description: 'decrypted for this answer only; the view is journaled' },
);
export const ResidentCreate = T.Object(
  {
    ref: Code,
    fullName: FullName,
    phone: Phone,
    apartmentIds: T.Array(Uuid, { uniqueItems: true, maxItems: 50 }),
    vehicles: T.Optional(Plates),
    externalSubject: T.Optional(ExternalSubject),
  },
  { additionalProperties: false },
);
export const ResidentPatch = T.Object(
  {
    fullName: T.Optional(FullName),
    phone: T.Optional(Phone),
    apartmentIds: T.Optional(T.Array(Uuid, { uniqueItems: true, maxItems: 50 })),
    vehicles: T.Optional(Plates),
    externalSubject: T.Optional(ExternalSubject),
  },
  { additionalProperties: false },
);

// Devices

const DeviceKind = T.Union([T.Literal('barrier'), T.Literal('door')]);
const ExternalId = T.String({
  pattern: '^[^/\\s]{1,100}$',
  description: "the partner's own id of the device",
});
export const Device = T.Object(
  {
    id: Uuid,
    partnerId: Uuid,
    externalId: T.String(),
    kind: DeviceKind,
    name: Name,
    complexId: Uuid,
    buildingId: Nullable(Uuid),
    entranceId: Nullable(Uuid),
    enabled: T.Boolean(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    health: DeviceHealth,
  },
  { additionalProperties: false },
);
/** One device with its recent status history and open alerts (issue 5). */
export const DeviceDetail = T.Object(
  {
    ...Device.properties,
    statusHistory: T.Array(StatusChange, { description: 'newest first, the last 20' }),
    alerts: T.Array(Alert, { description: 'open alerts, newest first' }),
  },
  { additionalProperties: false },
);
export const DeviceCreate = T.Object(
  {
    partnerId: Uuid,
    externalId: ExternalId,
    kind: DeviceKind,
    name: Name,
    complexId: Uuid,
    buildingId: T.Optional(Nullable(Uuid)),
    entranceId: T.Optional(Nullable(Uuid)),
    enabled: T.Optional(T.Boolean()),
  },
  { additionalProperties: false },
);
export const DevicePatch = T.Object(
  {
    kind: T.Optional(DeviceKind),
    name: T.Optional(Name),
    complexId: T.Optional(Uuid),
    buildingId: T.Optional(Nullable(Uuid)),
    entranceId: T.Optional(Nullable(Uuid)),
    enabled: T.Optional(T.Boolean()),
  },
  { additionalProperties: false },
);

// Partners: public material only; secrets never leave (key rotation is a CLI ceremony).

const Scope = T.Union([
  T.Literal('barrier:decide'),
  T.Literal('face:decide'),
  T.Literal('events:write'),
  T.Literal('audit:exchange'),
]);
const Cidr = T.String({
  pattern: '^[0-9a-fA-F:.]+(/[0-9]{1,3})?$',
  description: 'CIDR; a bare address is /32 or /128',
});
const Thumbprint = T.String({ pattern: '^[A-Za-z0-9_-]{43}$', description: 'RFC 8705 x5t#S256, base64url' });
const B64u43 = T.String({ pattern: '^[A-Za-z0-9_-]{43}$' });
const Kid = T.String({ minLength: 1, maxLength: 100 });
export const Ed25519Jwk = T.Object(
  {
    kty: T.Literal('OKP'),
    crv: T.Literal('Ed25519'),
    x: B64u43,
    kid: Kid,
    alg: T.Optional(T.Union([T.Literal('EdDSA'), T.Literal('Ed25519')])),
    use: T.Optional(T.Literal('sig')),
  },
  { additionalProperties: false },
);
export const EncryptionJwk = T.Object(
  {
    kty: T.Literal('EC'),
    crv: T.Literal('P-256'),
    x: B64u43,
    y: B64u43,
    kid: Kid,
    alg: T.Optional(T.Literal('ECDH-ES+A256KW')),
    use: T.Optional(T.Literal('enc')),
  },
  { additionalProperties: false },
);
const Outbound = T.Object(
  {
    serverCa: T.String({
      pattern: '^\\s*-----BEGIN CERTIFICATE-----[\\s\\S]+-----END CERTIFICATE-----\\s*$',
      maxLength: 65536,
      description: "PEM of the CA(s) the partner's server certificate must chain to",
    }),
    clientId: T.String({
      pattern: '^[\\x21-\\x7e]{1,200}$',
      description: "our client_id at the partner's AS",
    }),
    tokenEndpoint: T.Optional(Nullable(T.String({ pattern: '^https://', maxLength: 2000 }))),
  },
  { additionalProperties: false },
);
const BaseUrl = T.String({ pattern: '^https://', maxLength: 2000 });
/** A C2SP signed-note verifier key `name+id+base64(type ‖ key)` (contract §8.2). */
const VerifierKey = (description: string) =>
  T.String({ pattern: '^[\\x21-\\x2a\\x2c-\\x7e]{1,255}\\+[0-9a-f]{8}\\+[A-Za-z0-9+/]{44}$', description });
const LogKey = VerifierKey(
  "the partner's journal log key (Ed25519, type 0x01); its name is the log origin, unique among partners",
);
const WitnessKey = VerifierKey(
  "the partner's witness key (cosignature/v1, type 0x04): checks its cosignatures of our checkpoints",
);

const PartnerFields = {
  name: Name,
  enabled: T.Boolean(),
  scopes: T.Array(Scope, { minItems: 1, uniqueItems: true }),
  complexIds: T.Array(Uuid, { uniqueItems: true, maxItems: 1000, description: 'the perimeter' }),
  networks: T.Array(Cidr, { minItems: 1, uniqueItems: true, maxItems: 100 }),
  certificates: T.Array(Thumbprint, { minItems: 1, uniqueItems: true, maxItems: 20 }),
  signingKeys: T.Array(Ed25519Jwk, { minItems: 1, maxItems: 20 }),
  encryptionKeys: T.Array(EncryptionJwk, { maxItems: 20 }),
  baseUrl: Nullable(BaseUrl),
  outbound: Nullable(Outbound),
  logKey: Nullable(LogKey),
  witnessKey: Nullable(WitnessKey),
  heartbeat: Heartbeat,
};
export const PartnerCreate = T.Object(
  {
    code: Code,
    ...PartnerFields,
    enabled: T.Optional(T.Boolean()),
    baseUrl: T.Optional(Nullable(BaseUrl)),
    outbound: T.Optional(Nullable(Outbound)),
    logKey: T.Optional(Nullable(LogKey)),
    witnessKey: T.Optional(Nullable(WitnessKey)),
    heartbeat: T.Optional(Heartbeat),
  },
  { additionalProperties: false },
);
export const PartnerPatch = T.Partial(T.Object(PartnerFields, { additionalProperties: false }));

const PublicKey = (jwk: TSchema) =>
  T.Object(
    {
      kid: T.String(),
      thumbprint: T.String({ description: 'RFC 7638 JWK thumbprint (SHA-256)' }),
      jwk,
      addedAt: Timestamp,
    },
    { additionalProperties: false },
  );
export const Partner = T.Object(
  {
    id: Uuid,
    code: Code,
    name: Name,
    enabled: T.Boolean(),
    scopes: T.Array(T.String()),
    complexIds: T.Array(Uuid),
    networks: T.Array(T.String()),
    certificates: T.Array(
      T.Object({ thumbprint: T.String(), addedAt: Timestamp }, { additionalProperties: false }),
    ),
    signingKeys: T.Array(PublicKey(Ed25519Jwk)),
    encryptionKeys: T.Array(PublicKey(EncryptionJwk)),
    plateKeys: T.Array(
      T.Object(
        { kid: T.String(), version: T.Integer(), createdAt: Timestamp, retiredAt: Nullable(Timestamp) },
        { additionalProperties: false },
      ),
      { description: 'versions of the partner’s plate-token key: ids only, never the secret' },
    ),
    baseUrl: Nullable(T.String()),
    outbound: Nullable(
      T.Object(
        { serverCa: T.String(), clientId: T.String(), tokenEndpoint: Nullable(T.String()) },
        { additionalProperties: false },
      ),
    ),
    logKey: Nullable(T.String({ description: 'verifier key of its journal log; the name is the origin' })),
    witnessKey: Nullable(T.String({ description: 'verifier key of its cosignatures of our checkpoints' })),
    heartbeat: Heartbeat,
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { additionalProperties: false },
);

// Journal

const RFC3339 = (description: string) =>
  T.String({
    pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$',
    description: `RFC 3339 date-time: ${description}`,
  });
export const JournalQuery = T.Object(
  {
    from: T.Optional(RFC3339('entries at or after this time')),
    to: T.Optional(RFC3339('entries before this time')),
    deviceId: T.Optional(Uuid),
    partnerId: T.Optional(Uuid),
    residentId: T.Optional(Uuid),
    action: T.Optional(
      T.String({ pattern: '^[a-z0-9.:_-]{1,100}$', description: 'exact action, or a prefix ending in `.`' }),
    ),
    result: T.Optional(T.String({ pattern: '^[a-z0-9_:-]{1,60}$' })),
    order: T.Optional(
      T.Union([T.Literal('asc'), T.Literal('desc')], { description: 'by time then id; default desc' }),
    ),
    limit: T.Optional(Limit),
    cursor: T.Optional(Cursor),
  },
  { additionalProperties: false },
);
export const JournalEntry = T.Object(
  {
    id: Uuid,
    at: T.String({ description: 'RFC 3339, microseconds, UTC' }),
    actorType: T.String(),
    actorId: Nullable(T.String()),
    action: T.String(),
    partnerId: Nullable(T.String()),
    deviceId: Nullable(T.String()),
    subjectType: Nullable(T.String()),
    subjectId: Nullable(T.String()),
    result: T.String(),
    requestId: Nullable(T.String()),
    details: T.Record(T.String(), T.Unknown()),
  },
  { additionalProperties: false },
);
