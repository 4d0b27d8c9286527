import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { createCa } from '../src/pki/certificates.ts';
import { doorOpenProjection, projectionElement } from '../src/reconcile/projection.ts';
import { leafHash, rootOfLeafHashes, verifyConsistency } from '../src/tlog/merkle.ts';
import { openNote, parseCheckpoint, verifierFromKeyString } from '../src/tlog/note.ts';
import { canonicalJson } from '../src/util/jcs.ts';
import { uuidv7 } from '../src/util/uuid.ts';
import { createPartnerIdentity, journalVerifierKey, type PartnerIdentity } from './identity.ts';
import { journalEntryBytes, SimulatorJournal } from './journal.ts';
import { rootFromTiles, tileWidthAt } from './journal-client.ts';

let identity: PartnerIdentity;
const T0 = Date.UTC(2026, 11, 1, 12);
const door = (i: number, status = 'opened') =>
  doorOpenProjection({
    commandId: uuidv7(T0 + i * 1000),
    doorId: `door-${i % 3}`,
    subject: `ps-${i}`,
    status,
  });

before(async () => {
  identity = await createPartnerIdentity('intercom-j', await createCa({ commonName: 'issuing' }));
});

describe('the simulator journal as a Merkle log', () => {
  test('checkpoints verify with the partner’s journal key; tiles rebuild the root at every size; bundles hold the entries', async () => {
    const j = new SimulatorJournal({ identity });
    const leaves: Buffer[] = [];
    const verifier = verifierFromKeyString(journalVerifierKey(identity));
    const roots: Buffer[] = [j.root];
    for (let i = 0; i < 600; i++) {
      const r = j.record(door(i), T0 + i * 1000 + 5);
      leaves.push(leafHash(journalEntryBytes(r)));
      roots.push(j.root);
    }
    for (const size of [0, 1, 255, 256, 257, 511, 512, 513, 600]) {
      assert.deepEqual(roots[size], rootOfLeafHashes(leaves.slice(0, size)), `root at ${size}`);
      const rebuilt = await rootFromTiles(size, (l, i, w) => {
        const t = j.tile(l, i, w, size);
        assert.ok(t, `tile ${l}/${i}.p/${w} served`);
        return t;
      });
      assert.deepEqual(rebuilt, roots[size], `tiles rebuild the root at ${size}`);
    }
    const cp = j.checkpoint();
    const { text } = openNote(cp.note, [verifier]);
    assert.deepEqual(parseCheckpoint(text), {
      origin: 'intercom-j.partner.test/journal',
      size: 600,
      root: roots[600],
      extensions: [],
    });
    assert.equal(j.checkpoint().note, cp.note, 'signed once per size');
    // Entry bundles: the entries whose leaf hashes fill the level-0 tiles.
    const bundle = j.entries(2, tileWidthAt(0, 2, 600))!;
    assert.equal(bundle.length, 88);
    assert.deepEqual(bundle.map(leafHash), leaves.slice(512, 600));
    assert.equal(j.entries(2, 89), undefined, 'nothing beyond the log');
    assert.equal(j.tile(0, 2, 89), undefined);
  });

  test('consistency proofs between any two sizes verify against the roots', () => {
    const j = new SimulatorJournal({ identity });
    const roots: Buffer[] = [j.root];
    for (let i = 0; i < 300; i++) {
      j.record(door(i));
      roots.push(j.root);
    }
    for (const [a, b] of [
      [1, 2],
      [7, 300],
      [256, 300],
      [255, 257],
      [100, 100],
      [299, 300],
    ] as const) {
      assert.ok(verifyConsistency(a, b, j.consistency(a, b), roots[a]!, roots[b]!), `${a} → ${b}`);
    }
    assert.ok(!verifyConsistency(7, 300, j.consistency(7, 300), roots[8]!, roots[300]!));
  });
});

describe('switches change the §8.3 view only', () => {
  test('drop, alter, add, shift: the view and the window differ exactly there; the log does not change', () => {
    const j = new SimulatorJournal({ identity, clockMarginMs: 60_000 });
    const recs = Array.from({ length: 10 }, (_, i) => j.record(door(i), T0 + i * 1000 + 20));
    const root = j.root;
    const all = j.window(T0, T0 + 3600_000);
    assert.equal(all.index.size, 10);
    const extra = door(50);
    j.drop(recs[1]!.eventId);
    j.alter(recs[2]!.eventId, { result: 'rejected' });
    j.add(extra);
    j.shift(recs[3]!.eventId, 120_000);
    j.shift(recs[4]!.eventId, 30_000); // within the margin: still in the window
    assert.deepEqual(j.root, root, 'the log holds what was done');
    const w = j.window(T0, T0 + 3600_000);
    const elements = new Set(w.records.map((r) => r.element));
    const el = (p: Parameters<typeof projectionElement>[0]) => projectionElement(p).toString('hex');
    assert.equal(w.index.size, 9);
    assert.ok(!elements.has(el(recs[1]!)), 'dropped');
    assert.ok(
      !elements.has(el(recs[2]!)) && elements.has(el({ ...recs[2]!, result: 'rejected' })),
      'altered',
    );
    assert.ok(elements.has(el(extra)), 'added');
    assert.ok(!elements.has(el(recs[3]!)), 'shifted beyond the margin: out of the window');
    assert.ok(elements.has(el(recs[4]!)), 'shifted within the margin: in the window');
    // The look-up finds the shifted one with its recording time; not the dropped or the original altered.
    const found = j.lookup([recs[1]!, recs[2]!, recs[3]!].map(projectionElement));
    assert.equal(found.length, 1);
    assert.equal(found[0]!.projection.eventId, recs[3]!.eventId);
    assert.equal(Date.parse(found[0]!.at!), recs[3]!.at + 120_000);
    assert.equal(found[0]!.time, T0 + 3000);
    // A window outside the events holds none of them.
    assert.equal(j.window(T0 + 3600_000, T0 + 7200_000).index.size, 0);
    j.clearSwitches();
    assert.equal(j.window(T0, T0 + 3600_000).index.size, 10);
    assert.throws(() => j.drop(uuidv7()), /no entry/);
  });
});

describe('a log entry', () => {
  test('is the RFC 8785 form of the projection with its recording time', () => {
    const r = { ...door(1), subject: 'é"\\', at: T0 + 1234 };
    const expected = canonicalJson({ ...r, at: new Date(r.at).toISOString() });
    assert.equal(journalEntryBytes(r).toString('utf8'), expected);
  });
});
