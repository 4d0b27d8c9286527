import { randomUUID } from 'node:crypto';
import { sql } from '../../db/sql.ts';
import {
  type Change,
  conflict,
  invalid,
  journalChange,
  notFound,
  type RegistryContext,
  refuseIfReferenced,
} from './context.ts';

/** Complexes → buildings → entrances → apartments. */

export interface NamedInput {
  code: string;
  name: string;
}

export async function createComplex(ctx: RegistryContext, input: NamedInput): Promise<string> {
  if (await ctx.tx.one(sql`select 1 from complexes where code = ${input.code}`))
    throw conflict('code', 'a complex with this code already exists');
  const id = randomUUID();
  await ctx.tx.query(
    sql`insert into complexes (id, code, name) values (${id}, ${input.code}, ${input.name})`,
  );
  await journalChange(ctx, 'create', 'complex', id, { code: input.code });
  return id;
}

export async function updateComplex(
  ctx: RegistryContext,
  id: string,
  patch: { name?: string | undefined },
): Promise<Change> {
  const cur = await ctx.tx.one<{ code: string; name: string }>(
    sql`select code, name from complexes where id = ${id} for update`,
  );
  if (!cur) throw notFound('complex');
  if (patch.name === undefined || patch.name === cur.name) return 'unchanged';
  await ctx.tx.query(sql`update complexes set name = ${patch.name}, updated_at = now() where id = ${id}`);
  await journalChange(ctx, 'update', 'complex', id, { code: cur.code });
  return 'update';
}

export async function deleteComplex(ctx: RegistryContext, id: string): Promise<void> {
  const cur = await ctx.tx.one<{ code: string }>(sql`select code from complexes where id = ${id} for update`);
  if (!cur) throw notFound('complex');
  await refuseIfReferenced([
    { what: 'buildings', exists: () => ctx.tx.one(sql`select 1 from buildings where complex_id = ${id}`) },
    { what: 'devices', exists: () => ctx.tx.one(sql`select 1 from devices where complex_id = ${id}`) },
    {
      what: "partners' perimeters",
      exists: () => ctx.tx.one(sql`select 1 from partner_complexes where complex_id = ${id}`),
    },
  ]);
  await ctx.tx.query(sql`delete from complexes where id = ${id}`);
  await journalChange(ctx, 'delete', 'complex', id, { code: cur.code });
}

const LEVELS = {
  building: { table: 'buildings', parent: 'complex_id', parentTable: 'complexes', parentName: 'complex' },
  entrance: { table: 'entrances', parent: 'building_id', parentTable: 'buildings', parentName: 'building' },
} as const;

type Level = keyof typeof LEVELS;

/** Creates a building (parent: complex) or an entrance (parent: building). */
export async function createNamed(
  ctx: RegistryContext,
  object: Level,
  parentId: string,
  input: NamedInput,
): Promise<string> {
  const l = LEVELS[object];
  const t = sql.ident(l.table);
  const pc = sql.ident(l.parent);
  if (!(await ctx.tx.one(sql`select 1 from ${sql.ident(l.parentTable)} where id = ${parentId}`)))
    throw invalid(`${l.parentName}Id`, `unknown ${l.parentName}`);
  if (await ctx.tx.one(sql`select 1 from ${t} where ${pc} = ${parentId} and code = ${input.code}`))
    throw conflict('code', `a ${object} with this code already exists in this ${l.parentName}`);
  const id = randomUUID();
  await ctx.tx.query(
    sql`insert into ${t} (id, ${pc}, code, name) values (${id}, ${parentId}, ${input.code}, ${input.name})`,
  );
  await journalChange(ctx, 'create', object, id, { code: input.code });
  return id;
}

export async function updateNamed(
  ctx: RegistryContext,
  object: Level,
  id: string,
  patch: { name?: string | undefined },
): Promise<Change> {
  const t = sql.ident(LEVELS[object].table);
  const cur = await ctx.tx.one<{ code: string; name: string }>(
    sql`select code, name from ${t} where id = ${id} for update`,
  );
  if (!cur) throw notFound(object);
  if (patch.name === undefined || patch.name === cur.name) return 'unchanged';
  await ctx.tx.query(sql`update ${t} set name = ${patch.name} where id = ${id}`);
  await journalChange(ctx, 'update', object, id, { code: cur.code });
  return 'update';
}

