import type { Queryable } from '../db/db.ts';
import { type SqlFragment, sql } from '../db/sql.ts';
import {
  HEALTH_COLUMNS,
  HEALTH_JOIN,
  type HealthRow,
  healthFilters,
  healthOf,
} from '../device-health/queries.ts';
import { AppError } from '../errors.ts';
import { isUuid } from '../util/uuid.ts';
import { PAGE_DEFAULT } from './schemas.ts';

/** Read models of the operator API: one row shape per object, pages ordered by id. */

const iso = (d: unknown) => (d instanceof Date ? d.toISOString() : String(d));

export interface PageQuery {
  limit?: string | undefined;
  cursor?: string | undefined;
}
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export const pageLimit = (q: PageQuery) => (q.limit ? Number(q.limit) : PAGE_DEFAULT);

/** `where` of a page ordered by id: the filters, and ids after the cursor (the last id of the page before). */
function pageWhere(alias: string, q: PageQuery, filters: SqlFragment[]): SqlFragment {
  const conds = [...filters];
  if (q.cursor !== undefined) {
    if (!isUuid(q.cursor)) throw new AppError('invalid-request', 'querystring/cursor is not valid');
    conds.push(sql`${sql.ident(alias)}.id > ${q.cursor}::uuid`);
  }
  return conds.length ? sql`where ${sql.join(conds, ' and ')}` : sql``;
}

function toPage<R extends { id: string }, T>(rows: R[], limit: number, map: (r: R) => T): Page<T> {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  return { items: kept.map(map), nextCursor: more ? kept[kept.length - 1]!.id : null };
}

function eqFilters(alias: string, f: object, columns: Record<string, string>): SqlFragment[] {
  const out: SqlFragment[] = [];
  for (const [key, column] of Object.entries(columns)) {
    const v = (f as Record<string, string | undefined>)[key];
    if (v !== undefined) out.push(sql`${sql.ident(alias)}.${sql.ident(column)} = ${v}::uuid`);
  }
  return out;
}

// Complexes, buildings, entrances, apartments

type ComplexRow = { id: string; code: string; name: string; created_at: Date; updated_at: Date };
const complex = (r: ComplexRow) => ({
  id: r.id,
  code: r.code,
  name: r.name,
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
});
export async function listComplexes(db: Queryable, q: PageQuery) {
  const limit = pageLimit(q);
  const rows =
    await db.query<ComplexRow>(sql`select c.id, c.code, c.name, c.created_at, c.updated_at from complexes c
    ${pageWhere('c', q, [])} order by c.id limit ${limit + 1}`);
  return toPage(rows, limit, complex);
}
export async function getComplex(db: Queryable, id: string) {
  const r = await db.one<ComplexRow>(
    sql`select id, code, name, created_at, updated_at from complexes where id = ${id}`,
  );
  return r && complex(r);
}

type NamedRow = { id: string; parent: string; code: string; name: string };
export async function listBuildings(db: Queryable, q: PageQuery & { complexId?: string | undefined }) {
  const limit = pageLimit(q);
  const rows =
    await db.query<NamedRow>(sql`select b.id, b.complex_id as parent, b.code, b.name from buildings b
    ${pageWhere('b', q, eqFilters('b', q, { complexId: 'complex_id' }))} order by b.id limit ${limit + 1}`);
  return toPage(rows, limit, (r) => ({ id: r.id, complexId: r.parent, code: r.code, name: r.name }));
}
export async function getBuilding(db: Queryable, id: string) {
  const r = await db.one<NamedRow>(
    sql`select id, complex_id as parent, code, name from buildings where id = ${id}`,
  );
  return r && { id: r.id, complexId: r.parent, code: r.code, name: r.name };
}
export async function listEntrances(db: Queryable, q: PageQuery & { buildingId?: string | undefined }) {
  const limit = pageLimit(q);
  const rows =
    await db.query<NamedRow>(sql`select e.id, e.building_id as parent, e.code, e.name from entrances e
    ${pageWhere('e', q, eqFilters('e', q, { buildingId: 'building_id' }))} order by e.id limit ${limit + 1}`);
  return toPage(rows, limit, (r) => ({ id: r.id, buildingId: r.parent, code: r.code, name: r.name }));
}
export async function getEntrance(db: Queryable, id: string) {
  const r = await db.one<NamedRow>(
    sql`select id, building_id as parent, code, name from entrances where id = ${id}`,
  );
  return r && { id: r.id, buildingId: r.parent, code: r.code, name: r.name };
}

