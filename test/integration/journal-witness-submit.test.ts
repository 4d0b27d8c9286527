/**
 * smart-home's own checkpoints witnessed by partners (contract §8.2), over real mTLS against the
 * intercom simulator's witness (simulator/witness.ts): the submitter's rounds, the consistency proofs
 * from our tiles, a 409 learnt and retried, refusals and bad cosignatures as alerts, and the stored
 * cosignatures as anchors of `verifyLog`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { witnessVerifierKey } from '../../simulator/identity.ts';
import {
  type IntercomSimulator,
  intercomPartnerEntry,
  smartHomeTrust,
  startIntercomSimulator,
} from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import { sql } from '../../src/db/sql.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { consistencyFor } from '../../src/journal/log/proofs.ts';
import { integrateAll, latestCheckpoint } from '../../src/journal/log/sequencer.ts';
import { verifyLog } from '../../src/journal/log/verify.ts';
import { witnessedAnchors } from '../../src/journal/witness/anchors.ts';
import { WITNESS_ALERT_ACTION } from '../../src/journal/witness/state.ts';
import {
  type SubmitResult,
  startWitnessSubmitter,
  submitRound,
  WITNESS_SUBMIT_LOCK,
} from '../../src/journal/witness/submitter.ts';
import { formatCheckpoint, openNote, parseCheckpoint, signNote } from '../../src/tlog/note.ts';
import { formatAddCheckpoint } from '../../src/tlog/witness.ts';
import { freePort } from '../../src/util/free-port.ts';
import { createTestDb } from '../support/test-db.ts';

let h: LocalStack;
/** Witnesses our log, trusting our journal key. */
let sim: IntercomSimulator;
/** Trusts no log of ours: refuses (404 unknown origin). */
let stranger: IntercomSimulator;
/** Registered at smart-home with another partner's witness key: its cosignatures do not verify for it. */
let miskeyed: IntercomSimulator;
const ids: Record<string, string> = {};
let closedPort: number;

before(async () => {
  closedPort = await freePort();
  h = await startLocalStack({
    partners: [
      { code: 'intercom-a' },
      { code: 'intercom-b' },
      { code: 'intercom-c' },
      { code: 'intercom-d' },
    ],
    db: await createTestDb(),
    document: async (identities, dataDir) => {
      const trust = await smartHomeTrust(dataDir);
      const start = (code: string) =>
        startIntercomSimulator({
          identity: identities.get(code)!,
          ...trust,
          clientId: `smart-home-at-${code}`,
          doors: [],
        });
      sim = await start('intercom-a');
      stranger = await start('intercom-b');
      miskeyed = await start('intercom-c');
      const entry = (s: Pick<IntercomSimulator, 'url' | 'serverCaPem' | 'clientId'>, code: string) =>
        intercomPartnerEntry(s, identities.get(code)!, {
          complexes: ['north'],
          networks: ['127.0.0.1/32'],
          scopes: ['events:write', 'audit:exchange'],
        });
      return {
        version: 1,
        complexes: [{ code: 'north', name: 'North', buildings: [] }],
        partners: [
          entry(sim, 'intercom-a'),
          entry(stranger, 'intercom-b'),
          { ...entry(miskeyed, 'intercom-c'), witnessKey: witnessVerifierKey(identities.get('intercom-a')!) },
          // Nothing listens there: unreachable.
          entry(
            { url: `https://127.0.0.1:${closedPort}`, serverCaPem: sim.serverCaPem, clientId: 'x' },
            'intercom-d',
          ),
        ],
      };
    },
  });
  sim.witness.trust(h.runtime.journalLog.signer.verifierKey);
  miskeyed.witness.trust(h.runtime.journalLog.signer.verifierKey);
  for (const code of ['intercom-a', 'intercom-b', 'intercom-c', 'intercom-d']) {
    ids[code] = (await h.runtime.db.one<{ id: string }>(
      sql`select id from partners where code = ${code}`,
    ))!.id;
  }
});
after(async () => {
  await h?.close();
  await Promise.allSettled([sim?.stop(), stranger?.stop(), miskeyed?.stop()]);
});

