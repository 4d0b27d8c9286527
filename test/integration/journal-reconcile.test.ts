/**
 * smart-home as the initiator of contract §8.4 against the intercom simulator over real mTLS (RFC 9421
 * both ways, scope audit:exchange): door commands opened by a resident through the real service are
 * journaled on both sides; the simulator's switches drop, alter, add or shift one entry each, and the
 * run must find exactly that difference and nothing else. Also the signed report, its journal entry,
 * and the operator API.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type IntercomSimulator, smartHomeTrust, startIntercomSimulator } from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import { ResidentApp } from '../../simulator/resident-app.ts';
import { sql } from '../../src/db/sql.ts';
import { createOperator } from '../../src/identity/operators.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { integrateAll, latestCheckpoint } from '../../src/journal/log/sequencer.ts';
import type { Difference } from '../../src/journal/reconcile/classify.ts';
import { outboundPeer } from '../../src/journal/reconcile/peer.ts';
import { type SignedReport, verifyReport } from '../../src/journal/reconcile/report.ts';
import { RECONCILE_SCHEDULE_LOCK, runScheduledDay } from '../../src/journal/reconcile/scheduler.ts';
import type { Reconciler } from '../../src/journal/reconcile/service.ts';
import { doorOpenProjection, eventTime, type Projection } from '../../src/reconcile/projection.ts';
import { outboundDoorOpener } from '../../src/resident-api/door-opener.ts';
import { createResidentService } from '../../src/resident-api/service.ts';
import { formatCheckpoint, noteSigner, parseCheckpoint, parseNote, signNote } from '../../src/tlog/note.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { writeOAuthClients } from '../support/oauth-clients.ts';
import { createTestDb } from '../support/test-db.ts';
import { intercomWorld } from '../support/world.ts';

const DOORS = ['door-a', 'door-b', 'door-r'];
const WEB_REDIRECT = 'https://app.example/callback';
const CONSOLE_SECRET = 'console-secret-console-secret-console-secret';
const OP_PASSWORD = 'correct horse battery staple';

let h: LocalStack;
let sim: IntercomSimulator;
let reconciler: Reconciler;
let clientsDir: string;
let totpSecret: string;
let residentId: string;
let partnerId: string;
/** Our door opens, as the partner should hold them. */
const opened: Projection[] = [];
let from: number;
let to: number;
/** A door result we journaled 2 h after its command was minted (see the clock-margin test). */
let lateEventId = '';
let simStopped = false;

before(async () => {
  clientsDir = await mkdtemp(path.join(tmpdir(), 'smart-home-reconcile-'));
  const clientsFile = await writeOAuthClients(clientsDir, [
    {
      clientId: 'operator-console',
      role: 'operator',
      redirectUris: [WEB_REDIRECT],
      clientSecret: CONSOLE_SECRET,
    },
  ]);
  h = await startLocalStack({
    partners: [{ code: 'intercom-north' }],
    db: await createTestDb(),
    env: { SMART_HOME_OAUTH_CLIENTS_FILE: clientsFile },
    document: async (ids, dataDir) => {
      sim = await startIntercomSimulator({
        identity: ids.get('intercom-north')!,
        ...(await smartHomeTrust(dataDir)),
        clientId: 'smart-home-at-north',
        doors: DOORS,
      });
      return intercomWorld(ids, sim, DOORS);
    },
  });
  reconciler = h.runtime.app.reconciler!;
  sim.setDoor('door-r', { mode: 'reject' });
  residentId = (await h.runtime.db.one<{ id: string }>(sql`select id from residents where ref = 'anna'`))!.id;
  partnerId = (await h.runtime.db.one<{ id: string }>(
    sql`select id from partners where code = 'intercom-north'`,
  ))!.id;
  const devices = await h.runtime.db.query<{ id: string; external_id: string }>(
    sql`select id, external_id from devices where partner_id = ${partnerId}::uuid`,
  );
  const service = createResidentService({
    db: h.runtime.db,
    cipher: h.runtime.cipher,
    doors: outboundDoorOpener(h.runtime.outbound),
    guestPassMaxDays: 7,
  });
  const subject = await h.runtime.outbound.subject(partnerId, residentId);
  from = Date.now() - 1000;
  for (let i = 0; i < 24; i++) {
    const door = devices[i % devices.length]!;
    const { result } = await service.openDoor(residentId, door.id, `req-${i}`);
    opened.push(
      doorOpenProjection({
        commandId: result.commandId,
        doorId: door.external_id,
        subject,
        status: result.status,
      }),
    );
  }
  to = Date.now() + 60_000;
  await integrateAll(h.runtime.db, h.runtime.journalLog, 100_000);
  const op = await createOperator({ db: h.runtime.db, cipher: h.runtime.cipher }, 'duty.ops', OP_PASSWORD);
  totpSecret = new URL(op.otpauthUri).searchParams.get('secret')!;
});

