import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';

export type LockoutPolicy = { maxFailures: number; lockoutSeconds: number };

/**
 * Failed sign-in counters by subject (`phone:<blind index>`, `operator:<login>`). A subject reaching
 * `maxFailures` is locked for `lockoutSeconds`, whether or not it names a real account, so a lockout
 * says nothing about who exists.
 */
export async function isLocked(db: Queryable, subject: string): Promise<boolean> {
  const row = await db.one(
    sql`select 1 as locked from sign_in_lockouts where subject = ${subject} and locked_until > now()`,
  );
  return row !== undefined;
}

/** Counts one failure atomically; true when this failure locked the subject. */
export async function recordFailure(db: Queryable, subject: string, policy: LockoutPolicy): Promise<boolean> {
  const row = await db.one<{
    locked: boolean;
  }>(sql`insert into sign_in_lockouts as l (subject, failures, locked_until, updated_at)
      values (${subject}, 1,
        case when 1 >= ${policy.maxFailures}::int then now() + make_interval(secs => ${policy.lockoutSeconds}::int) end,
        now())
    on conflict (subject) do update set
      failures = case when l.failures + 1 >= ${policy.maxFailures}::int then 0 else l.failures + 1 end,
      locked_until = case when l.failures + 1 >= ${policy.maxFailures}::int
        then now() + make_interval(secs => ${policy.lockoutSeconds}::int) else l.locked_until end,
      updated_at = now()
    returning (locked_until is not null and locked_until > now()) as locked`);
  return row?.locked === true;
}

export async function clearFailures(db: Queryable, subject: string): Promise<void> {
  await db.query(
    sql`update sign_in_lockouts set failures = 0, updated_at = now() where subject = ${subject}`,
  );
}