/** Shared across the rounds of these tests, as the background submitter keeps it. */
const alertMemo = new Map<string, string>();
const deps = () => ({
  db: h.runtime.db,
  outbound: h.runtime.outbound,
  directory: () => h.runtime.app.directory(),
  alertMemo,
});
/**
 * Every journal row integrated and signed. On a shared PostgreSQL a transaction open in any session
 * holds the sequencer's horizon back, so this waits for it rather than assuming one batch suffices.
 */
const settle = async () => {
  for (;;) {
    await integrateAll(h.runtime.db, h.runtime.journalLog, 100_000);
    const r = await h.runtime.db.one<{ pending: boolean }>(
      sql`select (select count(*) from journal) > (select size from journal_log_state) as pending`,
    );
    if (!r?.pending) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};
const grow = async (n: number) => {
  for (let i = 0; i < n; i++)
    await appendJournal(h.runtime.db, { actorType: 'system', action: 'test.grow', result: 'ok' });
  await settle();
  return (await latestCheckpoint(h.runtime.db))!;
};
const of = (results: SubmitResult[] | undefined, code: string) => {
  const r = results?.find((x) => x.partnerId === ids[code]);
  assert.ok(r, `a result for ${code}`);
  return r;
};
const stored = (code: string) =>
  h.runtime.db.query<{ size: string; note: string }>(
    sql`select c.size::text as size, c.note from witness_cosignatures c where c.partner_id = ${ids[code]!}::uuid order by c.size`,
  );
const alerts = () =>
  h.runtime.db.query<{ partner_id: string; result: string; details: unknown }>(
    sql`select partner_id::text as partner_id, result, details from journal where action = ${WITNESS_ALERT_ACTION} order by seq`,
  );
const detailsOf = (d: unknown) => (typeof d === 'string' ? JSON.parse(d) : d) as Record<string, unknown>;

describe('our checkpoints witnessed by partners (contract §8.2)', () => {
  test('first round: the newest checkpoint from size 0, cosigned by the partner’s registered witness key', async () => {
    const cp = await grow(3);
    const results = await submitRound(deps());
    const a = of(results, 'intercom-a');
    assert.deepEqual([a.outcome, a.size, a.status], ['cosigned', cp.size, 200]);
    const rows = await stored('intercom-a');
    assert.deepEqual(
      rows.map((r) => Number(r.size)),
      [cp.size],
    );
    // Our log key and the partner's witness key both verify the stored note: a self-contained anchor.
    const note = rows[0]!.note;
    const partnerWitness = h.runtime.app.directory().byId.get(ids['intercom-a']!)!.witness!.verifier;
    assert.equal(openNote(note, [partnerWitness]).verified.length, 1);
    const text = openNote(note, [h.runtime.journalLog.signer.verifier]).text;
    assert.equal(parseCheckpoint(text).size, cp.size);
    assert.equal(sim.witness.latest(h.runtime.journalLog.origin)?.size, cp.size);
  });

  test('partners that refuse, cosign with another key or cannot be reached', async () => {
    const first = await alerts();
    // (the first round met them too; look at what it left)
    const b = first.filter((a) => a.partner_id === ids['intercom-b']);
    const c = first.filter((a) => a.partner_id === ids['intercom-c']);
    assert.equal(b.length, 1, 'the refusing partner: one alert');
    assert.equal(b[0]!.result, 'refused');
    assert.equal(detailsOf(b[0]!.details)['status'], 404);
    assert.equal(c.length, 1, 'the partner whose cosignature does not verify: one alert');
    assert.equal(c[0]!.result, 'bad-cosignature');
    assert.equal(
      first.filter((a) => a.partner_id === ids['intercom-d']).length,
      0,
      'an unreachable partner is no alert',
    );
    assert.equal((await stored('intercom-b')).length + (await stored('intercom-c')).length, 0);
    // The same refusals again (the alerts grew the log, so there is a new checkpoint to send):
    // reported by the round, logged, but journaled only once.
    await settle();
    const again = await submitRound(deps());
    assert.equal(of(again, 'intercom-d').outcome, 'unreachable');
    assert.equal(of(again, 'intercom-b').outcome, 'alert');
    assert.equal(of(again, 'intercom-c').outcome, 'alert');
    assert.equal((await alerts()).length, first.length);
    // Without the memo (a fresh process), the alert is journaled again.
    const fresh = await submitRound({ ...deps(), alertMemo: new Map() });
    assert.equal(of(fresh, 'intercom-b').outcome, 'alert');
    assert.equal((await alerts()).length, first.length + 2);
  });

  test('no growth, no submission: a partner holding our newest checkpoint is current', async () => {
    await settle();
    await submitRound(deps());
    const before = sim.witness.latest(h.runtime.journalLog.origin)?.size;
    const newest = (await latestCheckpoint(h.runtime.db))!.size;
    assert.equal(before, newest);
    const a = of(await submitRound(deps()), 'intercom-a');
    assert.deepEqual([a.outcome, a.size], ['current', newest]);
    assert.equal(a.status, undefined, 'nothing was sent');
  });

  test('a grown log is sent with the consistency proof from the size the partner last cosigned', async () => {
    const last = Number((await stored('intercom-a')).at(-1)!.size);
    const cp = await grow(300); // crosses a tile boundary: the proof is read from several tiles
    const refusalsBefore = sim.witness.refusals.length;
    const a = of(await submitRound(deps()), 'intercom-a');
    assert.equal(a.outcome, 'cosigned');
    assert.ok(cp.size > last);
    assert.equal(sim.witness.latest(h.runtime.journalLog.origin)?.size, a.size);
    assert.equal(sim.witness.refusals.length, refusalsBefore, 'the simulator verified our proof');
  });

  test('a 409 naming the partner’s size is learnt, and the checkpoint sent again from it', async () => {
    const ours = Number((await stored('intercom-a')).at(-1)!.size);
    // The partner cosigned a later checkpoint that never reached our table (another instance's round
    // that rolled back, say): it holds more than we know.
    const mid = await grow(5);
    const proof = (await consistencyFor(h.runtime.db, ours, mid.size)).proof.map((p) =>
      Buffer.from(p, 'base64'),
    );
    assert.equal(
      sim.witness.addCheckpoint(formatAddCheckpoint({ oldSize: ours, proof, note: mid.note })).status,
      200,
    );
    const cp = await grow(4);
    const refusals = sim.witness.refusals.length;
    const a = of(await submitRound(deps()), 'intercom-a');
    assert.equal(a.outcome, 'cosigned');
    assert.equal(sim.witness.refusals.length, refusals + 1, 'one 409, then accepted');
    assert.equal(sim.witness.refusals.at(-1)!.status, 409);
    assert.ok(a.size >= cp.size);
    assert.ok((await stored('intercom-a')).some((r) => Number(r.size) === a.size));
  });

  test('a partner holding a larger size of our log than we ever signed is an alert (conflict)', async () => {
    // Only our key signs our checkpoints: a larger tree of our origin at a partner means our log lost
    // a tail, or our key signed elsewhere. Made here by signing one ourselves and handing it over.
    const newest = (await latestCheckpoint(h.runtime.db))!;
    const bigger = signNote(
      formatCheckpoint({
        origin: h.runtime.journalLog.origin,
        size: newest.size + 100,
        root: Buffer.alloc(32, 9),
      }),
      [h.runtime.journalLog.signer],
    );
    stranger.witness.trust(h.runtime.journalLog.signer.verifierKey);
    assert.equal(
      stranger.witness.addCheckpoint(formatAddCheckpoint({ oldSize: 0, proof: [], note: bigger })).status,
      200,
    );
    const before = (await alerts()).length;
    const b = of(await submitRound(deps()), 'intercom-b');
    assert.equal(b.outcome, 'alert');
    const all = await alerts();
    assert.equal(all.length, before + 1);
    assert.equal(all.at(-1)!.result, 'conflict');
    assert.equal(detailsOf(all.at(-1)!.details)['partnerSize'], newest.size + 100);
    assert.equal((await stored('intercom-b')).length, 0);
  });

  test('verifyLog takes the newest cosigned checkpoints as anchors, checked with the registered witness keys', async () => {
    await settle();
    const anchors = await witnessedAnchors(h.runtime.db);
    assert.deepEqual(
      anchors.map((a) => a.partnerId),
      [ids['intercom-a']],
    );
    const base = { origin: h.runtime.journalLog.origin, verifiers: [h.runtime.journalLog.signer.verifier] };
    const ok = await verifyLog(h.runtime.db, { ...base, witnessed: anchors });
    assert.deepEqual(ok.problems, []);
    assert.ok(ok.ok);
    // A cosignature that does not verify, or a witness key that is not the one that cosigned, is found.
    const a = anchors.find((x) => x.partnerId === ids['intercom-a'])!;
    const lines = a.note.trimEnd().split('\n');
    const last = lines.at(-1)!;
    const flipped = `${last.slice(0, -6)}${last.slice(-6, -5) === 'A' ? 'B' : 'A'}${last.slice(-5)}`;
    const tampered = `${[...lines.slice(0, -1), flipped].join('\n')}\n`;
    const bad = await verifyLog(h.runtime.db, {
      ...base,
      witnessed: [{ ...a, note: tampered }],
    });
    assert.equal(bad.ok, false);
    assert.ok(
      bad.problems.some((p) => p.startsWith(`${a.label}: no valid cosignature`)),
      bad.problems.join('; '),
    );
    const other = h.runtime.app.directory().byId.get(ids['intercom-b']!)!.witness!.verifier;
    const wrongKey = await verifyLog(h.runtime.db, { ...base, witnessed: [{ ...a, witness: other }] });
    assert.equal(wrongKey.ok, false);
  });

  test('the background submitter: one round at a time per instance, stopped cleanly', async () => {
    await grow(2);
    const s = startWitnessSubmitter(deps(), { intervalMs: 3_600_000 });
    const [r1, r2] = [s.runOnce(), s.runOnce()];
    assert.equal(r1, r2, 'a second call joins the round in progress');
    const results = await r1;
    assert.equal(of(results, 'intercom-a').outcome, 'cosigned');
    await s.stop();
    if (h.runtime.db.engine === 'postgres') {
      // Another instance holds the round: this one skips it.
      await h.runtime.db.transaction(async (tx) => {
        await tx.query(sql`select pg_advisory_xact_lock(${WITNESS_SUBMIT_LOCK}, hashtext(current_schema()))`);
        assert.equal(await submitRound(deps()), undefined);
      });
    }
  });

  test('our newest checkpoint below what a partner cosigned (our tail gone) is an alert', async () => {
    const cosigned = Number((await stored('intercom-a')).at(-1)!.size);
    // What only a superuser can do around the triggers: the newest checkpoints deleted.
    await h.runtime.db.transaction(async (tx) => {
      await tx.exec(
        `set local session_replication_role = replica; delete from journal_checkpoints where size >= ${cosigned}`,
      );
    });
    const newest = (await latestCheckpoint(h.runtime.db))!;
    assert.ok(newest.size < cosigned);
    const before = (await alerts()).filter((x) => x.partner_id === ids['intercom-a']).length;
    const a = of(await submitRound({ ...deps(), alertMemo: new Map() }), 'intercom-a');
    assert.equal(a.outcome, 'alert');
    const all = (await alerts()).filter((x) => x.partner_id === ids['intercom-a']);
    assert.equal(all.length, before + 1);
    assert.equal(all.at(-1)!.result, 'conflict');
    assert.equal(detailsOf(all.at(-1)!.details)['cosignedSize'], cosigned);
  });
});
