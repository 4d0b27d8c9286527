import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { integrateAll } from '../../src/journal/log/sequencer.ts';
import { ensureDevelopmentMaterial, loadJournalLog } from '../../src/server.ts';
import { smartHomeCli, withDataDb } from '../support/cli.ts';

// The CLI on the embedded database of a data directory (PGlite), the way an operator runs it.
let dir: string;
const _env = () => ({
  ...process.env,
  NODE_ENV: 'development',
  SMART_HOME_DATA_DIR: dir,
  DATABASE_URL: '',
  LOG_LEVEL: 'warn',
});
const smartHome = smartHomeCli(() => dir);

/** Work on the data directory's database in this process (the CLI must not run meanwhile). */

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'smart-home-journal-cli-'));
  const config = loadConfig({ SMART_HOME_DATA_DIR: dir });
  await ensureDevelopmentMaterial(config);
  const log = await loadJournalLog(config);
  await withDataDb(dir, async (db) => {
    await db.transaction(async (tx) => {
      for (let i = 0; i < 300; i++)
        await appendJournal(tx, { actorType: 'system', action: 'test.cli', result: 'ok', details: { i } });
    });
    await integrateAll(db, log, 128);
    await appendJournal(db, { actorType: 'system', action: 'test.cli', result: 'ok' }); // not integrated yet
  });
});
after(() => rm(dir, { recursive: true, force: true }));

test('journal checkpoint prints the verifier key and the newest signed checkpoint', async () => {
  const r = await smartHome('journal', 'checkpoint');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^verifier key: smart-home\.localhost\/journal\+[0-9a-f]{8}\+[A-Za-z0-9+/=]+\n/);
  assert.match(
    r.stdout,
    /\nsmart-home\.localhost\/journal\n300\n[A-Za-z0-9+/]{43}=\n\n\u2014 smart-home\.localhost\/journal /,
  );
});

test('journal verify: exit 0 and a one-line verdict, progress on stderr', async () => {
  const r = await smartHome('journal', 'verify');
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^journal verified: 300 entries, 3 signed checkpoints, 0 anchors \([\d,]+ entries\/s\); 1 newer rows await the sequencer\n$/,
  );
  assert.match(r.stderr, /verifying \[#{30}\] 300\/300 100%/);
});

test('journal verify after a superuser edit: exit 1, the problem named, FAILED verdict', async () => {
  await withDataDb(dir, async (db) => {
    await db.transaction(async (tx) => {
      await tx.exec(`set local session_replication_role = replica;
        update journal set result = 'denied' where seq = (select journal_seq from journal_leaves where leaf_index = 42)`);
    });
  });
  const r = await smartHome('journal', 'verify');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /checkpoint 128: root differs from the rows/);
  assert.match(r.stdout, /^journal verification FAILED: \d+ problems? in 300 entries\n$/);
});

test('bad arguments are named', async () => {
  const r = await smartHome('journal', 'verify', '--key', 'not-a-key');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--key not-a-key: a verifier key is name\+id\+key/);
});
