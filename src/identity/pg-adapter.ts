import { type Adapter, type AdapterPayload, errors } from 'oidc-provider';
import type { Db, Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';

/**
 * Models whose `consume` is a use of a single-use credential: a second use of the same one means it
 * leaked (RFC 6749 §4.1.2 for codes, RFC 9700 §4.14.2 for rotated refresh tokens), so the whole grant
 * is revoked and the request refused.
 */
const SINGLE_USE = new Set([
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
]);

type Row = { payload: AdapterPayload; consumed_at: Date | string | null };

/**
 * oidc-provider's storage on our database (PGlite or PostgreSQL), one table for every model, so every
 * instance sees the same sessions, grants, codes and tokens. Expired rows are never returned (the
 * provider checks expiry too, but a row past `expires_at` is gone as far as it can tell) and are purged
 * by `purgeExpiredOidcModels`.
 */
export function createPgAdapterFactory(
  db: Db,
  opts: { revokedGrantRetentionSeconds: number },
): (name: string) => Adapter {
  return (model) => new PgAdapter(db, model, opts.revokedGrantRetentionSeconds);
}

/**
 * Remembers a revoked grant so the API refuses its access tokens at once (they are self-contained
 * JWTs, valid until exp otherwise), for as long as any of them could still be valid.
 */
export async function recordRevokedGrant(
  db: Queryable,
  grantId: string,
  retentionSeconds: number,
): Promise<void> {
  await db.query(sql`insert into revoked_grants (grant_id, expires_at)
    values (${grantId}, now() + make_interval(secs => ${retentionSeconds}::int))
    on conflict (grant_id) do update set expires_at = greatest(revoked_grants.expires_at, excluded.expires_at)`);
}

class PgAdapter implements Adapter {
  readonly #db: Db;
  readonly #model: string;
  readonly #retention: number;
  constructor(db: Db, model: string, retention: number) {
    this.#db = db;
    this.#model = model;
    this.#retention = retention;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
    const expires = Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : null;
    await this.#db.query(sql`insert into oidc_models (model, id, payload, grant_id, uid, user_code, expires_at)
      values (${this.#model}, ${id}, ${JSON.stringify(payload)}::jsonb, ${payload.grantId ?? null},
        ${payload.uid ?? null}, ${payload.userCode ?? null},
        case when ${expires}::int is null then null else now() + make_interval(secs => ${expires}::int) end)
      on conflict (model, id) do update set payload = excluded.payload, grant_id = excluded.grant_id,
        uid = excluded.uid, user_code = excluded.user_code, expires_at = excluded.expires_at`);
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.#read(
      await this.#db.one<Row>(sql`select payload, consumed_at from oidc_models
      where model = ${this.#model} and id = ${id} and (expires_at is null or expires_at > now())`),
    );
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.#read(
      await this.#db.one<Row>(sql`select payload, consumed_at from oidc_models
      where model = ${this.#model} and uid = ${uid} and (expires_at is null or expires_at > now())`),
    );
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.#read(
      await this.#db.one<Row>(sql`select payload, consumed_at from oidc_models
      where model = ${this.#model} and user_code = ${userCode} and (expires_at is null or expires_at > now())`),
    );
  }

  /**
   * Atomic: exactly one caller marks a row consumed. For single-use credentials the loser of a race
   * (or a replay) revokes the grant and gets `invalid_grant`, closing the window between the
   * provider's own "already consumed?" check and this call.
   */
  async consume(id: string): Promise<void> {
    const won = await this.#db.one<{ grant_id: string | null }>(sql`update oidc_models set consumed_at = now()
      where model = ${this.#model} and id = ${id} and consumed_at is null
        and (expires_at is null or expires_at > now())
      returning grant_id`);
    if (won || !SINGLE_USE.has(this.#model)) return;
    const row = await this.#db.one<{ grant_id: string | null }>(
      sql`select grant_id from oidc_models where model = ${this.#model} and id = ${id}`,
    );
    if (row?.grant_id) await revokeGrantEverywhere(this.#db, row.grant_id, this.#retention);
    throw new errors.InvalidGrant('the credential was already used');
  }

  async destroy(id: string): Promise<void> {
    await this.#db.query(sql`delete from oidc_models where model = ${this.#model} and id = ${id}`);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.#db.transaction(async (tx) => {
      await tx.query(sql`delete from oidc_models where model = ${this.#model} and grant_id = ${grantId}`);
      await recordRevokedGrant(tx, grantId, this.#retention);
    });
  }

  #read(row: Row | undefined): AdapterPayload | undefined {
    if (!row) return undefined;
    const payload =
      typeof row.payload === 'string' ? (JSON.parse(row.payload) as AdapterPayload) : row.payload;
    if (!row.consumed_at) return payload;
    const at = row.consumed_at instanceof Date ? row.consumed_at : new Date(row.consumed_at);
    return { ...payload, consumed: Math.floor(at.getTime() / 1000) };
  }
}

/** Every token, code and session binding of a grant, and the grant itself. */
export async function revokeGrantEverywhere(
  db: Db,
  grantId: string,
  retentionSeconds: number,
): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.query(sql`delete from oidc_models
      where grant_id = ${grantId} or (model = 'Grant' and id = ${grantId})`);
    await recordRevokedGrant(tx, grantId, retentionSeconds);
  });
}

/**
 * Housekeeping: rows past their expiry, expired sign-in codes, and failure counters that have not moved
 * for `failureWindowSeconds` and lock nothing.
 */
export async function purgeExpiredOidcModels(db: Db, failureWindowSeconds: number): Promise<number> {
  const rows = await db.query<{ n: number }>(sql`with d as (
      delete from oidc_models where expires_at is not null and expires_at <= now() returning 1)
    select count(*)::int as n from d`);
  await db.query(sql`delete from sign_in_codes where expires_at <= now()`);
  await db.query(sql`delete from revoked_grants where expires_at <= now()`);
  await db.query(sql`delete from sign_in_lockouts
    where (locked_until is null or locked_until <= now()) and updated_at < now() - make_interval(secs => ${failureWindowSeconds}::int)`);
  return rows[0]?.n ?? 0;
}
