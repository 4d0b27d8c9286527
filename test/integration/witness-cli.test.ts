/**
 * The CLI's side of witnessing (contract §8.2): `smart-home keys` prints what a partner registers for
 * us (our journal log key and our witness key), and `journal verify` checks the partners' stored
 * cosignatures of our checkpoints with their registered witness keys.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import type { Db } from '../../src/db/db.ts';
import { sql } from '../../src/db/sql.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { integrateAll, latestCheckpoint } from '../../src/journal/log/sequencer.ts';
import { ensureDevelopmentMaterial, loadJournalLog } from '../../src/server.ts';
import {
  cosigner,
  parseVerifierKey,
  SIG_COSIGNATURE_V1,
  SIG_ED25519,
  signatureLine,
} from '../../src/tlog/note.ts';
import { smartHomeCli, withDataDb } from '../support/cli.ts';

let dir: string;
const _env = () => ({
  ...process.env,
  NODE_ENV: 'development',
  SMART_HOME_DATA_DIR: dir,
  DATABASE_URL: '',
  LOG_LEVEL: 'warn',
});
const smartHome = smartHomeCli(() => dir);

/** A partner registered with a witness key that cosigned our newest checkpoint (`good` or not). */
async function cosignedBy(db: Db, code: string, good: boolean) {
  const witness = cosigner(`${code}.example/witness`, generateKeyPairSync('ed25519').privateKey);
  const id = randomUUID();
  await db.query(sql`insert into partners (id, code, name, scopes, witness_key)
    values (${id}::uuid, ${code}, ${code}, ${['audit:exchange']}, ${witness.verifierKey})`);
  const cp = (await latestCheckpoint(db))!;
  const text = Buffer.from(cp.note.slice(0, cp.note.indexOf('\n\n') + 1), 'utf8');
  const sig = witness.sign(good ? text : Buffer.from('another checkpoint\n'));
  const note = `${cp.note}${signatureLine(witness.name, witness.keyId, sig)}\n`;
  await db.query(sql`insert into witness_cosignatures (partner_id, size, root, note, witness_key, cosigned_at)
    values (${id}::uuid, ${String(cp.size)}::bigint, ${cp.root}, ${note}, ${witness.verifierKey}, now())`);
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'smart-home-witness-cli-'));
  const config = loadConfig({ SMART_HOME_DATA_DIR: dir });
  await ensureDevelopmentMaterial(config);
  const log = await loadJournalLog(config);
  await withDataDb(dir, async (db) => {
    for (let i = 0; i < 20; i++)
      await appendJournal(db, { actorType: 'system', action: 'test.cli', result: 'ok' });
    await integrateAll(db, log, 1000);
    await cosignedBy(db, 'intercom-good', true);
  });
});
after(() => rm(dir, { recursive: true, force: true }));

test('smart-home keys prints our journal log key and our witness key as C2SP verifier keys', async () => {
  const r = await smartHome('keys');
  assert.equal(r.code, 0, r.stderr);
  const log = /journal log verifier key[^\n]*\n {2}(\S+)\n/.exec(r.stdout)?.[1];
  const witness = /witness key[^\n]*\n {2}(\S+)\n/.exec(r.stdout)?.[1];
  assert.ok(log && witness, r.stdout);
  assert.deepEqual(
    [parseVerifierKey(log).name, parseVerifierKey(log).type],
    ['smart-home.localhost/journal', SIG_ED25519],
  );
  assert.deepEqual(
    [parseVerifierKey(witness).name, parseVerifierKey(witness).type],
    ['smart-home.localhost/witness', SIG_COSIGNATURE_V1],
  );
  assert.ok(!r.stdout.includes('"d"'), 'only public keys are printed');
});

test('journal verify checks each partner’s newest cosignature with its registered witness key', async () => {
  const ok = await smartHome('journal', 'verify');
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(
    ok.stdout,
    /^journal verified: 20 entries, 1 signed checkpoints, 0 anchors, 1 witness cosignatures /,
  );

  await withDataDb(dir, (db) => cosignedBy(db, 'intercom-bad', false));
  const bad = await smartHome('journal', 'verify');
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /witness intercom-bad: no valid cosignature by intercom-bad\.example\/witness/);
  assert.match(bad.stdout, /^journal verification FAILED: 1 problem /);

  const skipped = await smartHome('journal', 'verify', '--no-witnesses');
  assert.equal(skipped.code, 0, skipped.stderr);
  assert.match(skipped.stdout, /^journal verified: 20 entries, 1 signed checkpoints, 0 anchors \(/);
});
