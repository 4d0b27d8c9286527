import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createTestDb } from '../../test/support/test-db.ts';
import type { Db } from './db.ts';
import { loadMigrations, migrate } from './migrate.ts';
import { sql } from './sql.ts';

let db: Db;
before(async () => {
  db = await createTestDb();
});
after(() => db.close());

test('sql template binds values as parameters and nests fragments', () => {
  const inner = sql`b = ${2}`;
  const q = sql`select * from t where a = ${1} and ${inner} and c in (${sql.join([3, 4])})`;
  assert.deepEqual(q.compile(), {
    text: 'select * from t where a = $1 and b = $2 and c in ($3, $4)',
    values: [1, 2, 3, 4],
  });
  assert.throws(() => sql.ident('a"; drop table x; --'));
});

test('migrations are applied once and re-running is a no-op', async () => {
  const again = await migrate(db);
  assert.deepEqual(again.applied, []);
  const rows = await db.query<{ version: number }>(
    sql`select version from schema_migrations order by version`,
  );
  assert.deepEqual(
    rows.map((r) => r.version),
    (await loadMigrations()).map((m) => m.version),
  );
});

test('a migration changed after it was applied is refused', async () => {
  const changed = (await loadMigrations()).map((m, i) => (i === 0 ? { ...m, checksum: 'x' } : m));
  await assert.rejects(migrate(db, changed), /was changed after it was applied/);
});

test('a failing transaction leaves nothing behind', async () => {
  const id = randomUUID();
  await assert.rejects(
    db.transaction(async (tx) => {
      await tx.query(sql`insert into complexes (id, code, name) values (${id}, ${'c-rollback'}, ${'X'})`);
      throw new Error('boom');
    }),
    /boom/,
  );
  assert.equal(await db.one(sql`select 1 from complexes where id = ${id}`), undefined);
});

test('the journal refuses UPDATE, DELETE and TRUNCATE', async () => {
  await db.query(
    sql`insert into journal (id, actor_type, action, result) values (${randomUUID()}, 'system', 'test', 'ok')`,
  );
  await assert.rejects(db.query(sql`update journal set result = 'x'`), /append-only/);
  await assert.rejects(db.query(sql`delete from journal`), /append-only/);
  await assert.rejects(db.exec('truncate journal'), /append-only/);
  const n = await db.one<{ n: number }>(sql`select count(*)::int as n from journal`);
  assert.equal(n?.n, 1);
});
