import { randomUUID } from 'node:crypto';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { canonicalisePlate } from '../../crypto/plate.ts';
import type { Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { barrierPartnerKeys, PURPOSE_PLATES, vehiclePlateAad, writePlateTokens } from '../plate-tokens.ts';
import {
  type Change,
  conflict,
  invalid,
  journalChange,
  notFound,
  type RegistryContext,
  replaceLinks,
  short,
} from './context.ts';

export const PURPOSE_PII = 'pii';

export const nameAad = (id: string) => ({ table: 'residents', column: 'full_name_enc', rowId: id });
export const phoneAad = (id: string) => ({ table: 'residents', column: 'phone_enc', rowId: id });

export interface ResidentInput {
  /** The operator's stable key for the resident (not personal data). */
  ref: string;
  fullName: string;
  /** E.164 */
  phone: string;
  apartmentIds: string[];
  /** Licence plates as written; authoritative when given, left alone when undefined. */
  vehicles?: string[] | undefined;
  /** External IdP mode (src/api-auth/): the `sub` its tokens carry for this resident; kept when undefined. */
  externalSubject?: string | undefined;
}

export type ResidentPatch = Partial<Omit<ResidentInput, 'ref'>>;

async function checkApartments(ctx: RegistryContext, ids: string[]): Promise<void> {
  for (const [i, a] of ids.entries()) {
    if (!(await ctx.tx.one(sql`select 1 from apartments where id = ${a}`)))
      throw invalid(`apartmentIds/${i}`, 'unknown apartment');
  }
}

async function checkPhone(ctx: RegistryContext, phoneIndex: string, id: string | null): Promise<void> {
  const clash = await ctx.tx.one<{ id: string }>(
    sql`select id from residents where phone_index = ${phoneIndex}`,
  );
  if (clash && clash.id !== id) throw conflict('phone', 'phone number already belongs to another resident');
}

export async function createResident(ctx: RegistryContext, input: ResidentInput): Promise<string> {
  if (await ctx.tx.one(sql`select 1 from residents where ref = ${input.ref}`))
    throw conflict('ref', 'a resident with this ref already exists');
  await checkApartments(ctx, input.apartmentIds);
  const phoneIndex = ctx.cipher.blindIndex(PURPOSE_PII, input.phone);
  await checkPhone(ctx, phoneIndex, null);
  const id = randomUUID();
  await ctx.tx.query(sql`insert into residents (id, ref, full_name_enc, phone_enc, phone_index) values (${id}, ${input.ref},
    ${ctx.cipher.encrypt(PURPOSE_PII, nameAad(id), input.fullName)},
    ${ctx.cipher.encrypt(PURPOSE_PII, phoneAad(id), input.phone)}, ${phoneIndex})`);
  await setApartments(ctx, id, input.apartmentIds);
  if (input.vehicles) await setVehicles(ctx, id, input.vehicles);
  if (input.externalSubject !== undefined) await setExternalSubject(ctx, id, input.externalSubject);
  await journalChange(ctx, 'create', 'resident', id, { ref: short(input.ref) }, input.ref);
  return id;
}

export async function updateResident(
  ctx: RegistryContext,
  id: string,
  patch: ResidentPatch,
): Promise<Change> {
  const cur = await ctx.tx.one<{ ref: string; full_name_enc: string; phone_enc: string }>(
    sql`select ref, full_name_enc, phone_enc from residents where id = ${id} for update`,
  );
  if (!cur) throw notFound('resident');
  let changed = false;
  if (patch.fullName !== undefined || patch.phone !== undefined) {
    const name = ctx.cipher.decrypt(nameAad(id), cur.full_name_enc);
    const phone = ctx.cipher.decrypt(phoneAad(id), cur.phone_enc);
    const nextName = patch.fullName ?? name;
    const nextPhone = patch.phone ?? phone;
    if (nextName !== name || nextPhone !== phone) {
      const phoneIndex = ctx.cipher.blindIndex(PURPOSE_PII, nextPhone);
      await checkPhone(ctx, phoneIndex, id);
      changed = true;
      await ctx.tx.query(sql`update residents set
        full_name_enc = ${ctx.cipher.encrypt(PURPOSE_PII, nameAad(id), nextName)},
        phone_enc = ${ctx.cipher.encrypt(PURPOSE_PII, phoneAad(id), nextPhone)},
        phone_index = ${phoneIndex}, updated_at = now() where id = ${id}`);
    }
  }
  if (patch.apartmentIds) {
    await checkApartments(ctx, patch.apartmentIds);
    changed = (await setApartments(ctx, id, patch.apartmentIds)) || changed;
  }
  if (patch.vehicles) changed = (await setVehicles(ctx, id, patch.vehicles)) || changed;
  if (patch.externalSubject !== undefined)
    changed = (await setExternalSubject(ctx, id, patch.externalSubject)) || changed;
  if (!changed) return 'unchanged';
  await journalChange(ctx, 'update', 'resident', id, { ref: short(cur.ref) }, cur.ref);
  return 'update';
}

/**
 * Deletes a resident with what is theirs alone: apartment links, vehicles, guest passes they issued and
 * the plate tokens of both (erasure of personal data). The journal keeps ids and pseudonyms only.
 */
export async function deleteResident(ctx: RegistryContext, id: string): Promise<void> {
  const cur = await ctx.tx.one<{ ref: string }>(sql`select ref from residents where id = ${id} for update`);
  if (!cur) throw notFound('resident');
  await ctx.tx.query(sql`delete from residents where id = ${id}`);
  await journalChange(ctx, 'delete', 'resident', id, { ref: short(cur.ref) }, cur.ref);
}

/** One subject names one resident. */
async function setExternalSubject(ctx: RegistryContext, id: string, subject: string): Promise<boolean> {
  const linked = await ctx.tx.one<{ id: string }>(
    sql`select id from residents where external_subject = ${subject}`,
  );
  if (linked && linked.id !== id)
    throw conflict('externalSubject', 'external subject already belongs to another resident');
  if (linked) return false;
  await ctx.tx.query(
    sql`update residents set external_subject = ${subject}, updated_at = now() where id = ${id}`,
  );
  return true;
}

async function setApartments(ctx: RegistryContext, id: string, apartmentIds: string[]): Promise<boolean> {
  return replaceLinks(
    ctx,
    { table: 'resident_apartments', owner: 'resident_id', item: 'apartment_id' },
    id,
    apartmentIds,
  );
}

/** Brings the resident's vehicles to `plates`, writing each new vehicle's per-partner plate tokens. */
async function setVehicles(ctx: RegistryContext, id: string, vehicles: string[]): Promise<boolean> {
  const plates = vehicles.map((v, i) => {
    try {
      return canonicalisePlate(v);
    } catch {
      throw invalid(`vehicles/${i}`, 'not a licence plate (contract §5.1)');
    }
  });
  const wanted = new Map(plates.map((p) => [ctx.cipher.blindIndex(PURPOSE_PLATES, p), p]));
  const cur = await ctx.tx.query<{ id: string; plate_index: string }>(
    sql`select id, plate_index from vehicles where resident_id = ${id}`,
  );
  let changed = false;
  for (const v of cur) {
    if (!wanted.has(v.plate_index)) {
      await ctx.tx.query(sql`delete from vehicles where id = ${v.id}`);
      changed = true;
    }
  }
  let partners: Awaited<ReturnType<typeof barrierPartnerKeys>> | undefined;
  for (const [index, plate] of wanted) {
    if (cur.some((v) => v.plate_index === index)) continue;
    const vehicleId = randomUUID();
    await ctx.tx.query(sql`insert into vehicles (id, resident_id, plate_enc, plate_index) values (${vehicleId}, ${id},
      ${ctx.cipher.encrypt(PURPOSE_PLATES, vehiclePlateAad(vehicleId), plate)}, ${index})`);
    partners ??= await barrierPartnerKeys(ctx.tx, ctx.cipher);
    await writePlateTokens(ctx.tx, { vehicleId }, plate, partners);
    changed = true;
  }
  return changed;
}

/** The operator's detail view: personal fields decrypted in memory, for this answer only. */
export async function residentDetail(
  db: Queryable,
  cipher: FieldCipher,
  id: string,
): Promise<{ fullName: string; phone: string; vehicles: string[] } | undefined> {
  const row = await db.one<{ full_name_enc: string; phone_enc: string }>(
    sql`select full_name_enc, phone_enc from residents where id = ${id}`,
  );
  if (!row) return undefined;
  const vehicles = await db.query<{ id: string; plate_enc: string }>(
    sql`select id, plate_enc from vehicles where resident_id = ${id} order by created_at, id`,
  );
  return {
    fullName: cipher.decrypt(nameAad(id), row.full_name_enc),
    phone: cipher.decrypt(phoneAad(id), row.phone_enc),
    vehicles: vehicles.map((v) => cipher.decrypt(vehiclePlateAad(v.id), v.plate_enc)),
  };
}
