import type { Queryable } from '../db/db.ts';
import { type SqlFragment, sql } from '../db/sql.ts';
import { uuidv7 } from '../util/uuid.ts';

export type ActorType = 'partner' | 'resident' | 'operator' | 'system';

export interface JournalEntry {
  actorType: ActorType;
  actorId?: string | null;
  /** e.g. `barrier.decision`, `registry.resident.create` */
  action: string;
  partnerId?: string | null;
  deviceId?: string | null;
  subjectType?: string | null;
  subjectId?: string | null;
  result: string;
  requestId?: string | null;
  /** Internal ids, codes and pseudonyms only — never names, phones, plates or tokens. */
  details?: Record<string, unknown>;
  id?: string;
}

export const JOURNAL_COLUMNS = sql.unsafe(
  'id, actor_type, actor_id, action, partner_id, device_id, subject_type, subject_id, result, request_id, details',
);

/** The entry's values, in the order of JOURNAL_COLUMNS (for statements that insert it themselves). */
export function journalValues(e: JournalEntry & { id: string }): SqlFragment {
  return sql`${e.id}::uuid, ${e.actorType}, ${e.actorId ?? null}, ${e.action}, ${e.partnerId ?? null}::uuid,
    ${e.deviceId ?? null}::uuid, ${e.subjectType ?? null}, ${e.subjectId ?? null}, ${e.result}, ${e.requestId ?? null},
    ${JSON.stringify(e.details ?? {})}::jsonb`;
}

/**
 * Appends one entry. Always called with the transaction that makes the change, so the change and its
 * journal entry commit or roll back together (seed 002: audit of every access action).
 */
export async function appendJournal(tx: Queryable, e: JournalEntry): Promise<string> {
  const id = e.id ?? uuidv7();
  // Prepared once per connection (the text never varies): every access action writes one or two.
  await tx.query(
    sql`insert into journal (${JOURNAL_COLUMNS}) values (${journalValues({ ...e, id })})`.named(
      'journal_append',
    ),
  );
  return id;
}
