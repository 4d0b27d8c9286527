/**
 * A journal row as a log entry: its RFC 8785 canonical JSON. The entry is what the Merkle leaf hashes
 * (RFC 9162: SHA-256(0x00 ‖ entry)), what entry bundles serve, and what `journal verify` recomputes
 * from the rows — so every column of the row is in it, exactly, and nothing else is.
 *
 * Rows hold internal ids and pseudonyms only (never names, phones or plates), so entries do too: a
 * person's data can be erased without breaking any proof.
 */
import { type SqlFragment, sql } from '../../db/sql.ts';
import { canonicalJson } from '../../util/jcs.ts';

/** Entry format version, first member of every entry. */
export const ENTRY_VERSION = 1;
/** Entry bundles length-prefix entries with a uint16 (C2SP tlog-tiles). */
export const MAX_ENTRY_BYTES = 65_535;

export type JournalRow = {
  seq: string;
  id: string;
  /** Microseconds since the epoch, as text (exact). */
  at_us: string;
  actor_type: string;
  actor_id: string | null;
  action: string;
  partner_id: string | null;
  device_id: string | null;
  subject_type: string | null;
  subject_id: string | null;
  result: string;
  request_id: string | null;
  details: Record<string, unknown>;
};

/** The select list that gives a {@link JournalRow} (table alias `j`). */
export const JOURNAL_ROW_COLUMNS: SqlFragment = sql.unsafe(
  `j.seq::text as seq, j.id::text as id, (extract(epoch from j.at) * 1000000)::bigint::text as at_us,
   j.actor_type, j.actor_id, j.action, j.partner_id::text as partner_id, j.device_id::text as device_id,
   j.subject_type, j.subject_id, j.result, j.request_id, j.details`,
);

/**
 * Whether the row `j` is about the partner: its own registration, or one of its devices. What a partner
 * may read of the journal in full (entry bundles, inclusion proofs, exports for it).
 */
export function aboutPartner(partnerId: string): SqlFragment {
  return sql`(j.partner_id = ${partnerId}::uuid
    or exists (select 1 from devices d where d.id = j.device_id and d.partner_id = ${partnerId}::uuid))`;
}

export function entryOf(row: JournalRow): Buffer {
  const at = Number(row.at_us);
  if (!Number.isSafeInteger(at)) throw new RangeError(`journal row ${row.seq}: time out of range`);
  const text = canonicalJson({
    v: ENTRY_VERSION,
    id: row.id,
    at,
    actorType: row.actor_type,
    actorId: row.actor_id,
    action: row.action,
    partnerId: row.partner_id,
    deviceId: row.device_id,
    subjectType: row.subject_type,
    subjectId: row.subject_id,
    result: row.result,
    requestId: row.request_id,
    details: row.details,
  });
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > MAX_ENTRY_BYTES)
    throw new RangeError(`journal row ${row.seq}: entry too large for a bundle`);
  return bytes;
}
