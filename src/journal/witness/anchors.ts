/**
 * The newest checkpoint of our log each partner cosigned (contract §8.2), as anchors for
 * `journal verify` (src/journal/log/verify.ts `witnessed`): the rows must reach each one and give its
 * root, and the partner's cosignature must verify — which catches a tail cut off together with its
 * checkpoints, since the witness holds a copy outside our control.
 *
 * The cosignature is checked with the witness key registered for the partner now; a partner no longer
 * registered, or without a witness key, is checked with the key the cosignature was verified with on
 * arrival (kept beside it).
 */
import type { Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { type NoteVerifier, verifierFromKeyString } from '../../tlog/note.ts';

export interface WitnessedAnchor {
  partnerId: string;
  size: number;
  /** Our checkpoint with the partner's cosignature line. */
  note: string;
  witness: NoteVerifier;
  /** How verify names it: `witness <partner code> (size N)`. */
  label: string;
}

export async function witnessedAnchors(q: Queryable): Promise<WitnessedAnchor[]> {
  const rows = await q.query<{
    partner_id: string;
    size: string;
    note: string;
    stored_key: string;
    code: string | null;
    registered_key: string | null;
  }>(sql`
    select c.partner_id::text as partner_id, c.size::text as size, c.note, c.witness_key as stored_key,
           p.code, p.witness_key as registered_key
    from (select distinct on (partner_id) partner_id, size, note, witness_key from witness_cosignatures
          order by partner_id, size desc) c
    left join partners p on p.id = c.partner_id
    order by c.partner_id`);
  return rows.map((r) => ({
    partnerId: r.partner_id,
    size: Number(r.size),
    note: r.note,
    witness: verifierFromKeyString(r.registered_key ?? r.stored_key),
    label: `witness ${r.code ?? r.partner_id}`,
  }));
}