after(async () => {
  await h?.close();
  if (!simStopped) await sim?.stop();
  if (clientsDir) await rm(clientsDir, { recursive: true, force: true });
});

const run = (extra: { from?: number; to?: number } = {}) =>
  reconciler.run({
    partner: 'intercom-north',
    from: extra.from ?? from,
    to: extra.to ?? to,
    actor: { type: 'system', id: 'test' },
  });

const kinds = (r: SignedReport) => r.report.differences.map((d) => `${d.kind}:${d.eventId}`);

describe('journal reconcile against the intercom simulator (contract §8.4 over mTLS)', () => {
  test('both journals agree: no difference; the report is signed and pinned to both checkpoints', async () => {
    assert.equal(sim.journal.records.length, opened.length, 'the simulator journaled every command');
    assert.ok(opened.some((p) => p.result === 'rejected') && opened.some((p) => p.result === 'opened'));
    const signed = await run();
    assert.deepEqual(signed.report.differences, []);
    assert.deepEqual(signed.report.summary, {
      missing_at_partner: 0,
      missing_at_us: 0,
      content_mismatch: 0,
      timing_skew: 0,
    });
    assert.equal(signed.report.exchange!.ourItems, opened.length);
    assert.equal(signed.report.exchange!.rounds, 1);
    assert.equal(verifyReport(signed, h.runtime.journalLog.signer.verifier), true);
    const ours = await latestCheckpoint(h.runtime.db);
    assert.equal(signed.report.checkpoints.ours!.note, ours!.note);
    assert.equal(signed.report.checkpoints.ours!.size, ours!.size);
    assert.equal(signed.report.checkpoints.partner!.size, sim.journal.size);
    assert.equal(signed.report.checkpoints.partner!.note, sim.journal.checkpoint().note);
    assert.equal(signed.report.checkpoints.partner!.verified, true, 'with its registered log key');
    assert.deepEqual(signed.report.range, {
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
    });
    // Recorded in the journal: counts only, no projection.
    const row = await h.runtime.db.one<{ result: string; details: Record<string, unknown> }>(
      sql`select result, details from journal where action = 'journal.reconcile' order by seq desc limit 1`,
    );
    assert.equal(row!.result, 'consistent');
    assert.equal(row!.details['runId'], signed.report.runId);
    assert.equal(row!.details['missing_at_us'], 0);
    assert.ok(!JSON.stringify(row!.details).includes(opened[0]!.subject!), 'no pseudonym in the entry');
  });

  test('each switch of the simulator is found as its own kind, and nothing else', async (t) => {
    t.after(() => sim.journal.clearSwitches());
    const dropped = opened[3]!;
    const altered = opened[7]!;
    const shifted = opened[11]!;
    const added = doorOpenProjection({
      commandId: uuidv7(eventTime(opened[0]!.eventId) + 1),
      doorId: 'door-a',
      subject: opened[0]!.subject!,
      status: 'opened',
    });
    sim.journal.drop(dropped.eventId);
    sim.journal.alter(altered.eventId, { result: altered.result === 'opened' ? 'device_offline' : 'opened' });
    sim.journal.add(added);
    sim.journal.shift(shifted.eventId, 2 * 3600_000);
    const signed = await run();
    assert.equal(verifyReport(signed, h.runtime.journalLog.signer.verifier), true);
    assert.deepEqual(
      kinds(signed).sort(),
      [
        `missing_at_partner:${dropped.eventId}`,
        `content_mismatch:${altered.eventId}`,
        `missing_at_us:${added.eventId}`,
        `timing_skew:${shifted.eventId}`,
      ].sort(),
    );
    const by = (k: string) => signed.report.differences.find((d) => d.kind === k) as Difference;
    assert.deepEqual(by('missing_at_partner').ours, dropped);
    assert.deepEqual(by('missing_at_us').theirs, added);
    assert.deepEqual(by('content_mismatch').fields, ['result']);
    assert.deepEqual(by('content_mismatch').ours, altered);
    assert.equal(by('timing_skew').skewBasis, 'recorded_at');
    assert.ok(Math.abs(by('timing_skew').skewMs! - 2 * 3600_000) < 60_000, `${by('timing_skew').skewMs}`);
    assert.deepEqual(signed.report.summary, {
      missing_at_partner: 1,
      missing_at_us: 1,
      content_mismatch: 1,
      timing_skew: 1,
    });
    const row = await h.runtime.db.one<{ result: string; details: Record<string, unknown> }>(
      sql`select result, details from journal where action = 'journal.reconcile' order by seq desc limit 1`,
    );
    assert.equal(row!.result, 'differences');
    assert.equal(row!.details['content_mismatch'], 1);
  });

  test('a shift within the tolerance is no difference; a window that leaves an entry out ignores it', async (t) => {
    t.after(() => sim.journal.clearSwitches());
    sim.journal.shift(opened[2]!.eventId, 30_000);
    assert.deepEqual((await run()).report.differences, []);
    // The window ends before the last command: dropping that one is outside it.
    sim.journal.drop(opened[23]!.eventId);
    const cut = eventTime(opened[23]!.eventId);
    assert.deepEqual((await run({ to: cut })).report.differences, []);
    assert.deepEqual(kinds(await run()), [`missing_at_partner:${opened[23]!.eventId}`]);
  });

  test('an entry we recorded outside the clock margin is a timing skew, not a missing one', async (t) => {
    t.after(() => sim.journal.clearSwitches());
    // A command minted 2 h ago whose result we journal only now (beyond SMART_HOME_RECONCILE_CLOCK_MARGIN_MS).
    const late = doorOpenProjection({
      commandId: uuidv7(Date.now() - 2 * 3600_000),
      doorId: 'door-b',
      subject: opened[0]!.subject!,
      status: 'opened',
    });
    const doorB = (await h.runtime.db.one<{ id: string }>(
      sql`select id from devices where external_id = 'door-b'`,
    ))!.id;
    await appendJournal(h.runtime.db, {
      actorType: 'resident',
      actorId: residentId,
      action: 'door.open.result',
      partnerId,
      deviceId: doorB,
      subjectType: 'resident',
      subjectId: residentId,
      result: 'opened',
      details: { commandId: late.eventId },
    });
    await integrateAll(h.runtime.db, h.runtime.journalLog, 100_000);
    lateEventId = late.eventId;
    sim.journal.record(late, eventTime(late.eventId)); // the partner recorded it when it happened
    const signed = await run({ from: eventTime(late.eventId) - 1000 });
    assert.deepEqual(kinds(signed), [`timing_skew:${late.eventId}`]);
    const d = signed.report.differences[0]!;
    // Found by its eventId outside our window's set: the partner recorded it 2 h before we did.
    assert.equal(d.skewBasis, 'recorded_at');
    assert.ok(d.skewMs! < -(2 * 3600_000 - 60_000), `${d.skewMs}`);
    assert.deepEqual(d.ours, late);
    assert.deepEqual(d.theirs, late);
  });

  test('a partner checkpoint not signed by its registered log key stops the run', async () => {
    const real = outboundPeer(h.runtime.outbound, partnerId, { maxMessageBytes: 4 << 20 });
    const cp = parseCheckpoint(parseNote(sim.journal.checkpoint().note).text);
    const forger = noteSigner(cp.origin, generateKeyPairSync('ed25519').privateKey);
    const forged = signNote(formatCheckpoint(cp), [forger]);
    await assert.rejects(
      reconciler.run({
        partner: 'intercom-north',
        from,
        to,
        actor: { type: 'system', id: 'test' },
        peer: { ...real, checkpoint: async () => forged },
      }),
      /does not verify with its registered log key/,
    );
  });

  test('an unknown partner or a window over the limit is refused before anything is sent', async () => {
    await assert.rejects(
      reconciler.run({ partner: 'no-such-partner', from, to, actor: { type: 'system', id: 'test' } }),
      /no partner/,
    );
    await assert.rejects(
      reconciler.run({
        partner: 'intercom-north',
        from,
        to: from + 40 * 86_400_000,
        actor: { type: 'system', id: 'test' },
      }),
      /at most 31 days/,
    );
  });
});

