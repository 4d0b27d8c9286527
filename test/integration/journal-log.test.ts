import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Db } from '../../src/db/db.ts';
import { openPgDb } from '../../src/db/pg-db.ts';
import { sql } from '../../src/db/sql.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { entryOf, JOURNAL_ROW_COLUMNS, type JournalRow } from '../../src/journal/log/leaf.ts';
import { consistencyFor, inclusionFor } from '../../src/journal/log/proofs.ts';
import {
  integrateAll,
  integrateBatch,
  latestCheckpoint,
  loadTiles,
  logState,
} from '../../src/journal/log/sequencer.ts';
import {
  consistencyNodes,
  consistencyProof,
  leafHash,
  rootOfLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from '../../src/tlog/merkle.ts';
import { noteSigner, openNote, parseCheckpoint } from '../../src/tlog/note.ts';
import { nodesFromTiles, tilesForNodes } from '../../src/tlog/tiles.ts';
import { createTestDb, isPostgres } from '../support/test-db.ts';

const ORIGIN = 'smart-home.test/journal';
const log = { origin: ORIGIN, signer: noteSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey) };
let db: Db & { schema?: string };

async function append(n: number, tag: string) {
  await db.transaction(async (tx) => {
    for (let i = 0; i < n; i++) {
      await appendJournal(tx, {
        actorType: 'system',
        action: 'test.append',
        result: 'ok',
        details: { tag, i },
      });
    }
  });
}

/** The entries in leaf order, straight from the rows. */
async function leavesFromRows(): Promise<Buffer[]> {
  const rows = await db.query<JournalRow>(sql`
    select ${JOURNAL_ROW_COLUMNS} from journal_leaves l join journal j on j.seq = l.journal_seq order by l.leaf_index`);
  return rows.map((r) => leafHash(entryOf(r)));
}

before(async () => {
  db = await createTestDb();
});
after(async () => {
  await db.close();
});

describe('the sequencer', () => {
  test('integrates every row in batches; the signed checkpoint names the root of the rows', async () => {
    await append(700, 'a');
    const n = await integrateAll(db, log, 256);
    assert.equal(n, 700);
    const st = await logState(db);
    assert.equal(st.size, 700);
    const leaves = await leavesFromRows();
    assert.equal(leaves.length, 700);
    assert.deepEqual(st.root, rootOfLeafHashes(leaves));
    const cp = await latestCheckpoint(db);
    assert.ok(cp);
    const opened = openNote(cp.note, [log.signer.verifier]);
    assert.deepEqual(parseCheckpoint(opened.text), {
      origin: ORIGIN,
      size: 700,
      root: st.root,
      extensions: [],
    });
    // Batches of 256: checkpoints at 256, 512 and 700.
    const sizes = await db.query<{ size: string }>(
      sql`select size::text as size from journal_checkpoints order by size`,
    );
    assert.deepEqual(
      sizes.map((r) => Number(r.size)),
      [256, 512, 700],
    );
    assert.equal((await integrateBatch(db, log, 256)).integrated, 0, 'nothing new, nothing signed');
  });

  test('a later batch is consistent with the earlier checkpoint, proved from the stored tiles', async () => {
    const before = await logState(db);
    await append(300, 'b');
    await integrateAll(db, log, 1000);
    const now = await logState(db);
    assert.equal(now.size, before.size + 300);
    const nodes = consistencyNodes(before.size, now.size);
    const tiles = new Map(
      (await loadTiles(db, tilesForNodes(nodes))).map((t) => [`${t.level}/${t.index}`, t.hashes]),
    );
    const proof = consistencyProof(
      before.size,
      now.size,
      nodesFromTiles(nodes, (id) => tiles.get(`${id.level}/${id.index}`)),
    );
    assert.ok(verifyConsistency(before.size, now.size, proof, before.root, now.root));
  });

  test('inclusion and consistency proofs for operators verify against the signed checkpoints', async () => {
    const cp = (await latestCheckpoint(db))!;
    const some = await db.one<{ id: string }>(sql`
      select j.id::text as id from journal j join journal_leaves l on l.journal_seq = j.seq where l.leaf_index = 123`);
    const inc = await inclusionFor(db, { journalId: some!.id });
    assert.equal(inc.leafIndex, 123);
    assert.equal(inc.treeSize, cp.size);
    assert.equal(inc.checkpoint, cp.note);
    assert.deepEqual(leafHash(Buffer.from(inc.entry)), Buffer.from(inc.leafHash, 'base64'));
    assert.ok(
      verifyInclusion(
        123,
        cp.size,
        Buffer.from(inc.leafHash, 'base64'),
        inc.proof.map((p) => Buffer.from(p, 'base64')),
        cp.root,
      ),
    );
    const at512 = (await db.one<{ root: Buffer }>(
      sql`select root from journal_checkpoints where size = 512`,
    ))!;
    const old = await inclusionFor(db, { journalId: some!.id }, 512);
    assert.ok(
      verifyInclusion(
        123,
        512,
        Buffer.from(old.leafHash, 'base64'),
        old.proof.map((p) => Buffer.from(p, 'base64')),
        Buffer.from(at512.root),
      ),
    );
    const cons = await consistencyFor(db, 512);
    assert.equal(cons.to, cp.size);
    assert.ok(
      verifyConsistency(
        512,
        cp.size,
        cons.proof.map((p) => Buffer.from(p, 'base64')),
        Buffer.from(at512.root),
        cp.root,
      ),
    );
    await assert.rejects(inclusionFor(db, { journalId: some!.id }, cp.size + 1), /no checkpoint covers/);
    await assert.rejects(inclusionFor(db, { journalId: some!.id }, 100), /beyond tree size 100/);
    await assert.rejects(consistencyFor(db, cp.size + 5), /beyond/);
  });

  test('the log tables refuse UPDATE, DELETE and TRUNCATE', async () => {
    for (const stmt of [
      sql`update journal_leaves set journal_seq = journal_seq where leaf_index = 0`,
      sql`delete from journal_leaves where leaf_index = 0`,
      sql`truncate journal_leaves`,
      sql`delete from journal_checkpoints`,
      sql`update journal_checkpoints set note = ''`,
    ]) {
      await assert.rejects(db.query(stmt), /append-only/);
    }
  });
});

