import { randomInt, timingSafeEqual } from 'node:crypto';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { PURPOSE_PII } from '../registry/apply.ts';
import { clearFailures, isLocked, type LockoutPolicy, recordFailure } from './lockout.ts';
import type { OtpSender } from './otp-sender.ts';
import { addressKey, type SendLimitPolicy, takeSend } from './send-limits.ts';

export type OtpPolicy = LockoutPolicy & {
  /** Lifetime of a code. */
  ttlSeconds: number;
  /** Digits of a code. */
  digits: number;
  /** How many codes may be sent, per number and per client address. */
  sends: SendLimitPolicy;
};

/** E.164 as the registry stores it (`residents.phone`, document schema). */
const E164 = /^\+[1-9][0-9]{7,14}$/;

/**
 * The number as the registry stores it, from what a person types: spaces, dashes, dots and brackets
 * are dropped, and the Russian trunk form `8XXXXXXXXXX` becomes `+7XXXXXXXXXX`. Undefined when the
 * result is not E.164.
 */
export function normalizePhone(input: string): string | undefined {
  if (typeof input !== 'string' || input.length > 32) return undefined;
  let s = input.replace(/[\s\-().]/g, '');
  if (/^8\d{10}$/.test(s)) s = `+7${s.slice(1)}`;
  else if (/^7\d{10}$/.test(s)) s = `+${s}`;
  return E164.test(s) ? s : undefined;
}

export type StartResult = 'sent' | 'locked' | 'throttled';
export type VerifyResult =
  | { ok: true; residentId: string }
  | { ok: false; reason: 'wrong' | 'expired' | 'locked' | 'no-challenge' };

/**
 * Phone + one-time code sign-in for residents. One challenge per authorization interaction. The phone
 * is looked up only by its keyed blind index; an unknown number gets a challenge too (no code is sent,
 * and no code can match it), so the pages answer the same for known and unknown numbers. Codes are kept
 * only as an HMAC under a key that lives in the database wrapped by the KEK, bound to the interaction.
 */
export class ResidentOtp {
  readonly #db: Db;
  readonly #cipher: FieldCipher;
  readonly #sender: OtpSender;
  readonly #policy: OtpPolicy;

  constructor(deps: { db: Db; cipher: FieldCipher; sender: OtpSender; policy: OtpPolicy }) {
    this.#db = deps.db;
    this.#cipher = deps.cipher;
    this.#sender = deps.sender;
    this.#policy = deps.policy;
  }

  #hash(uid: string, code: string): string {
    // The PII purpose's blind-index key (HKDF of its first data key): keyed, stable across instances.
    return this.#cipher.blindIndex(PURPOSE_PII, `sign-in-code/v1|${uid}|${code}`);
  }

  /**
   * `phone` must already be normalised (see normalizePhone); `clientAddress` is the requester's
   * address. A send is counted for the number and the address whether or not the number is a
   * resident's, so a refusal says nothing about who exists; both are kept only as keyed blind indexes.
   */
  async start(uid: string, phone: string, locale: 'ru' | 'en', clientAddress: string): Promise<StartResult> {
    const phoneIndex = this.#cipher.blindIndex(PURPOSE_PII, phone);
    if (await isLocked(this.#db, `phone:${phoneIndex}`)) return 'locked';
    const { sends } = this.#policy;
    const addressIndex = this.#cipher.blindIndex(
      PURPOSE_PII,
      `client-address/v1|${addressKey(clientAddress)}`,
    );
    const allowed = await takeSend(
      this.#db,
      [
        { subject: `address:${addressIndex}`, max: sends.perAddress, intervalSeconds: 0 },
        { subject: `phone:${phoneIndex}`, max: sends.perPhone, intervalSeconds: sends.phoneIntervalSeconds },
      ],
      sends.windowSeconds,
    );
    if (!allowed) return 'throttled';
    const resident = await this.#db.one<{ id: string }>(
      sql`select id from residents where phone_index = ${phoneIndex}`,
    );
    const code = String(randomInt(0, 10 ** this.#policy.digits)).padStart(this.#policy.digits, '0');
    // For an unknown number the stored hash is of a code nobody has seen, so no guess can match it.
    const hashed = resident ? this.#hash(uid, code) : this.#hash(uid, `unknown|${randomInt(0, 2 ** 47)}`);
    await this.#db.query(sql`insert into sign_in_codes (interaction_uid, phone_index, resident_id, code_hash, expires_at)
      values (${uid}, ${phoneIndex}, ${resident?.id ?? null}, ${hashed},
        now() + make_interval(secs => ${this.#policy.ttlSeconds}::int))
      on conflict (interaction_uid) do update set phone_index = excluded.phone_index,
        resident_id = excluded.resident_id, code_hash = excluded.code_hash, attempts = 0,
        expires_at = excluded.expires_at, consumed_at = null, created_at = now()`);
    if (resident) await this.#sender.send({ phone, code, locale });
    return 'sent';
  }

  /** Whether the interaction has a live challenge (the code form is shown rather than the phone form). */
  async pending(uid: string): Promise<boolean> {
    const row = await this.#db.one(sql`select 1 as p from sign_in_codes
      where interaction_uid = ${uid} and consumed_at is null and expires_at > now()`);
    return row !== undefined;
  }

  async verify(uid: string, code: string): Promise<VerifyResult> {
    const challenge = await this.#db.one<{ phone_index: string; live: boolean }>(sql`select phone_index,
        (expires_at > now()) as live from sign_in_codes where interaction_uid = ${uid} and consumed_at is null`);
    if (!challenge) return { ok: false, reason: 'no-challenge' };
    const subject = `phone:${challenge.phone_index}`;
    if (await isLocked(this.#db, subject)) return { ok: false, reason: 'locked' };
    if (!challenge.live) return { ok: false, reason: 'expired' };
    // One attempt is taken atomically before comparing, so parallel guesses cannot exceed the limit.
    const attempt = await this.#db.one<{
      code_hash: string;
      resident_id: string | null;
    }>(sql`update sign_in_codes
        set attempts = attempts + 1
      where interaction_uid = ${uid} and consumed_at is null and expires_at > now()
        and attempts < ${this.#policy.maxFailures}::int
      returning code_hash, resident_id`);
    if (!attempt) return { ok: false, reason: 'locked' };
    const expected = Buffer.from(attempt.code_hash);
    const given = Buffer.from(this.#hash(uid, /^\d{1,12}$/.test(code) ? code : 'invalid'));
    const match = expected.length === given.length && timingSafeEqual(expected, given);
    if (match && attempt.resident_id) {
      const used = await this.#db.one<{
        resident_id: string;
      }>(sql`update sign_in_codes set consumed_at = now()
        where interaction_uid = ${uid} and consumed_at is null returning resident_id`);
      if (used) {
        await clearFailures(this.#db, subject);
        return { ok: true, residentId: used.resident_id };
      }
      return { ok: false, reason: 'no-challenge' };
    }
    const locked = await recordFailure(this.#db, subject, this.#policy);
    return { ok: false, reason: locked ? 'locked' : 'wrong' };
  }
}
