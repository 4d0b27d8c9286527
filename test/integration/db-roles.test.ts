import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Db } from '../../src/db/db.ts';
import { pendingMigrations } from '../../src/db/migrate.ts';
import { openPgDb } from '../../src/db/pg-db.ts';
import { sql } from '../../src/db/sql.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { integrateAll, logState } from '../../src/journal/log/sequencer.ts';
import { noteSigner } from '../../src/tlog/note.ts';
import { createTestDb, isPostgres } from '../support/test-db.ts';

let db: Db & { schema?: string };
before(async () => {
  db = await createTestDb();
  await appendJournal(db, { actorType: 'system', action: 'test.roles', result: 'ok' });
});
after(() => db.close());

/** One statement as the service's role, with the append-only triggers out of the way (a superuser's switch). */
async function asAppRole(statement: string): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.exec(
      `set local session_replication_role = replica; set local role smart_home_app; ${statement}`,
    );
  });
}

describe('the service role smart_home_app (docs/security-model.md, "Database roles")', () => {
  for (const table of ['journal', 'journal_leaves', 'journal_checkpoints']) {
    test(`cannot UPDATE, DELETE or TRUNCATE ${table}, even with the triggers switched off`, async () => {
      for (const stmt of [
        `update ${table} set ${table === 'journal' ? "result = 'x'" : table === 'journal_leaves' ? 'leaf_index = leaf_index' : "note = ''"}`,
        `delete from ${table}`,
        `truncate ${table}`,
      ]) {
        await assert.rejects(asAppRole(stmt), /permission denied for table/, stmt);
      }
    });
  }
  test('may append to the journal, read it, and keep the sequencer state', async () => {
    await asAppRole(
      `insert into journal (id, actor_type, action, result) values (gen_random_uuid(), 'system', 'test.roles', 'ok')`,
    );
    await asAppRole('select count(*) from journal');
    await asAppRole('update journal_log_state set size = size');
    await asAppRole('update residents set updated_at = now() where false');
  });
});

if (isPostgres()) {
  describe('the service as a login in smart_home_app, on PostgreSQL', () => {
    test('sees an up-to-date schema, appends and sequences, and can change neither the journal nor the schema', async () => {
      const admin = await openPgDb({ connectionString: process.env['DATABASE_URL']!, max: 1 });
      await admin.exec(`do $$ begin
        if not exists (select from pg_roles where rolname = 'smart_home_test_login') then
          create role smart_home_test_login login in role smart_home_app;
        end if; end $$`);
      await admin.close();
      const url = new URL(process.env['DATABASE_URL']!);
      url.username = 'smart_home_test_login';
      url.password = '';
      const app = await openPgDb({ connectionString: url.href, max: 2, schema: db.schema! });
      try {
        assert.deepEqual(await pendingMigrations(app), []);
        await appendJournal(app, { actorType: 'system', action: 'test.roles', result: 'ok' });
        const log = {
          origin: 'roles.test/journal',
          signer: noteSigner('roles.test/journal', generateKeyPairSync('ed25519').privateKey),
        };
        await integrateAll(app, log, 100);
        assert.ok((await logState(app)).size >= 2);
        await assert.rejects(
          app.query(sql`update journal set result = 'x'`),
          /permission denied|append-only/,
        );
        await assert.rejects(
          app.query(sql`delete from journal_checkpoints`),
          /permission denied|append-only/,
        );
        await assert.rejects(app.exec('create table t_forbidden (x int)'), /permission denied/);
      } finally {
        await app.close();
      }
    });
  });
}
