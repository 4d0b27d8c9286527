import { isIPv6 } from 'node:net';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';

/**
 * Limits on sending one-time sign-in codes. Each send is an SMS that costs money and reaches a person,
 * so without limits anyone could make us text a number without end (cost, harassment).
 */
export type SendLimitPolicy = {
  /** Length of the counting window, in seconds. */
  windowSeconds: number;
  /** Codes one phone number may be sent per window. */
  perPhone: number;
  /** Least time between two codes to one phone number, in seconds (0: none). */
  phoneIntervalSeconds: number;
  /** Codes that may be requested from one client address per window. */
  perAddress: number;
};

export type SendSubject = { subject: string; max: number; intervalSeconds: number };

class Throttled extends Error {}

/**
 * Takes one send from every subject's allowance, all or none, in one transaction. Each subject is
 * one row updated by a single `INSERT … ON CONFLICT DO UPDATE … WHERE` statement, so concurrent
 * requests on any number of instances queue on the row lock and each sees the count the previous
 * one left: the limits hold exactly, not per instance. A fixed window: the first send after a window
 * ends opens a new one. Subjects are taken in the order given; callers pass them in one fixed order
 * (address, then phone) so two requests never wait on each other's rows.
 */
export async function takeSend(
  db: Db,
  subjects: readonly SendSubject[],
  windowSeconds: number,
): Promise<boolean> {
  try {
    await db.transaction(async (tx) => {
      for (const s of subjects) {
        const row = await tx.one(sql`insert into sign_in_send_limits as l
            (subject, window_started_at, sends, last_sent_at)
          values (${s.subject}, now(), 1, now())
          on conflict (subject) do update set
            window_started_at = case
              when l.window_started_at <= now() - make_interval(secs => ${windowSeconds}::int) then now()
              else l.window_started_at end,
            sends = case
              when l.window_started_at <= now() - make_interval(secs => ${windowSeconds}::int) then 1
              else l.sends + 1 end,
            last_sent_at = now()
          where (${s.intervalSeconds}::int = 0
              or l.last_sent_at <= now() - make_interval(secs => ${s.intervalSeconds}::int))
            and (l.window_started_at <= now() - make_interval(secs => ${windowSeconds}::int)
              or l.sends < ${s.max}::int)
          returning 1 as taken`);
        if (!row) throw new Throttled();
      }
    });
    return true;
  } catch (err) {
    if (err instanceof Throttled) return false;
    throw err;
  }
}

/** Housekeeping: counters whose window and interval have both passed count nothing any more. */
export async function purgeSendLimits(db: Db, policy: SendLimitPolicy): Promise<void> {
  const keep = Math.max(policy.windowSeconds, policy.phoneIntervalSeconds);
  await db.query(sql`delete from sign_in_send_limits
    where window_started_at <= now() - make_interval(secs => ${keep}::int)
      and last_sent_at <= now() - make_interval(secs => ${keep}::int)`);
}

/**
 * The address a limit counts: IPv4 as is (an IPv4-mapped IPv6 address as its IPv4), IPv6 by its /64,
 * the smallest block one subscriber is usually given (RFC 6177), so rotating through one's own /64
 * does not multiply the allowance.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