describe('warming the indexes at start', () => {
  test('builds the last days for every partner we reconcile with, and the reconciliation then agrees', async () => {
    assert.equal(await h.runtime.app.warmReconciliation(), 1);
    const r = await run();
    assert.deepEqual(kinds(r), []);
  });
});

// The operator stays signed in for the whole file (a TOTP code counts once): the failure test at the end uses it too.
let op: ResidentApp | undefined;
after(() => op?.close());

describe('POST /admin/v1/journal/reconcile', () => {
  before(async () => {
    op = new ResidentApp({
      issuer: h.publicUrl,
      ca: h.serverCa,
      clientId: 'operator-console',
      redirectUri: WEB_REDIRECT,
      clientSecret: CONSOLE_SECRET,
    });
    await op.signInOperator('duty.ops', OP_PASSWORD, totpSecret);
  });

  test('an operator runs it and receives the signed report; the run is journaled under the operator', async (t) => {
    t.after(() => sim.journal.clearSwitches());
    sim.journal.drop(opened[5]!.eventId);
    const res = await op!.admin<SignedReport>('POST', '/journal/reconcile', {
      partner: 'intercom-north',
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
    });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(verifyReport(res.body, h.runtime.journalLog.signer.verifier), true);
    assert.deepEqual(kinds(res.body), [`missing_at_partner:${opened[5]!.eventId}`]);
    const row = await h.runtime.db.one<{ actor_type: string; result: string }>(
      sql`select actor_type, result from journal where action = 'journal.reconcile' order by seq desc limit 1`,
    );
    assert.deepEqual(row, { actor_type: 'operator', result: 'differences' });
  });

  test('refusals: unknown partner 404, bad window 400, unknown member 400', async () => {
    const body = {
      partner: 'intercom-north',
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
    };
    assert.equal((await op!.admin('POST', '/journal/reconcile', { ...body, partner: 'nobody' })).status, 404);
    assert.equal(
      (await op!.admin('POST', '/journal/reconcile', { ...body, from: body.to, to: body.from })).status,
      400,
    );
    assert.equal((await op!.admin('POST', '/journal/reconcile', { ...body, extra: true })).status, 400);
  });
});

