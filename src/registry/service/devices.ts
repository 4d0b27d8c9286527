import { randomUUID } from 'node:crypto';
import { sql } from '../../db/sql.ts';
import {
  type Change,
  conflict,
  invalid,
  journalChange,
  notFound,
  type RegistryContext,
  refuseIfReferenced,
} from './context.ts';

export interface DeviceInput {
  partnerId: string;
  /** The partner's own id of the device: the only device id a partner ever sees. */
  externalId: string;
  kind: 'barrier' | 'door';
  name: string;
  /** Scope: a complex, optionally narrowed to a building and an entrance of it. */
  complexId: string;
  buildingId: string | null;
  entranceId: string | null;
  enabled: boolean;
}

export type DevicePatch = Partial<Omit<DeviceInput, 'partnerId' | 'externalId'>>;

type DeviceRow = {
  id: string;
  partner_id: string;
  external_id: string;
  kind: string;
  name: string;
  complex_id: string;
  building_id: string | null;
  entrance_id: string | null;
  enabled: boolean;
};

/** Checks the device's partner, perimeter, scope and kind; the first failure names its field. */
async function check(ctx: RegistryContext, d: DeviceInput): Promise<string> {
  const partner = await ctx.tx.one<{ code: string; scopes: string[] }>(
    sql`select code, scopes from partners where id = ${d.partnerId}`,
  );
  if (!partner) throw invalid('partnerId', 'unknown partner');
  if (!(await ctx.tx.one(sql`select 1 from complexes where id = ${d.complexId}`)))
    throw invalid('complexId', 'unknown complex');
  const inPerimeter = await ctx.tx.one(
    sql`select 1 from partner_complexes where partner_id = ${d.partnerId} and complex_id = ${d.complexId}`,
  );
  if (!inPerimeter) throw invalid('complexId', "complex is outside the partner's perimeter");
  if (d.kind === 'barrier' && !partner.scopes.includes('barrier:decide'))
    throw invalid('kind', 'a barrier needs a partner with the barrier:decide scope');
  if (d.entranceId && !d.buildingId) throw invalid('entranceId', 'an entrance needs its building');
  if (
    d.buildingId &&
    !(await ctx.tx.one(
      sql`select 1 from buildings where id = ${d.buildingId} and complex_id = ${d.complexId}`,
    ))
  )
    throw invalid('buildingId', 'unknown building in this complex');
  if (
    d.entranceId &&
    !(await ctx.tx.one(
      sql`select 1 from entrances where id = ${d.entranceId} and building_id = ${d.buildingId}`,
    ))
  )
    throw invalid('entranceId', 'unknown entrance in this building');
  return partner.code;
}

export async function createDevice(ctx: RegistryContext, input: DeviceInput): Promise<string> {
  const partnerCode = await check(ctx, input);
  if (
    await ctx.tx.one(
      sql`select 1 from devices where partner_id = ${input.partnerId} and external_id = ${input.externalId}`,
    )
  )
    throw conflict('externalId', 'the partner already has a device with this external id');
  const id = randomUUID();
  await ctx.tx.query(sql`insert into devices (id, partner_id, external_id, kind, name, complex_id, building_id, entrance_id, enabled)
    values (${id}, ${input.partnerId}, ${input.externalId}, ${input.kind}, ${input.name}, ${input.complexId},
    ${input.buildingId}, ${input.entranceId}, ${input.enabled})`);
  await journalChange(ctx, 'create', 'device', id, {
    code: `${partnerCode}/${input.externalId}`,
    partnerId: input.partnerId,
    deviceId: id,
  });
  return id;
}

export async function updateDevice(ctx: RegistryContext, id: string, patch: DevicePatch): Promise<Change> {
  const cur =
    await ctx.tx.one<DeviceRow>(sql`select id, partner_id, external_id, kind, name, complex_id, building_id,
    entrance_id, enabled from devices where id = ${id} for update`);
  if (!cur) throw notFound('device');
  const complexChanged = patch.complexId !== undefined && patch.complexId !== cur.complex_id;
  const next: DeviceInput = {
    partnerId: cur.partner_id,
    externalId: cur.external_id,
    kind: patch.kind ?? (cur.kind as DeviceInput['kind']),
    name: patch.name ?? cur.name,
    complexId: patch.complexId ?? cur.complex_id,
    // A new complex drops a building/entrance scope that is not restated.
    buildingId: patch.buildingId !== undefined ? patch.buildingId : complexChanged ? null : cur.building_id,
    entranceId:
      patch.entranceId !== undefined
        ? patch.entranceId
        : complexChanged || (patch.buildingId !== undefined && patch.buildingId !== cur.building_id)
          ? null
          : cur.entrance_id,
    enabled: patch.enabled ?? cur.enabled,
  };
  if (
    next.kind === cur.kind &&
    next.name === cur.name &&
    next.complexId === cur.complex_id &&
    next.buildingId === cur.building_id &&
    next.entranceId === cur.entrance_id &&
    next.enabled === cur.enabled
  )
    return 'unchanged';
  const partnerCode = await check(ctx, next);
  await ctx.tx.query(sql`update devices set kind = ${next.kind}, name = ${next.name}, complex_id = ${next.complexId},
    building_id = ${next.buildingId}, entrance_id = ${next.entranceId}, enabled = ${next.enabled}, updated_at = now()
    where id = ${id}`);
  await journalChange(ctx, 'update', 'device', id, {
    code: `${partnerCode}/${cur.external_id}`,
    partnerId: cur.partner_id,
    deviceId: id,
  });
  return 'update';
}

export async function deleteDevice(ctx: RegistryContext, id: string): Promise<void> {
  const cur = await ctx.tx.one<{ partner_id: string; external_id: string; code: string }>(
    sql`select d.partner_id, d.external_id, p.code from devices d join partners p on p.id = d.partner_id
        where d.id = ${id} for update of d`,
  );
  if (!cur) throw notFound('device');
  await refuseIfReferenced([
    {
      what: 'guest passes',
      exists: () => ctx.tx.one(sql`select 1 from guest_pass_devices where device_id = ${id}`),
    },
    {
      // The inbox has no foreign key (migration 016): its events are processed (journal, health) first.
      what: 'partner events not yet processed',
      exists: () =>
        ctx.tx.one(sql`select 1 from event_inbox where device_id = ${id} and processed_at is null limit 1`),
    },
  ]);
  await ctx.tx.query(sql`delete from devices where id = ${id}`);
  await journalChange(ctx, 'delete', 'device', id, {
    code: `${cur.code}/${cur.external_id}`,
    partnerId: cur.partner_id,
    deviceId: id,
  });
}
