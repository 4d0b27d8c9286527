import { randomUUID } from 'node:crypto';
import { canonicalisePlate } from '../../crypto/plate.ts';
import { sql } from '../../db/sql.ts';
import { barrierPartnerKeys, PURPOSE_PLATES, passPlateAad, writePlateTokens } from '../plate-tokens.ts';
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

export interface GuestPassInput {
  ref: string;
  /** residents.id of the issuer */
  issuedBy: string;
  /** The licence plate as written; stored encrypted, with per-partner plate tokens. */
  plate: string;
  validFrom: Date;
  validUntil: Date;
  /** Barriers the pass opens. */
  deviceIds: string[];
  revoked: boolean;
}

type PassRow = {
  id: string;
  issued_by: string;
  plate_enc: string;
  valid_from: Date;
  valid_until: Date;
  revoked_at: Date | null;
};

async function check(ctx: RegistryContext, g: GuestPassInput): Promise<string> {
  if (!(await ctx.tx.one(sql`select 1 from residents where id = ${g.issuedBy}`)))
    throw invalid('issuedBy', 'unknown resident');
  let plate: string;
  try {
    plate = canonicalisePlate(g.plate);
  } catch {
    throw invalid('plate', 'not a licence plate (contract §5.1)');
  }
  if (g.validUntil.getTime() <= g.validFrom.getTime()) throw invalid('validUntil', 'must be after validFrom');
  for (const [i, d] of g.deviceIds.entries()) {
    const dev = await ctx.tx.one<{ kind: string }>(sql`select kind from devices where id = ${d}`);
    if (!dev) throw invalid(`deviceIds/${i}`, 'unknown device');
    if (dev.kind !== 'barrier') throw invalid(`deviceIds/${i}`, 'a guest pass opens barriers only');
  }
  return plate;
}

async function setDevices(ctx: RegistryContext, id: string, deviceIds: string[]): Promise<boolean> {
  return replaceLinks(
    ctx,
    { table: 'guest_pass_devices', owner: 'pass_id', item: 'device_id' },
    id,
    deviceIds,
  );
}

const details = (g: GuestPassInput) => ({ ref: short(g.ref), residentId: g.issuedBy, revoked: g.revoked });

export async function createGuestPass(ctx: RegistryContext, g: GuestPassInput): Promise<string> {
  const plate = await check(ctx, g);
  if (await ctx.tx.one(sql`select 1 from guest_passes where ref = ${g.ref}`))
    throw conflict('ref', 'a guest pass with this ref already exists');
  const id = randomUUID();
  await ctx.tx.query(sql`insert into guest_passes (id, ref, issued_by, plate_enc, valid_from, valid_until, revoked_at)
    values (${id}, ${g.ref}, ${g.issuedBy}, ${ctx.cipher.encrypt(PURPOSE_PLATES, passPlateAad(id), plate)},
    ${g.validFrom}, ${g.validUntil}, ${g.revoked ? new Date() : null})`);
  await writePlateTokens(ctx.tx, { passId: id }, plate, await barrierPartnerKeys(ctx.tx, ctx.cipher));
  await setDevices(ctx, id, g.deviceIds);
  await journalChange(ctx, 'create', 'guest-pass', id, details(g), g.ref);
  return id;
}

/** Brings the pass to `g` (all fields; `apply` declares passes whole). */
export async function updateGuestPass(ctx: RegistryContext, id: string, g: GuestPassInput): Promise<Change> {
  const cur = await ctx.tx.one<PassRow>(
    sql`select id, issued_by, plate_enc, valid_from, valid_until, revoked_at from guest_passes where id = ${id} for update`,
  );
  if (!cur) throw notFound('guest pass');
  const plate = await check(ctx, g);
  let changed = false;
  const curPlate = ctx.cipher.decrypt(passPlateAad(id), cur.plate_enc);
  if (
    cur.issued_by !== g.issuedBy ||
    curPlate !== plate ||
    cur.valid_from.getTime() !== g.validFrom.getTime() ||
    cur.valid_until.getTime() !== g.validUntil.getTime() ||
    (cur.revoked_at !== null) !== g.revoked
  ) {
    changed = true;
    await ctx.tx.query(sql`update guest_passes set issued_by = ${g.issuedBy},
      plate_enc = ${ctx.cipher.encrypt(PURPOSE_PLATES, passPlateAad(id), plate)}, valid_from = ${g.validFrom},
      valid_until = ${g.validUntil}, revoked_at = ${g.revoked ? (cur.revoked_at ?? new Date()) : null} where id = ${id}`);
    if (curPlate !== plate)
      await writePlateTokens(ctx.tx, { passId: id }, plate, await barrierPartnerKeys(ctx.tx, ctx.cipher));
  }
  changed = (await setDevices(ctx, id, g.deviceIds)) || changed;
  if (!changed) return 'unchanged';
  await journalChange(ctx, 'update', 'guest-pass', id, details(g), g.ref);
  return 'update';
}
