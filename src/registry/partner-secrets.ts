import type { FieldCipher } from '../crypto/field-cipher.ts';
import { createPartnerSecret, derivePartnerKeys } from '../crypto/partner-keys.ts';
import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';

export const PURPOSE_PARTNER_SECRETS = 'partner-secrets';

export interface PartnerKeyVersion {
  version: number;
  kid: string;
  plateKey: Buffer;
  pseudonymKey: Buffer;
  retired: boolean;
}

const aad = (partnerId: string, version: number) => ({
  table: 'partner_secrets',
  column: 'secret_enc',
  rowId: `${partnerId}:${version}`,
});

/** Adds a new master-secret version for a partner (first one at onboarding, then at each rotation). */
export async function addPartnerSecret(
  tx: Queryable,
  cipher: FieldCipher,
  partner: { id: string; code: string },
): Promise<{ version: number; kid: string }> {
  const row = await tx.one<{ v: number }>(
    sql`select coalesce(max(version), 0)::int as v from partner_secrets where partner_id = ${partner.id}`,
  );
  const version = (row?.v ?? 0) + 1;
  const kid = `${partner.code}-v${version}`;
  const secretEnc = cipher.encrypt(
    PURPOSE_PARTNER_SECRETS,
    aad(partner.id, version),
    createPartnerSecret().toString('base64'),
  );
  await tx.query(sql`insert into partner_secrets (partner_id, version, kid, secret_enc)
    values (${partner.id}, ${version}, ${kid}, ${secretEnc})`);
  return { version, kid };
}

/** The partner's key versions, newest first, with their derived plate and pseudonym keys. */
export async function loadPartnerKeys(
  tx: Queryable,
  cipher: FieldCipher,
  partnerId: string,
): Promise<PartnerKeyVersion[]> {
  const rows = await tx.query<{ version: number; kid: string; secret_enc: string; retired_at: Date | null }>(
    sql`select version, kid, secret_enc, retired_at from partner_secrets where partner_id = ${partnerId} order by version desc`,
  );
  return rows.map((r) => {
    const master = Buffer.from(cipher.decrypt(aad(partnerId, r.version), r.secret_enc), 'base64');
    const { plateKey, pseudonymKey } = derivePartnerKeys(master);
    master.fill(0);
    return { version: r.version, kid: r.kid, plateKey, pseudonymKey, retired: r.retired_at !== null };
  });
}
