import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
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

/**
 * Appends one entry. Always called with the transaction that makes the change, so the change and its
 * journal entry commit or roll back together (seed 002: audit of every access action).
 */
export async function appendJournal(tx: Queryable, e: JournalEntry): Promise<string> {
  const id = e.id ?? uuidv7();
  await tx.query(sql`insert into journal
    (id, actor_type, actor_id, action, partner_id, device_id, subject_type, subject_id, result, request_id, details)
    values (${id}, ${e.actorType}, ${e.actorId ?? null}, ${e.action}, ${e.partnerId ?? null}, ${e.deviceId ?? null},
      ${e.subjectType ?? null}, ${e.subjectId ?? null}, ${e.result}, ${e.requestId ?? null}, ${JSON.stringify(e.details ?? {})})`);
  return id;
}