type ApartmentRow = { id: string; entrance_id: string; number: string; path: string };
const APARTMENT_SELECT = sql`select a.id, a.entrance_id, a.number, c.code || '/' || b.code || '/' || e.code || '/' || a.number as path
  from apartments a join entrances e on e.id = a.entrance_id join buildings b on b.id = e.building_id
  join complexes c on c.id = b.complex_id`;
const apartment = (r: ApartmentRow) => ({
  id: r.id,
  entranceId: r.entrance_id,
  number: r.number,
  path: r.path,
});
export async function listApartments(
  db: Queryable,
  q: PageQuery & { entranceId?: string | undefined; residentId?: string | undefined },
) {
  const limit = pageLimit(q);
  const filters = eqFilters('a', q, { entranceId: 'entrance_id' });
  if (q.residentId !== undefined)
    filters.push(
      sql`exists (select 1 from resident_apartments ra where ra.apartment_id = a.id and ra.resident_id = ${q.residentId}::uuid)`,
    );
  const rows = await db.query<ApartmentRow>(
    sql`${APARTMENT_SELECT} ${pageWhere('a', q, filters)} order by a.id limit ${limit + 1}`,
  );
  return toPage(rows, limit, apartment);
}
export async function getApartment(db: Queryable, id: string) {
  const r = await db.one<ApartmentRow>(sql`${APARTMENT_SELECT} where a.id = ${id}`);
  return r && apartment(r);
}

// Residents (no personal field here: the detail view adds them)

type ResidentRow = {
  id: string;
  ref: string;
  external_subject: string | null;
  created_at: Date;
  updated_at: Date;
  apartment_ids: string[] | null;
  vehicle_count: number;
};
const RESIDENT_SELECT = sql`select r.id, r.ref, r.external_subject, r.created_at, r.updated_at,
  array(select ra.apartment_id::text from resident_apartments ra where ra.resident_id = r.id order by ra.apartment_id) as apartment_ids,
  (select count(*)::int from vehicles v where v.resident_id = r.id) as vehicle_count
  from residents r`;
const resident = (r: ResidentRow) => ({
  id: r.id,
  ref: r.ref,
  apartmentIds: r.apartment_ids ?? [],
  vehicleCount: r.vehicle_count,
  externalSubject: r.external_subject,
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
});
export async function listResidents(db: Queryable, q: PageQuery & { apartmentId?: string | undefined }) {
  const limit = pageLimit(q);
  const filters: SqlFragment[] = [];
  if (q.apartmentId !== undefined)
    filters.push(
      sql`exists (select 1 from resident_apartments ra where ra.resident_id = r.id and ra.apartment_id = ${q.apartmentId}::uuid)`,
    );
  const rows = await db.query<ResidentRow>(
    sql`${RESIDENT_SELECT} ${pageWhere('r', q, filters)} order by r.id limit ${limit + 1}`,
  );
  return toPage(rows, limit, resident);
}
export async function getResident(db: Queryable, id: string) {
  const r = await db.one<ResidentRow>(sql`${RESIDENT_SELECT} where r.id = ${id}`);
  return r && resident(r);
}

// Devices

type DeviceRow = HealthRow & {
  id: string;
  partner_id: string;
  external_id: string;
  kind: 'barrier' | 'door';
  name: string;
  complex_id: string;
  building_id: string | null;
  entrance_id: string | null;
  enabled: boolean;
  created_at: Date;
  updated_at: Date;
};
// With its health (src/device-health/, issue 5): state, last seen, skew, open alerts.
const DEVICE_SELECT = sql`select d.id, d.partner_id, d.external_id, d.kind, d.name, d.complex_id, d.building_id,
  d.entrance_id, d.enabled, d.created_at, d.updated_at, ${HEALTH_COLUMNS} from devices d ${HEALTH_JOIN}`;
const device = (r: DeviceRow) => ({
  id: r.id,
  partnerId: r.partner_id,
  externalId: r.external_id,
  kind: r.kind,
  name: r.name,
  complexId: r.complex_id,
  buildingId: r.building_id,
  entranceId: r.entrance_id,
  enabled: r.enabled,
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
  health: healthOf(r),
});
export async function listDevices(
  db: Queryable,
  q: PageQuery & {
    partnerId?: string | undefined;
    complexId?: string | undefined;
    state?: string | undefined;
    flagged?: string | undefined;
  },
) {
  const limit = pageLimit(q);
  const filters = [
    ...eqFilters('d', q, { partnerId: 'partner_id', complexId: 'complex_id' }),
    ...healthFilters(q),
  ];
  const rows = await db.query<DeviceRow>(
    sql`${DEVICE_SELECT} ${pageWhere('d', q, filters)} order by d.id limit ${limit + 1}`,
  );
  return toPage(rows, limit, device);
}
export async function getDevice(db: Queryable, id: string) {
  const r = await db.one<DeviceRow>(sql`${DEVICE_SELECT} where d.id = ${id}`);
  return r && device(r);
}