describe('the daily schedule', () => {
  const silent = { info() {}, warn() {}, error() {} };
  test('reconciles each partner for a day once: the report written, the run journaled, a second round skips it', async (t) => {
    t.after(() => sim.journal.clearSwitches());
    sim.journal.drop(opened[1]!.eventId);
    const reportDir = path.join(clientsDir, 'reports');
    const dayStart = Math.floor(from / 86_400_000) * 86_400_000;
    const day = new Date(dayStart).toISOString().slice(0, 10);
    const deps = { db: h.runtime.db, reconciler, reportDir, logger: silent };
    const first = await runScheduledDay(deps, dayStart);
    assert.deepEqual(first, [
      {
        partner: 'intercom-north',
        day,
        result: 'differences',
        report: path.join(reportDir, `intercom-north-${day}.json`),
      },
    ]);
    const signed = JSON.parse(await readFile(first![0]!.report!, 'utf8')) as SignedReport;
    assert.equal(verifyReport(signed, h.runtime.journalLog.signer.verifier), true);
    // The late result of the clock-margin test lies in this day when its command was minted today.
    const late = Math.floor(eventTime(lateEventId) / 86_400_000) * 86_400_000 === dayStart;
    assert.deepEqual(
      kinds(signed).sort(),
      [`missing_at_partner:${opened[1]!.eventId}`, ...(late ? [`timing_skew:${lateEventId}`] : [])].sort(),
    );
    assert.equal(signed.report.range.from, new Date(dayStart).toISOString());
    const row = await h.runtime.db.one<{ actor_id: string; details: Record<string, unknown> }>(
      sql`select actor_id, details from journal where action = 'journal.reconcile' order by seq desc limit 1`,
    );
    assert.equal(row!.actor_id, 'reconcile-schedule');
    assert.equal(row!.details['scheduledDay'], day);
    assert.deepEqual(await runScheduledDay(deps, dayStart), [
      { partner: 'intercom-north', day, result: 'skipped' },
    ]);
    if (h.runtime.db.engine === 'postgres') {
      // Another instance holds the round: this one does nothing.
      await h.runtime.db.transaction(async (tx) => {
        await tx.query(sql`select pg_advisory_xact_lock(${RECONCILE_SCHEDULE_LOCK})`);
        assert.equal(await runScheduledDay(deps, dayStart - 86_400_000), undefined);
      });
    }
  });
});

describe('a partner that does not answer', () => {
  test('the run fails with the channel’s error and is journaled as failed', async () => {
    await sim.stop();
    simStopped = true;
    await assert.rejects(
      run(),
      (e: Error & { code?: string }) => e.name === 'OutboundError' && /^ERR_OUTBOUND/.test(e.code ?? ''),
    );
    const row = await h.runtime.db.one<{ result: string; details: Record<string, unknown> }>(
      sql`select result, details from journal where action = 'journal.reconcile' order by seq desc limit 1`,
    );
    assert.equal(row!.result, 'failed');
    assert.match(String(row!.details['error']), /^ERR_OUTBOUND/);
    assert.equal(row!.details['rounds'], 0);
  });

  test('an operator asking then gets 502 partner-unavailable, with what went wrong', async () => {
    const res = await op!.admin<Record<string, unknown>>('POST', '/journal/reconcile', {
      partner: 'intercom-north',
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
    });
    assert.equal(res.status, 502, JSON.stringify(res.body));
    assert.equal(res.body['type'], 'urn:smart-home:problem:partner-unavailable');
    assert.equal(typeof res.body['detail'], 'string');
  });
});