if (isPostgres()) {
  describe('the sequencer on PostgreSQL, with concurrent writers and instances', () => {
    test('a row committed late by a transaction that began first is integrated, never skipped', async () => {
      const other = await openPgDb({
        connectionString: process.env['DATABASE_URL']!,
        max: 2,
        ...(db.schema ? { schema: db.schema } : {}),
      });
      try {
        await integrateAll(db, log, 1000);
        const start = (await logState(db)).size;
        let release!: () => void;
        const held = new Promise<void>((r) => {
          release = r;
        });
        let inserted!: () => void;
        const didInsert = new Promise<void>((r) => {
          inserted = r;
        });
        // A: writes first (takes the older transaction id), commits last.
        const slow = other.transaction(async (tx) => {
          await appendJournal(tx, { actorType: 'system', action: 'test.slow', result: 'ok' });
          inserted();
          await held;
        });
        await didInsert;
        await append(5, 'fast'); // B: commits first
        await integrateAll(db, log, 1000);
        assert.equal((await logState(db)).size, start, 'B waits behind the open transaction A');
        release();
        await slow;
        await integrateAll(db, log, 1000);
        const st = await logState(db);
        assert.equal(st.size, start + 6);
        assert.deepEqual(st.root, rootOfLeafHashes(await leavesFromRows()));
        const actions = await db.query<{ action: string }>(sql`
          select j.action from journal_leaves l join journal j on j.seq = l.journal_seq
          where l.leaf_index >= ${String(start)}::bigint order by l.leaf_index`);
        assert.equal(actions[0]!.action, 'test.slow', 'in transaction order');
      } finally {
        await other.close();
      }
    });

    test('two instances sequencing at once integrate every row exactly once', async () => {
      const other = await openPgDb({
        connectionString: process.env['DATABASE_URL']!,
        max: 2,
        ...(db.schema ? { schema: db.schema } : {}),
      });
      try {
        const start = (await logState(db)).size;
        await append(2000, 'race');
        await Promise.all([
          integrateAll(db, log, 100),
          integrateAll(other, log, 100),
          integrateAll(db, log, 100),
        ]);
        await integrateAll(db, log, 1000);
        const st = await logState(db);
        assert.equal(st.size, start + 2000);
        assert.deepEqual(st.root, rootOfLeafHashes(await leavesFromRows()));
      } finally {
        await other.close();
      }
    });
  });
}
