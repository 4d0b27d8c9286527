import { createHash } from 'node:crypto';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { type ActorType, appendJournal } from '../../journal/journal.ts';

/**
 * The registry service layer: one function per change of one kind of registry object, shared by the
 * CLI's `apply` (src/registry/apply.ts) and the operator API (src/admin-api/). Every function runs inside
 * the caller's transaction and journals its change in that same transaction, so a change and its
 * journal entry commit or roll back together.
 */
export interface RegistryActor {
  type: ActorType;
  /** The operator's id, or `cli`/the CLI user for `apply`. */
  id: string;
  requestId?: string | null | undefined;
}

export type RegistryObject =
  | 'complex'
  | 'building'
  | 'entrance'
  | 'apartment'
  | 'partner'
  | 'device'
  | 'resident'
  | 'guest-pass';

export type ChangeKind = 'create' | 'update' | 'delete';
export type Change = ChangeKind | 'unchanged';

export interface RegistryContext {
  tx: Queryable;
  cipher: FieldCipher;
  actor: RegistryActor;
  /** Told of every journaled change (apply builds its summary from it); `label` holds no personal data. */
  onChange?: (c: { kind: ChangeKind; object: RegistryObject; subjectId: string; label: string }) => void;
}

/**
 * A change that cannot be made. `field` is the offending input field as a relative path in the API's
 * terms (`complexId`, `networks/2`); callers prefix it with their own location.
 */
export class RegistryError extends Error {
  readonly kind: 'not-found' | 'conflict' | 'invalid';
  readonly field: string | undefined;
  constructor(kind: 'not-found' | 'conflict' | 'invalid', field: string | undefined, message: string) {
    super(message);
    this.kind = kind;
    this.field = field;
  }
}

export const notFound = (what: string) => new RegistryError('not-found', undefined, `unknown ${what}`);
export const invalid = (field: string, message: string) => new RegistryError('invalid', field, message);
export const conflict = (field: string | undefined, message: string) =>
  new RegistryError('conflict', field, message);

/** Stable id for journal details: a short hash, so even refs never leak into shared projections. */
export const short = (s: string) => createHash('sha256').update(s).digest('base64url').slice(0, 12);

export function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  return sa.size === new Set(b).size && b.every((x) => sa.has(x));
}

/** A link table: rows of (owner column, item column), e.g. a resident's apartments. */
export interface LinkTable {
  table: string;
  owner: string;
  item: string;
  /** A PostgreSQL type the item is cast to on insert (and read back as text for the comparison). */
  cast?: 'cidr';
}

/**
 * Makes the links of one owner exactly `items` (delete and insert, in the caller's transaction).
 * Returns false, writing nothing, when they already were.
 */
export async function replaceLinks(
  ctx: RegistryContext,
  link: LinkTable,
  ownerId: string,
  items: readonly string[],
): Promise<boolean> {
  const [table, owner, item] = [sql.ident(link.table), sql.ident(link.owner), sql.ident(link.item)];
  const cur = (
    await ctx.tx.query<{ v: string }>(
      sql`select ${item}::text as v from ${table} where ${owner} = ${ownerId}`,
    )
  ).map((r) => r.v);
  if (sameSet(cur, items)) return false;
  await ctx.tx.query(sql`delete from ${table} where ${owner} = ${ownerId}`);
  for (const v of new Set(items)) {
    const value = link.cast === 'cidr' ? sql`${v}::cidr` : sql`${v}`;
    await ctx.tx.query(sql`insert into ${table} (${owner}, ${item}) values (${ownerId}, ${value})`);
  }
  return true;
}

/** Appends the journal entry of one registry change (action `registry.<object>.<kind>`). */
export async function journalChange(
  ctx: RegistryContext,
  kind: ChangeKind,
  object: RegistryObject,
  subjectId: string,
  details: Record<string, unknown>,
  label?: string,
): Promise<void> {
  await appendJournal(ctx.tx, {
    actorType: ctx.actor.type,
    actorId: ctx.actor.id,
    action: `registry.${object}.${kind}`,
    subjectType: object,
    subjectId,
    result: 'ok',
    requestId: ctx.actor.requestId ?? null,
    details,
    ...(typeof details['partnerId'] === 'string' ? { partnerId: details['partnerId'] } : {}),
    ...(typeof details['deviceId'] === 'string' ? { deviceId: details['deviceId'] } : {}),
  });
  ctx.onChange?.({ kind, object, subjectId, label: label ?? String(details['code'] ?? subjectId) });
}

/** Refuses a delete while any of `refs` still points at the row: 409, never a half-delete. */
export async function refuseIfReferenced(
  refs: Array<{ what: string; exists: () => Promise<unknown> }>,
): Promise<void> {
  for (const r of refs) {
    if (await r.exists()) throw conflict(undefined, `still referenced by ${r.what}; remove those first`);
  }
}
