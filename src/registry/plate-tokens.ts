import type { FieldCipher } from '../crypto/field-cipher.ts';
import { plateToken } from '../crypto/plate.ts';
import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { loadPartnerKeys } from './partner-secrets.ts';

export const PURPOSE_PLATES = 'plates';

export const vehiclePlateAad = (vehicleId: string) => ({
  table: 'vehicles',
  column: 'plate_enc',
  rowId: vehicleId,
});
export const passPlateAad = (passId: string) => ({
  table: 'guest_passes',
  column: 'plate_enc',
  rowId: passId,
});

interface BarrierPartnerKeys {
  partnerId: string;
  keys: Array<{ kid: string; plateKey: Buffer }>;
}

/** Plate keys (current and not yet retired) of every partner allowed to ask barrier decisions. */
export async function barrierPartnerKeys(tx: Queryable, cipher: FieldCipher): Promise<BarrierPartnerKeys[]> {
  const partners = await tx.query<{ id: string }>(
    sql`select id from partners where 'barrier:decide' = any(scopes) order by code`,
  );
  const out: BarrierPartnerKeys[] = [];
  for (const p of partners) {
    const keys = (await loadPartnerKeys(tx, cipher, p.id)).filter((k) => !k.retired);
    out.push({ partnerId: p.id, keys: keys.map((k) => ({ kid: k.kid, plateKey: k.plateKey })) });
  }
  return out;
}

/** (Re)computes the per-partner tokens of one vehicle or pass from its canonical plate. */
export async function writePlateTokens(
  tx: Queryable,
  owner: { vehicleId: string } | { passId: string },
  canonicalPlate: string,
  partners: BarrierPartnerKeys[],
): Promise<void> {
  const vehicleId = 'vehicleId' in owner ? owner.vehicleId : null;
  const passId = 'passId' in owner ? owner.passId : null;
  if (vehicleId) await tx.query(sql`delete from plate_tokens where vehicle_id = ${vehicleId}`);
  else await tx.query(sql`delete from plate_tokens where pass_id = ${passId}`);
  for (const p of partners) {
    for (const k of p.keys) {
      const token = plateToken(k.plateKey, canonicalPlate);
      await tx.query(sql`insert into plate_tokens (partner_id, kid, token, vehicle_id, pass_id)
        values (${p.partnerId}, ${k.kid}, ${token}, ${vehicleId}, ${passId})`);
    }
  }
}

/**
 * Recomputes every vehicle's and pass's tokens for one partner (after onboarding or a key rotation):
 * plates are decrypted in memory only, one at a time.
 */
export async function rebuildPartnerPlateTokens(
  tx: Queryable,
  cipher: FieldCipher,
  partnerId: string,
): Promise<number> {
  const keys = (await loadPartnerKeys(tx, cipher, partnerId)).filter((k) => !k.retired);
  await tx.query(sql`delete from plate_tokens where partner_id = ${partnerId}`);
  let n = 0;
  const vehicles = await tx.query<{ id: string; plate_enc: string }>(sql`select id, plate_enc from vehicles`);
  const passes = await tx.query<{ id: string; plate_enc: string }>(
    sql`select id, plate_enc from guest_passes`,
  );
  const all = [
    ...vehicles.map((v) => ({
      vehicleId: v.id,
      passId: null,
      plate: cipher.decrypt(vehiclePlateAad(v.id), v.plate_enc),
    })),
    ...passes.map((p) => ({
      vehicleId: null,
      passId: p.id,
      plate: cipher.decrypt(passPlateAad(p.id), p.plate_enc),
    })),
  ];
  for (const item of all) {
    for (const k of keys) {
      await tx.query(sql`insert into plate_tokens (partner_id, kid, token, vehicle_id, pass_id)
        values (${partnerId}, ${k.kid}, ${plateToken(k.plateKey, item.plate)}, ${item.vehicleId}, ${item.passId})`);
      n++;
    }
  }
  return n;
}
