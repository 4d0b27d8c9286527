/**
 * `smart-home journal reconcile --offline ours.jsonl theirs.jsonl`: an auditor's comparison of two
 * exported projection files, run as the CLI (no network, no database), with a report signed by the
 * configured journal key.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { verifyReport } from '../../src/journal/reconcile/report.ts';
import {
  barrierDecisionProjection,
  doorOpenProjection,
  elementHex,
  eventTime,
  type Projection,
  projectionElement,
} from '../../src/reconcile/projection.ts';
import { ensureDevelopmentMaterial, loadJournalLog } from '../../src/server.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { smartHomeCli } from '../support/cli.ts';

let dir: string;
const smartHome = smartHomeCli(() => dir, { cwd: () => dir });
/** `smart-home journal reconcile --offline …` */
const offline = (...args: string[]) => smartHome('journal', 'reconcile', '--offline', ...args);

const record = (p: Projection, atShift = 0) =>
  JSON.stringify({
    element: elementHex(projectionElement(p)),
    time: eventTime(p.eventId),
    projection: p,
    at: new Date(eventTime(p.eventId) + 150 + atShift).toISOString(),
  });

const base = Date.parse('2026-11-30T10:00:00Z');
const all: Projection[] = [];
for (let i = 0; i < 500; i++) {
  const t = base + i * 60_000;
  all.push(
    i % 2 === 0
      ? barrierDecisionProjection({
          eventId: uuidv7(t),
          barrierId: 'gate-1',
          decision: i % 3 ? 'open' : 'deny',
        })
      : doorOpenProjection({
          commandId: uuidv7(t),
          doorId: 'door-7',
          subject: `pseud${i}`,
          status: 'opened',
        }),
  );
}
const dropped = all[100]!;
const altered = all[201]!;
const shifted = all[300]!;
const added = doorOpenProjection({
  commandId: uuidv7(base + 77_777),
  doorId: 'door-7',
  subject: 'x',
  status: 'opened',
});

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'smart-home-reconcile-offline-'));
  await ensureDevelopmentMaterial(loadConfig({ SMART_HOME_DATA_DIR: dir }));
  await writeFile(path.join(dir, 'ours.jsonl'), `${all.map((p) => record(p)).join('\n')}\n`);
  const theirs: string[] = [];
  for (const p of all) {
    if (p === dropped) continue;
    if (p === altered) theirs.push(JSON.stringify({ ...p, subject: 'someone-else', result: 'rejected' }));
    else if (p === shifted) theirs.push(record(p, 3_600_000));
    else theirs.push(record(p));
  }
  theirs.push(JSON.stringify(added), '');
  await writeFile(path.join(dir, 'theirs.jsonl'), theirs.join('\n'));
});
after(() => rm(dir, { recursive: true, force: true }));

test('offline: every kind of difference found once, nothing else; the report verifies', async () => {
  const r = await offline('ours.jsonl', 'theirs.jsonl', '--out', 'r.json');
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /missing_at_partner\s+1\n/);
  assert.match(r.stdout, /missing_at_us\s+1\n/);
  assert.match(r.stdout, /content_mismatch\s+1\n/);
  assert.match(r.stdout, /timing_skew \(> 60000 ms\)\s+1\n/);
  const signed = JSON.parse(await readFile(path.join(dir, 'r.json'), 'utf8'));
  const log = await loadJournalLog(loadConfig({ SMART_HOME_DATA_DIR: dir }));
  assert.equal(verifyReport(signed, log.signer.verifier), true);
  const diffs = signed.report.differences as Array<Record<string, unknown>>;
  const byKind = Object.fromEntries(diffs.map((d) => [d.kind, d]));
  assert.equal(diffs.length, 4);
  assert.equal((byKind.missing_at_partner as { eventId: string }).eventId, dropped.eventId);
  assert.equal((byKind.missing_at_us as { eventId: string }).eventId, added.eventId);
  assert.deepEqual(byKind.content_mismatch, {
    kind: 'content_mismatch',
    eventId: altered.eventId,
    time: new Date(eventTime(altered.eventId)).toISOString(),
    ours: altered,
    theirs: { ...altered, subject: 'someone-else', result: 'rejected' },
    fields: ['subject', 'result'],
  });
  assert.equal((byKind.timing_skew as { eventId: string }).eventId, shifted.eventId);
  assert.equal((byKind.timing_skew as { skewMs: number }).skewMs, 3_600_000);
  assert.equal(signed.report.files.ours.items, 500);
  assert.equal(signed.report.files.theirs.items, 500);

  // One changed byte of the report and the signature no longer holds.
  signed.report.differences[0].eventId = uuidv7();
  assert.equal(verifyReport(signed, log.signer.verifier), false);
});

test('offline: the same file twice has no difference (exit 0); a tolerance above the shift hides it', async () => {
  const same = await offline('ours.jsonl', 'ours.jsonl', '--out', 'same.json');
  assert.equal(same.code, 0, same.stderr);
  assert.match(same.stdout, /total\s+0\n/);
  const tolerant = await offline(
    'ours.jsonl',
    'theirs.jsonl',
    '--skew-tolerance',
    '4000000',
    '--out',
    'tolerant.json',
  );
  assert.equal(tolerant.code, 1);
  assert.match(tolerant.stdout, /timing_skew \(> 4000000 ms\)\s+0\n/);
  assert.match(tolerant.stdout, /total\s+3\n/);
});

test('offline: a window cuts both files by eventId time', async () => {
  const to = new Date(eventTime(dropped.eventId)).toISOString();
  const r = await offline(
    'ours.jsonl',
    'theirs.jsonl',
    '--from',
    new Date(base).toISOString(),
    '--to',
    to,
    '--out',
    'cut.json',
  );
  // Before the dropped entry there is only the added one (base + 77.777 s).
  assert.equal(r.code, 1, r.stderr);
  const signed = JSON.parse(await readFile(path.join(dir, 'cut.json'), 'utf8'));
  assert.deepEqual(
    signed.report.differences.map((d: { kind: string }) => d.kind),
    ['missing_at_us'],
  );
});

test('offline: a line that is no projection, or whose element lies, stops the run (exit 2)', async () => {
  await writeFile(path.join(dir, 'bad.jsonl'), `${record(all[0]!)}\n{"eventId":"x"}\n`);
  const bad = await offline('ours.jsonl', 'bad.jsonl');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /bad\.jsonl:2/);
  const lying = JSON.parse(record(all[0]!));
  lying.element = elementHex(projectionElement(all[1]!));
  await writeFile(path.join(dir, 'lying.jsonl'), `${JSON.stringify(lying)}\n`);
  const r = await offline('ours.jsonl', 'lying.jsonl');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /element is not its projection/);
  const usage = await offline('ours.jsonl');
  assert.equal(usage.code, 2);
});