export async function deleteNamed(ctx: RegistryContext, object: Level, id: string): Promise<void> {
  const t = sql.ident(LEVELS[object].table);
  const cur = await ctx.tx.one<{ code: string }>(sql`select code from ${t} where id = ${id} for update`);
  if (!cur) throw notFound(object);
  await refuseIfReferenced(
    object === 'building'
      ? [
          {
            what: 'entrances',
            exists: () => ctx.tx.one(sql`select 1 from entrances where building_id = ${id}`),
          },
          { what: 'devices', exists: () => ctx.tx.one(sql`select 1 from devices where building_id = ${id}`) },
        ]
      : [
          {
            what: 'apartments',
            exists: () => ctx.tx.one(sql`select 1 from apartments where entrance_id = ${id}`),
          },
          { what: 'devices', exists: () => ctx.tx.one(sql`select 1 from devices where entrance_id = ${id}`) },
        ],
  );
  await ctx.tx.query(sql`delete from ${t} where id = ${id}`);
  await journalChange(ctx, 'delete', object, id, { code: cur.code });
}

/** The apartment's path `complex/building/entrance/number` (codes only), for journal details. */
async function apartmentCode(ctx: RegistryContext, entranceId: string, number: string): Promise<string> {
  const r = await ctx.tx.one<{
    c: string;
    b: string;
    e: string;
  }>(sql`select c.code as c, b.code as b, e.code as e
    from entrances e join buildings b on b.id = e.building_id join complexes c on c.id = b.complex_id
    where e.id = ${entranceId}`);
  return r ? `${r.c}/${r.b}/${r.e}/${number}` : number;
}

export async function createApartment(
  ctx: RegistryContext,
  input: { entranceId: string; number: string },
): Promise<string> {
  if (!(await ctx.tx.one(sql`select 1 from entrances where id = ${input.entranceId}`)))
    throw invalid('entranceId', 'unknown entrance');
  const id = randomUUID();
  const inserted = await ctx.tx.query(sql`insert into apartments (id, entrance_id, number)
    values (${id}, ${input.entranceId}, ${input.number}) on conflict (entrance_id, number) do nothing returning id`);
  if (!inserted[0]) throw conflict('number', 'this entrance already has an apartment with this number');
  await journalChange(ctx, 'create', 'apartment', id, {
    code: await apartmentCode(ctx, input.entranceId, input.number),
  });
  return id;
}

/** `apply`: the apartment exists afterwards; created (and journaled) only if it did not. */
export async function ensureApartment(
  ctx: RegistryContext,
  input: { entranceId: string; number: string },
): Promise<{ id: string; change: Change }> {
  const cur = await ctx.tx.one<{ id: string }>(
    sql`select id from apartments where entrance_id = ${input.entranceId} and number = ${input.number}`,
  );
  if (cur) return { id: cur.id, change: 'unchanged' };
  return { id: await createApartment(ctx, input), change: 'create' };
}

export async function updateApartment(
  ctx: RegistryContext,
  id: string,
  patch: { number?: string | undefined },
): Promise<Change> {
  const cur = await ctx.tx.one<{ entrance_id: string; number: string }>(
    sql`select entrance_id, number from apartments where id = ${id} for update`,
  );
  if (!cur) throw notFound('apartment');
  if (patch.number === undefined || patch.number === cur.number) return 'unchanged';
  if (
    await ctx.tx.one(
      sql`select 1 from apartments where entrance_id = ${cur.entrance_id} and number = ${patch.number}`,
    )
  )
    throw conflict('number', 'this entrance already has an apartment with this number');
  await ctx.tx.query(sql`update apartments set number = ${patch.number} where id = ${id}`);
  await journalChange(ctx, 'update', 'apartment', id, {
    code: await apartmentCode(ctx, cur.entrance_id, patch.number),
  });
  return 'update';
}

export async function deleteApartment(ctx: RegistryContext, id: string): Promise<void> {
  const cur = await ctx.tx.one<{ entrance_id: string; number: string }>(
    sql`select entrance_id, number from apartments where id = ${id} for update`,
  );
  if (!cur) throw notFound('apartment');
  await refuseIfReferenced([
    {
      what: 'residents',
      exists: () => ctx.tx.one(sql`select 1 from resident_apartments where apartment_id = ${id}`),
    },
  ]);
  const code = await apartmentCode(ctx, cur.entrance_id, cur.number);
  await ctx.tx.query(sql`delete from apartments where id = ${id}`);
  await journalChange(ctx, 'delete', 'apartment', id, { code });
}
