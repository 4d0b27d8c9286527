/**
 * `smart-home journal reconcile` as an operator runs it: the CLI process on the data directory's
 * database (PGlite), against the intercom simulator over mTLS — the summary table, the exit status, the
 * signed report; and the auditor's way: our projections exported with `journal export --projections`,
 * the partner's from its own journal, compared `--offline`.
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type IntercomSimulator, smartHomeTrust, startIntercomSimulator } from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import { loadConfig } from '../../src/config/config.ts';
import { sql } from '../../src/db/sql.ts';
import { integrateAll } from '../../src/journal/log/sequencer.ts';
import { type SignedReport, verifyReport } from '../../src/journal/reconcile/report.ts';
import { doorOpenProjection, type Projection } from '../../src/reconcile/projection.ts';
import { outboundDoorOpener } from '../../src/resident-api/door-opener.ts';
import { createResidentService } from '../../src/resident-api/service.ts';
import { loadJournalLog } from '../../src/server.ts';
import { smartHomeCli } from '../support/cli.ts';
import { intercomWorld } from '../support/world.ts';

let h: LocalStack;
let sim: IntercomSimulator;
let dataDir: string;
const opened: Projection[] = [];
let from: string;
let to: string;

/** The partner and the window of its door opens, as the commands name them. */
const partnerWindow = () => ['--partner', 'intercom-north', '--from', from, '--to', to];

const smartHome = smartHomeCli(() => dataDir, { cwd: () => dataDir, nodeEnv: 'test', timeoutMs: 120_000 });

before(async () => {
  // The configured database: PGlite in the data directory, which the CLI opens once the stack is closed.
  h = await startLocalStack({
    partners: [{ code: 'intercom-north' }],
    document: async (ids, dir) => {
      sim = await startIntercomSimulator({
        identity: ids.get('intercom-north')!,
        ...(await smartHomeTrust(dir)),
        clientId: 'smart-home-at-north',
        doors: ['door-a'],
      });
      return intercomWorld(ids, sim, ['door-a']);
    },
  });
  dataDir = h.dataDir;
  const db = h.runtime.db;
  const residentId = (await db.one<{ id: string }>(sql`select id from residents where ref = 'anna'`))!.id;
  const door = (await db.one<{ id: string; partner_id: string }>(sql`select id, partner_id from devices`))!;
  const service = createResidentService({
    db,
    cipher: h.runtime.cipher,
    doors: outboundDoorOpener(h.runtime.outbound),
    guestPassMaxDays: 7,
  });
  const subject = await h.runtime.outbound.subject(door.partner_id, residentId);
  from = new Date(Date.now() - 1000).toISOString();
  for (let i = 0; i < 6; i++) {
    const { result } = await service.openDoor(residentId, door.id, `req-${i}`);
    opened.push(
      doorOpenProjection({ commandId: result.commandId, doorId: 'door-a', subject, status: result.status }),
    );
  }
  to = new Date(Date.now() + 60_000).toISOString();
  await integrateAll(db, h.runtime.journalLog, 100_000);
  await h.runtime.close(); // the CLI opens the data directory's database now
});
after(async () => {
  await sim?.stop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

test('the CLI reconciles with the partner: a table, exit 0 when they agree, 1 with the difference found', async () => {
  const ok = await smartHome('journal', 'reconcile', ...partnerWindow(), '--out', 'ok.json');
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^partner intercom-north, /);
  assert.match(ok.stdout, /total\s+0\n/);
  const log = await loadJournalLog(loadConfig({ SMART_HOME_DATA_DIR: dataDir }));
  const signed = JSON.parse(await readFile(path.join(dataDir, 'ok.json'), 'utf8')) as SignedReport;
  assert.equal(verifyReport(signed, log.signer.verifier), true);
  assert.equal(signed.report.exchange!.ourItems, opened.length);
  assert.equal(signed.report.checkpoints.partner!.size, sim.journal.size);

  sim.journal.drop(opened[2]!.eventId);
  try {
    const diff = await smartHome('journal', 'reconcile', ...partnerWindow(), '--out', 'diff.json');
    assert.equal(diff.code, 1, diff.stderr);
    assert.match(diff.stdout, /missing_at_partner\s+1\n/);
    assert.match(diff.stdout, /total\s+1\n/);
    const report = JSON.parse(await readFile(path.join(dataDir, 'diff.json'), 'utf8')) as SignedReport;
    assert.deepEqual(
      report.report.differences.map((d) => [d.kind, d.eventId]),
      [['missing_at_partner', opened[2]!.eventId]],
    );
  } finally {
    sim.journal.clearSwitches();
  }
  const usage = await smartHome('journal', 'reconcile', '--partner', 'intercom-north', '--from', from);
  assert.equal(usage.code, 2);
  const unknown = await smartHome('journal', 'reconcile', '--partner', 'nobody', '--from', from, '--to', to);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /no partner/);
});

test('the auditor: our export and the partner’s journal compared offline find the same difference', async () => {
  const exp = await smartHome(
    'journal',
    'export',
    '--projections',
    ...partnerWindow(),
    '--out',
    'ours.jsonl',
  );
  assert.equal(exp.code, 0, exp.stderr);
  sim.journal.alter(opened[4]!.eventId, { result: 'rejected' });
  try {
    const theirs = sim.journal.window(Date.parse(from), Date.parse(to)).records;
    await writeFile(
      path.join(dataDir, 'theirs.jsonl'),
      `${theirs.map((r) => JSON.stringify(r)).join('\n')}\n`,
    );
  } finally {
    sim.journal.clearSwitches();
  }
  const r = await smartHome(
    'journal',
    'reconcile',
    '--offline',
    'ours.jsonl',
    'theirs.jsonl',
    '--out',
    'off.json',
  );
  assert.equal(r.code, 1, r.stderr);
  const report = JSON.parse(await readFile(path.join(dataDir, 'off.json'), 'utf8')) as SignedReport;
  assert.deepEqual(
    report.report.differences.map((d) => [d.kind, d.eventId, d.fields]),
    [['content_mismatch', opened[4]!.eventId, ['result']]],
  );
  assert.equal(report.report.files!.ours.items, opened.length);
});
