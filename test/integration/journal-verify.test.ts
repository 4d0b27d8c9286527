import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import type { Db } from '../../src/db/db.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { integrateAll, latestCheckpoint } from '../../src/journal/log/sequencer.ts';
import { CompactRange, verifyLog } from '../../src/journal/log/verify.ts';
import { leafHash, rootOfLeafHashes } from '../../src/tlog/merkle.ts';
import { cosigner, noteSigner, openNote, signNote } from '../../src/tlog/note.ts';
import { createTestDb } from '../support/test-db.ts';

const ORIGIN = 'smart-home.test/journal';
const key = generateKeyPairSync('ed25519').privateKey;
const log = { origin: ORIGIN, signer: noteSigner(ORIGIN, key) };
const opts = { origin: ORIGIN, verifiers: [log.signer.verifier], chunk: 97 };

/** A database holding a log of `n` rows, integrated in batches of 100. */
async function world(n: number): Promise<Db> {
  const db = await createTestDb();
  await db.transaction(async (tx) => {
    for (let i = 0; i < n; i++) {
      await appendJournal(tx, {
        actorType: 'system',
        action: 'test.verify',
        result: i % 2 ? 'ok' : 'denied',
        details: { i },
      });
    }
  });
  await integrateAll(db, log, 100);
  return db;
}

/** What a superuser can do around the application and its triggers. */
async function asSuperuser(db: Db, statements: string): Promise<void> {
  await db.transaction(async (tx) => {
    await tx.exec(`set local session_replication_role = replica; ${statements}`);
  });
}

describe('CompactRange', () => {
  test('its root is the RFC 9162 root at every size', () => {
    const range = new CompactRange();
    const leaves: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      assert.deepEqual(range.root(), rootOfLeafHashes(leaves));
      const l = leafHash(Buffer.from(String(i)));
      leaves.push(l);
      range.append(l);
    }
  });
});

describe('journal verify', () => {
  test('an untouched log verifies, with progress up to its size', async () => {
    const db = await world(450);
    try {
      const seen: number[] = [];
      const r = await verifyLog(db, { ...opts, onProgress: (d) => seen.push(d) });
      assert.deepEqual(r.problems, []);
      assert.equal(r.ok, true);
      assert.equal(r.size, 450);
      assert.equal(r.checkpoints, 5);
      assert.equal(seen.at(-1), 450);
    } finally {
      await db.close();
    }
  });

  test('a row edited by a superuser is caught', async () => {
    const db = await world(450);
    try {
      await asSuperuser(
        db,
        `update journal set result = 'ok' where seq = (select journal_seq from journal_leaves where leaf_index = 200)`,
      );
      const r = await verifyLog(db, opts);
      assert.equal(r.ok, false);
      assert.ok(
        r.problems.some((p) => /checkpoint 300: root differs/.test(p)),
        r.problems.join('; '),
      );
    } finally {
      await db.close();
    }
  });

  test('a deleted row is caught', async () => {
    const db = await world(450);
    try {
      await asSuperuser(
        db,
        'delete from journal where seq = (select journal_seq from journal_leaves where leaf_index = 10)',
      );
      const r = await verifyLog(db, opts);
      assert.equal(r.ok, false);
      assert.ok(r.problems.includes('leaf 10: its journal row is gone'), r.problems.join('; '));
    } finally {
      await db.close();
    }
  });

  test('two rows swapped are caught', async () => {
    const db = await world(450);
    try {
      await asSuperuser(
        db,
        `update journal a set at = b.at, details = b.details, result = b.result from journal b,
           (select (select journal_seq from journal_leaves where leaf_index = 5) as x,
                   (select journal_seq from journal_leaves where leaf_index = 6) as y) p
         where (a.seq = p.x and b.seq = p.y) or (a.seq = p.y and b.seq = p.x)`,
      );
      const r = await verifyLog(db, opts);
      assert.equal(r.ok, false);
      assert.ok(r.problems.some((p) => /root differs/.test(p)));
    } finally {
      await db.close();
    }
  });

  test('a tail cut off is caught by the checkpoints; cut with its checkpoints, by a witness-cosigned anchor', async () => {
    const db = await world(450);
    try {
      const witness = cosigner('partner.test/witness', generateKeyPairSync('ed25519').privateKey);
      const cp = await latestCheckpoint(db);
      // The witness's copy: our checkpoint with its cosignature added (contract §8.2).
      const cosigned = signNote(openNote(cp!.note, [log.signer.verifier]).text, [log.signer, witness]);
      await asSuperuser(
        db,
        `
        delete from journal where seq in (select journal_seq from journal_leaves where leaf_index >= 420);
        delete from journal_leaves where leaf_index >= 420;`,
      );
      const cut = await verifyLog(db, opts);
      assert.equal(cut.ok, false);
      assert.ok(
        cut.problems.some((p) => /a checkpoint was signed for 450/.test(p)),
        cut.problems.join('; '),
      );
      // The thorough attacker also rewrites checkpoints and state back to 400 (with the log's own key).
      await asSuperuser(
        db,
        `
        delete from journal_checkpoints where size > 400;
        update journal_log_state set size = 400, root = (select root from journal_checkpoints where size = 400);
        delete from journal where seq in (select journal_seq from journal_leaves where leaf_index >= 400);
        delete from journal_leaves where leaf_index >= 400;`,
      );
      assert.equal((await verifyLog(db, opts)).ok, true, 'locally consistent again');
      const anchored = await verifyLog(db, {
        ...opts,
        verifiers: [log.signer.verifier, witness.verifier],
        anchors: [cosigned],
      });
      assert.equal(anchored.ok, false);
      assert.ok(
        anchored.problems.some((p) => /anchor checkpoint has 450/.test(p)),
        anchored.problems.join('; '),
      );
    } finally {
      await db.close();
    }
  });

  test('a forged checkpoint or a changed tile is caught', async () => {
    const db = await world(300);
    try {
      const other = noteSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey);
      const forged = signNote(`${ORIGIN}\n300\n${Buffer.alloc(32).toString('base64')}\n`, [other]);
      await asSuperuser(
        db,
        `update journal_checkpoints set note = '${forged}' where size = 300;
        update journal_tiles set hashes = overlay(hashes placing '\\x00' from 1 for 1) where level = 0 and idx = 0;`,
      );
      const r = await verifyLog(db, opts);
      assert.equal(r.ok, false);
      assert.ok(
        r.problems.some((p) => /checkpoint 300: no signature by a known key/.test(p)),
        r.problems.join('; '),
      );
      assert.ok(
        r.problems.some((p) => /tile 0\/0/.test(p)),
        r.problems.join('; '),
      );
    } finally {
      await db.close();
    }
  });
});
