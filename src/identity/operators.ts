import { randomBytes, randomUUID, scrypt, timingSafeEqual } from 'node:crypto';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db, Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { clearFailures, isLocked, type LockoutPolicy, recordFailure } from './lockout.ts';
import { matchTotp, newTotpSecret, otpauthUri } from './totp.ts';

/** The field-cipher purpose of operators' TOTP secrets (its own data key, DESIGN §5). */
export const PURPOSE_OPERATOR_SECRETS = 'operator-secrets';
/** scrypt cost (RFC 7914 §2): N = 2^15, r = 8, p = 1, 32 MiB per check — OWASP's minimum for scrypt. */
const SCRYPT = { N: 32768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 } as const;
const LOGIN = /^[a-z0-9][a-z0-9._-]{1,62}$/;
export const MIN_PASSWORD_LENGTH = 12;

function scryptAsync(
  password: string,
  salt: Buffer,
  params: { N: number; r: number; p: number },
): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password, salt, 32, { ...params, maxmem: SCRYPT.maxmem }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const key = await scryptAsync(password, Buffer.from(salt, 'base64url'), {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A hash nobody's password matches, checked for unknown logins so timing does not tell them apart. */
let dummyHash: Promise<string> | undefined;

export class OperatorError extends Error {
  readonly code = 'ERR_OPERATOR';
}

export function checkLogin(login: string): void {
  if (!LOGIN.test(login)) {
    throw new OperatorError(
      'a login is 2–63 characters of a-z, 0-9, ".", "_", "-", starting with a letter or digit',
    );
  }
}

/**
 * Creates an operator (CLI `smart-home operator add`). Returns the otpauth:// URI of the new TOTP
 * secret, to be shown once: the secret is stored only encrypted.
 */
export async function createOperator(
  deps: { db: Queryable; cipher: FieldCipher },
  login: string,
  password: string,
  issuer = 'smart-home',
): Promise<{ id: string; otpauthUri: string }> {
  checkLogin(login);
  if (password.length < MIN_PASSWORD_LENGTH) {
    throw new OperatorError(`the password must be at least ${MIN_PASSWORD_LENGTH} characters`);
  }
  const id = randomUUID();
  const secret = newTotpSecret();
  const enc = deps.cipher.encrypt(
    PURPOSE_OPERATOR_SECRETS,
    { table: 'operators', column: 'totp_secret_enc', rowId: id },
    secret.toString('base64url'),
  );
  const hash = await hashPassword(password);
  const row = await deps.db.one<{
    id: string;
  }>(sql`insert into operators (id, login, password_hash, totp_secret_enc)
    values (${id}, ${login}, ${hash}, ${enc}) on conflict (login) do nothing returning id`);
  if (!row) throw new OperatorError(`operator ${login} already exists`);
  return { id, otpauthUri: otpauthUri(issuer, login, secret) };
}

export type OperatorSignIn = { ok: true; operatorId: string } | { ok: false; reason: 'invalid' | 'locked' };

/**
 * Password + TOTP. Every failure (unknown login, disabled, wrong password, wrong or reused code) is the
 * same `invalid` and counts towards the login's lockout, so neither answers nor timing say which part
 * failed or whether the login exists.
 */
export async function verifyOperator(
  deps: { db: Db; cipher: FieldCipher; policy: LockoutPolicy; now?: () => number },
  login: string,
  password: string,
  code: string,
): Promise<OperatorSignIn> {
  const subject = `operator:${login.toLowerCase().slice(0, 63)}`;
  if (await isLocked(deps.db, subject)) return { ok: false, reason: 'locked' };
  const op = LOGIN.test(login)
    ? await deps.db.one<{ id: string; password_hash: string; totp_secret_enc: string; enabled: boolean }>(
        sql`select id, password_hash, totp_secret_enc, enabled from operators where login = ${login}`,
      )
    : undefined;
  dummyHash ??= hashPassword(randomBytes(16).toString('base64url'));
  const passwordOk = await verifyPassword(password, op?.password_hash ?? (await dummyHash));
  let ok = false;
  if (op?.enabled && passwordOk) {
    const secret = Buffer.from(
      deps.cipher.decrypt(
        { table: 'operators', column: 'totp_secret_enc', rowId: op.id },
        op.totp_secret_enc,
      ),
      'base64url',
    );
    const step = matchTotp(secret, code, (deps.now ?? Date.now)());
    // RFC 6238 §5.2: a step is accepted once; the atomic update loses against a concurrent use of it.
    ok =
      step !== undefined &&
      (await deps.db.one(sql`update operators set totp_last_step = ${step}, updated_at = now()
        where id = ${op.id} and (totp_last_step is null or totp_last_step < ${step}) returning id`)) !==
        undefined;
  }
  if (ok && op) {
    await clearFailures(deps.db, subject);
    return { ok: true, operatorId: op.id };
  }
  const locked = await recordFailure(deps.db, subject, deps.policy);
  return { ok: false, reason: locked ? 'locked' : 'invalid' };
}
