/**
 * Both journals of one barrier vendor, end to end: the vendor (simulator) asks real decisions of
 * smart-home and journals them; smart-home journals the same decisions; smart-home's reconciler runs
 * contract §8.4 against the vendor's own journal server over real TLS. Untouched, the two agree; each
 * switch of the simulator's journal is reported as its own kind of difference, and nothing else is.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import {
  type IntercomSimulator,
  partnerJournalKeys,
  smartHomeTrust,
  startPartnerJournalServer,
} from '../../simulator/intercom.ts';
import { SimulatorJournal } from '../../simulator/journal.ts';
import {
  startCheckpointSubmitter,
  submitCheckpoint,
  type WitnessedByPeer,
} from '../../simulator/journal-client.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { integrateAll } from '../../src/journal/log/sequencer.ts';
import { barrierDecisionProjection } from '../../src/reconcile/projection.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { createTestDb } from '../support/test-db.ts';
import { PLATES, standardWorld } from '../support/world.ts';

let h: LocalStack;
let server: IntercomSimulator;
let journal: SimulatorJournal;
let client: PartnerClient;
let from: number;
let to: number;
const decided: string[] = [];

before(async () => {
  h = await startLocalStack({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    db: await createTestDb(),
    document: async (ids, dataDir) => {
      const identity = ids.get('barrier-north')!;
      journal = new SimulatorJournal({ identity });
      // The vendor's own server: its token endpoint and its journal, nothing else.
      server = await startPartnerJournalServer({
        identity,
        ...(await smartHomeTrust(dataDir)),
        clientId: 'smart-home-at-barrier-north',
        journal,
      });
      const doc = standardWorld(ids);
      doc.partners = doc.partners!.map((p) =>
        p.code === 'barrier-north'
          ? {
              ...p,
              baseUrl: server.url,
              outbound: { serverCa: server.serverCaPem, clientId: server.clientId },
              ...partnerJournalKeys(identity),
            }
          : p,
      );
      return doc;
    },
  });
  client = await h.client('barrier-north', { journal });
  from = Date.now() - 60_000;
  const reads = [PLATES.anna, PLATES.unknown, PLATES.guest, PLATES.annaLatin, PLATES.boris, PLATES.unknown];
  const capturedAt = new Date();
  for (const [i, plate] of reads.entries()) {
    const res = await client.barrierRead(i % 2 === 0 ? 'gate-1' : 'garage-b2', plate, { capturedAt });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    decided.push(res.body['eventId']!);
  }
  // A retry of the first read: smart-home answers it again, and neither side journals it twice.
  const again = await client.barrierRead('gate-1', PLATES.anna, { eventId: decided[0]!, capturedAt });
  assert.equal(again.status, 200);
  await integrateAll(h.runtime.db, h.runtime.journalLog, 1000);
  to = Date.now() + 60_000;
});
after(async () => {
  await h?.close();
  await server?.stop();
});
beforeEach(() => journal.clearSwitches());

const run = () =>
  h.runtime.app.reconciler!.run({ partner: 'barrier-north', from, to, actor: { type: 'system', id: null } });

describe('smart-home reconciles with a barrier vendor’s own journal (§8.3, §8.4)', () => {
  test('the vendor journaled each decision it got, once, as smart-home did', () => {
    assert.equal(journal.size, decided.length);
    assert.deepEqual(
      journal.records.map((r) => r.eventId),
      decided,
    );
    const first = journal.records[0]!;
    assert.deepEqual(
      { ...first, at: undefined },
      {
        ...barrierDecisionProjection({ eventId: decided[0]!, barrierId: 'gate-1', decision: 'open' }),
        at: undefined,
      },
    );
    assert.ok(journal.records.some((r) => r.result === 'deny'));
  });

  test('untouched: no difference, both checkpoints in the signed report', async () => {
    const { report } = await run();
    assert.deepEqual(report.summary, {
      missing_at_partner: 0,
      missing_at_us: 0,
      content_mismatch: 0,
      timing_skew: 0,
    });
    assert.deepEqual(report.differences, []);
    assert.equal(report.exchange?.ourItems, decided.length);
    assert.match(report.checkpoints.partner?.note ?? '', /^barrier-north\.partner\.test\/journal\n/);
  });

  test('drop, alter, add and shift at the vendor: each found as its kind, nothing else', async () => {
    journal.drop(decided[1]!);
    journal.alter(decided[2]!, { result: journal.records[2]!.result === 'open' ? 'deny' : 'open' });
    const ghost = barrierDecisionProjection({
      eventId: uuidv7(from + 1000),
      barrierId: 'gate-1',
      decision: 'open',
    });
    journal.add(ghost);
    journal.shift(decided[3]!, 3_600_000);
    const { report } = await run();
    const kinds = report.differences.map((d) => [d.kind, d.eventId]).sort();
    assert.deepEqual(
      kinds,
      [
        ['content_mismatch', decided[2]],
        ['missing_at_partner', decided[1]],
        ['missing_at_us', ghost.eventId],
        ['timing_skew', decided[3]],
      ].sort(),
      JSON.stringify(report.differences, null, 1),
    );
    const mismatch = report.differences.find((d) => d.kind === 'content_mismatch')!;
    assert.deepEqual(mismatch.fields, ['result']);
    const skew = report.differences.find((d) => d.kind === 'timing_skew')!;
    assert.ok(Math.abs(skew.skewMs!) >= 3_500_000, `skew ${skew.skewMs}`);
  });
});

describe('the vendor submits its checkpoints to smart-home’s witness (§8.2)', () => {
  test('cosigned from size 0, then with a consistency proof; after a lost state it resumes from the size smart-home holds; a bad proof is 422', async () => {
    const witnessKey = h.runtime.witness.verifierKey;
    const state: { last?: WitnessedByPeer } = {};
    const first = await submitCheckpoint(client, journal, state, { witnessKey });
    assert.equal(first.status, 200, first.cosignature);
    assert.equal(first.signatureValid, true, 'smart-home signed its answer');
    assert.equal(state.last?.size, journal.size);
    assert.match(first.cosignature!, /^— /);

    for (const plate of [PLATES.unknown, PLATES.anna])
      assert.equal((await client.barrierRead('gate-1', plate)).status, 200);
    const second = await submitCheckpoint(client, journal, state, { witnessKey });
    assert.equal(second.status, 200);
    assert.equal(state.last?.size, journal.size);

    // The vendor forgot what smart-home cosigned: old 0 is a conflict naming the size held, then resumed.
    assert.equal((await client.barrierRead('garage-b2', PLATES.boris)).status, 200);
    const held = state.last!.size;
    const lost: { last?: WitnessedByPeer } = {};
    const resumed = await submitCheckpoint(client, journal, lost, { witnessKey });
    assert.equal(resumed.status, 200);
    assert.equal(lost.last?.size, journal.size);
    assert.ok(held < journal.size);

    // A proof with a changed hash is refused, and nothing moves.
    assert.equal((await client.barrierRead('gate-1', PLATES.guest)).status, 200);
    const proof = journal.consistency(journal.size - 1).map((p, i) => (i === 0 ? Buffer.alloc(32, 7) : p));
    const bad = await submitCheckpoint(client, journal, lost, {
      witnessKey,
      oldSize: journal.size - 1,
      proof,
    });
    assert.equal(bad.status, 422);
    assert.equal(lost.last?.size, journal.size - 1);
  });

  test('the periodic submitter sends only when the log grew since the size smart-home cosigned', async () => {
    const submitter = startCheckpointSubmitter(client, journal, {
      intervalMs: 3_600_000,
      witnessKey: h.runtime.witness.verifierKey,
    });
    try {
      await submitter.tick();
      assert.deepEqual(submitter.errors, []);
      assert.equal(submitter.submissions, 1);
      assert.equal(submitter.state.last?.size, journal.size);
      await submitter.tick();
      assert.equal(submitter.submissions, 1, 'nothing new: nothing sent');
      assert.equal((await client.barrierRead('gate-1', PLATES.anna)).status, 200);
      await submitter.tick();
      assert.equal(submitter.submissions, 2);
      assert.deepEqual(submitter.errors, []);
      assert.equal(submitter.state.last?.size, journal.size);
    } finally {
      submitter.stop();
    }
  });
});