// Partners: public material and key ids only

type PartnerRow = {
  id: string;
  code: string;
  name: string;
  enabled: boolean;
  scopes: string[];
  base_url: string | null;
  server_ca_pem: string | null;
  outbound_client_id: string | null;
  token_endpoint: string | null;
  log_key: string | null;
  witness_key: string | null;
  heartbeat_interval_s: number;
  heartbeat_missed: number;
  created_at: Date;
  updated_at: Date;
};
const PARTNER_SELECT = sql`select p.id, p.code, p.name, p.enabled, p.scopes, p.base_url, p.server_ca_pem,
  p.outbound_client_id, p.token_endpoint, p.log_key, p.witness_key, p.heartbeat_interval_s, p.heartbeat_missed,
  p.created_at, p.updated_at from partners p`;

async function partner(db: Queryable, r: PartnerRow) {
  const [complexes, networks, certs, signing, encryption, secrets] = [
    await db.query<{ complex_id: string }>(
      sql`select complex_id from partner_complexes where partner_id = ${r.id} order by complex_id`,
    ),
    await db.query<{ cidr: string }>(
      sql`select cidr::text as cidr from partner_networks where partner_id = ${r.id} order by cidr`,
    ),
    await db.query<{ thumbprint: string; added_at: Date }>(
      sql`select thumbprint, added_at from partner_certificates where partner_id = ${r.id} order by added_at, thumbprint`,
    ),
    await db.query<{ kid: string; thumbprint: string; public_jwk: unknown; added_at: Date }>(
      sql`select kid, thumbprint, public_jwk, added_at from partner_signing_keys where partner_id = ${r.id} order by added_at, kid`,
    ),
    await db.query<{ kid: string; thumbprint: string; public_jwk: unknown; added_at: Date }>(
      sql`select kid, thumbprint, public_jwk, added_at from partner_encryption_keys where partner_id = ${r.id} order by added_at, kid`,
    ),
    await db.query<{ kid: string; version: number; created_at: Date; retired_at: Date | null }>(
      sql`select kid, version, created_at, retired_at from partner_secrets where partner_id = ${r.id} order by version`,
    ),
  ];
  const key = (k: { kid: string; thumbprint: string; public_jwk: unknown; added_at: Date }) => ({
    kid: k.kid,
    thumbprint: k.thumbprint,
    jwk: typeof k.public_jwk === 'string' ? JSON.parse(k.public_jwk) : k.public_jwk,
    addedAt: iso(k.added_at),
  });
  return {
    id: r.id,
    code: r.code,
    name: r.name,
    enabled: r.enabled,
    scopes: r.scopes,
    complexIds: complexes.map((c) => c.complex_id),
    networks: networks.map((n) => n.cidr),
    certificates: certs.map((c) => ({ thumbprint: c.thumbprint, addedAt: iso(c.added_at) })),
    signingKeys: signing.map(key),
    encryptionKeys: encryption.map(key),
    plateKeys: secrets.map((s) => ({
      kid: s.kid,
      version: s.version,
      createdAt: iso(s.created_at),
      retiredAt: s.retired_at ? iso(s.retired_at) : null,
    })),
    baseUrl: r.base_url,
    outbound:
      r.server_ca_pem && r.outbound_client_id
        ? { serverCa: r.server_ca_pem, clientId: r.outbound_client_id, tokenEndpoint: r.token_endpoint }
        : null,
    logKey: r.log_key,
    witnessKey: r.witness_key,
    heartbeat: { intervalSeconds: r.heartbeat_interval_s, missed: r.heartbeat_missed },
    createdAt: iso(r.created_at),
    updatedAt: iso(r.updated_at),
  };
}
export async function listPartners(db: Queryable, q: PageQuery) {
  const limit = pageLimit(q);
  const rows = await db.query<PartnerRow>(
    sql`${PARTNER_SELECT} ${pageWhere('p', q, [])} order by p.id limit ${limit + 1}`,
  );
  const page = toPage(rows, limit, (r) => r);
  const items = [];
  for (const r of page.items) items.push(await partner(db, r));
  return { items, nextCursor: page.nextCursor };
}
export async function getPartner(db: Queryable, id: string) {
  const r = await db.one<PartnerRow>(sql`${PARTNER_SELECT} where p.id = ${id}`);
  return r && partner(db, r);
}
