import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { appendJournal } from '../journal/journal.ts';
import type { ApplyActor } from './apply.ts';
import { addPartnerSecret } from './partner-secrets.ts';
import { rebuildPartnerPlateTokens } from './plate-tokens.ts';

export class KeyRotationError extends Error {
  readonly code = 'ERR_KEY_ROTATION';
}

async function partnerId(db: Db, code: string): Promise<string> {
  const p = await db.one<{ id: string }>(sql`select id from partners where code = ${code}`);
  if (!p) throw new KeyRotationError(`unknown partner "${code}"`);
  return p.id;
}

/**
 * Adds a new key version for a partner: a new plate-token key id, with every vehicle's and pass's
 * token recomputed for it in the same transaction. The previous version keeps working until it is
 * retired, so the partner can switch cameras over without a gap.
 */
export async function rotatePartnerKeys(
  deps: { db: Db; cipher: FieldCipher },
  code: string,
  actor: ApplyActor,
): Promise<{ kid: string; tokens: number }> {
  const id = await partnerId(deps.db, code);
  return deps.db.transaction(async (tx) => {
    const { kid } = await addPartnerSecret(tx, deps.cipher, { id, code });
    const tokens = await rebuildPartnerPlateTokens(tx, deps.cipher, id);
    await appendJournal(tx, {
      actorType: actor.type,
      actorId: actor.id,
      action: 'registry.partner.key-rotate',
      partnerId: id,
      subjectType: 'partner',
      subjectId: id,
      result: 'ok',
      details: { kid },
    });
    return { kid, tokens };
  });
}

/** Retires a key version: its plate tokens are deleted and requests naming its kid are refused. */
export async function retirePartnerKey(
  deps: { db: Db; cipher: FieldCipher },
  code: string,
  kid: string,
  actor: ApplyActor,
): Promise<void> {
  const id = await partnerId(deps.db, code);
  await deps.db.transaction(async (tx) => {
    const active = await tx.query<{ kid: string }>(
      sql`select kid from partner_secrets where partner_id = ${id} and retired_at is null for update`,
    );
    if (!active.some((k) => k.kid === kid))
      throw new KeyRotationError(`"${kid}" is not an active key of "${code}"`);
    if (active.length === 1)
      throw new KeyRotationError('refusing to retire the only active key: rotate first');
    await tx.query(
      sql`update partner_secrets set retired_at = now() where partner_id = ${id} and kid = ${kid}`,
    );
    await tx.query(sql`delete from plate_tokens where partner_id = ${id} and kid = ${kid}`);
    await appendJournal(tx, {
      actorType: actor.type,
      actorId: actor.id,
      action: 'registry.partner.key-retire',
      partnerId: id,
      subjectType: 'partner',
      subjectId: id,
      result: 'ok',
      details: { kid },
    });
  });
}
