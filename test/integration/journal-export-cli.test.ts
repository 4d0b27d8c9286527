import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { migrate } from '../../src/db/migrate.ts';
import { openPgliteDb } from '../../src/db/pglite-db.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { integrateAll } from '../../src/journal/log/sequencer.ts';
import { ensureDevelopmentMaterial, loadJournalLog } from '../../src/server.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { smartHomeCli } from '../support/cli.ts';

// `smart-home journal export` on the embedded database of a data directory, as an operator runs it.
let dir: string;
let outDir: string;
const NORTH = '0193a000-0000-7000-8000-00000000000a';
const GATE = '0193a000-0000-7000-8000-0000000000d1';
const EVENTS = [uuidv7(), uuidv7()];
const smartHome = smartHomeCli(() => dir, { cwd: () => dir });

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'smart-home-export-cli-'));
  outDir = await mkdtemp(path.join(tmpdir(), 'smart-home-export-out-'));
  const config = loadConfig({ SMART_HOME_DATA_DIR: dir });
  await ensureDevelopmentMaterial(config);
  const db = await openPgliteDb(config.database.pgliteDir);
  try {
    await migrate(db);
    await db.exec(`insert into partners (id, code, name, scopes) values ('${NORTH}', 'north', 'North', '{audit:exchange}');
      insert into complexes (id, code, name) values ('0193a000-0000-7000-8000-0000000000c1', 'c1', 'C1');
      insert into devices (id, partner_id, external_id, kind, name, complex_id)
        values ('${GATE}', '${NORTH}', 'gate-n', 'barrier', 'Gate N', '0193a000-0000-7000-8000-0000000000c1');`);
    await db.transaction(async (tx) => {
      for (let i = 0; i < 30; i++)
        await appendJournal(tx, {
          actorType: i % 3 === 0 ? 'partner' : 'system',
          actorId: i % 3 === 0 ? NORTH : null,
          partnerId: i % 3 === 0 ? NORTH : null,
          action: i % 3 === 0 ? 'barrier.decision' : 'test.cli',
          result: 'ok',
          details: { i },
        });
    });
    // Two barrier decisions in the signed log: the partner's projections.
    for (const [k, eventId] of EVENTS.entries())
      await appendJournal(db, {
        actorType: 'partner',
        actorId: NORTH,
        partnerId: NORTH,
        deviceId: GATE,
        action: 'barrier.decision',
        result: k === 0 ? 'open' : 'deny',
        details: { eventId },
      });
    await integrateAll(db, await loadJournalLog(config), 1000);
  } finally {
    await db.close();
  }
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(outDir, { recursive: true, force: true });
});

test('export to standard output: JSON Lines on stdout, progress and the count on stderr', async () => {
  const r = await smartHome('journal', 'export');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 32);
  assert.deepEqual(
    lines.slice(0, 30).map((l) => (JSON.parse(l) as { details: { i: number } }).details.i),
    [...Array(30).keys()],
  );
  assert.match(r.stderr, /exporting \[#{30}\] 32\/32 100%/);
  assert.match(r.stderr, /exported 32 entries\n$/);
});

test('OCSF for one partner (by code) to a file that appears complete', async () => {
  const out = path.join(outDir, 'north.ocsf.jsonl');
  const r = await smartHome('journal', 'export', '--format', 'ocsf', '--partner', 'north', '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  assert.match(
    r.stderr,
    new RegExp(`exported 12 entries to ${out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\n$`),
  );
  const events = (await readFile(out, 'utf8'))
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { class_uid: number; actor: { user: { uid: string } } });
  assert.equal(events.length, 12);
  for (const e of events) {
    assert.equal(e.class_uid, 6003);
    assert.equal(e.actor.user.uid, NORTH);
  }
  // Refused to replace without --force; replaced with it (a time range that selects nothing).
  const again = await smartHome('journal', 'export', '--out', out);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /exists \(--force replaces it\)/);
  const forced = await smartHome(
    'journal',
    'export',
    '--out',
    out,
    '--force',
    '--to',
    '2000-01-01T00:00:00Z',
  );
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(await readFile(out, 'utf8'), '');
  assert.deepEqual(await readdir(outDir), ['north.ocsf.jsonl']);
});

test("--projections: the partner's §8.3 projection records, what the offline comparison reads", async () => {
  const r = await smartHome('journal', 'export', '--projections', '--partner', 'north');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /exported 2 projections\n$/);
  const recs = r.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as { element: string; projection: Record<string, unknown> });
  assert.deepEqual(
    recs.map((x) => x.projection),
    EVENTS.map((eventId, k) => ({
      eventId,
      action: 'barrier.decision',
      device: 'gate-n',
      subject: null,
      result: k === 0 ? 'open' : 'deny',
      initiator: 'partner',
    })),
  );
  for (const x of recs) assert.match(x.element, /^[0-9a-f]{64}$/);
  const alone = await smartHome('journal', 'export', '--projections');
  assert.equal(alone.code, 2);
  assert.match(alone.stderr, /--projections needs --partner/);
});

test('bad arguments are named and nothing is written', async () => {
  const out = path.join(outDir, 'never.jsonl');
  const unknown = await smartHome('journal', 'export', '--partner', 'nobody', '--out', out);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /--partner: unknown partner "nobody"/);
  const badTime = await smartHome('journal', 'export', '--from', 'yesterday');
  assert.notEqual(badTime.code, 0);
  assert.match(badTime.stderr, /RFC 3339/);
  const badFormat = await smartHome('journal', 'export', '--format', 'csv');
  assert.equal(badFormat.code, 2);
  const reversed = await smartHome(
    'journal',
    'export',
    '--from',
    '2026-12-02T00:00:00Z',
    '--to',
    '2026-12-01T00:00:00Z',
  );
  assert.equal(reversed.code, 2);
  assert.deepEqual(await readdir(outDir), ['north.ocsf.jsonl']);
});
