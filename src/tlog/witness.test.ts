import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import { consistencyProof, leafHash, nodeHash, nodeKey, rootOfLeafHashes } from './merkle.ts';
import { cosigner, formatCheckpoint, noteSigner, openNote, signNote } from './note.ts';
import {
  formatAddCheckpoint,
  parseAddCheckpoint,
  type WitnessedState,
  WitnessRefusal,
  witnessCheckpoint,
} from './witness.ts';

const ORIGIN = 'partner.test/journal';
const logKey = noteSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey);
const witness = cosigner('smart-home.test/witness', generateKeyPairSync('ed25519').privateKey);
const leaves = Array.from({ length: 40 }, (_, i) => leafHash(Buffer.from(`entry ${i}`)));
const nodes = (() => {
  const m = new Map<string, Buffer>();
  let level = leaves;
  for (let l = 0; level.length > 0; l++) {
    for (const [i, h] of level.entries()) m.set(nodeKey(l, i), h);
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    level = next;
  }
  return m;
})();
const root = (n: number) => rootOfLeafHashes(leaves.slice(0, n));
const checkpoint = (n: number, signer = logKey, r = root(n)) =>
  signNote(formatCheckpoint({ origin: ORIGIN, size: n, root: r }), [signer]);
const proof = (a: number, b: number) => consistencyProof(a, b, nodes);

function run(body: string, state: WitnessedState | undefined) {
  return witnessCheckpoint({
    request: parseAddCheckpoint(body),
    verifiers: (o) => (o === ORIGIN ? [logKey.verifier] : undefined),
    stored: () => state,
    cosigner: witness,
  });
}
const refused = (fn: () => unknown, status: number, knownSize?: number) =>
  assert.throws(
    fn,
    (e: unknown) =>
      e instanceof WitnessRefusal &&
      e.status === status &&
      (knownSize === undefined || e.knownSize === knownSize),
  );

describe('tlog-witness add-checkpoint', () => {
  test('the spec example request body parses', () => {
    const body = `old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n`;
    const r = parseAddCheckpoint(body);
    assert.equal(r.oldSize, 20852014);
    assert.equal(r.proof.length, 2);
    assert.ok(r.note.startsWith('example.com/behind-the-sofa\n20852163\n'));
    assert.equal(formatAddCheckpoint(r), body);
  });

  test('first sight (old 0), then growth with a proof: cosigned; the cosignature verifies over the checkpoint', () => {
    const first = run(formatAddCheckpoint({ oldSize: 0, proof: [], note: checkpoint(10) }), undefined);
    assert.equal(first.size, 10);
    const opened = openNote(checkpoint(10) + first.cosignature, [logKey.verifier, witness.verifier]);
    assert.equal(opened.verified.length, 2);
    const next = run(formatAddCheckpoint({ oldSize: 10, proof: proof(10, 25), note: checkpoint(25) }), {
      size: 10,
      root: root(10),
    });
    assert.deepEqual([next.size, next.root], [25, root(25)]);
    const same = run(formatAddCheckpoint({ oldSize: 25, proof: [], note: checkpoint(25) }), {
      size: 25,
      root: root(25),
    });
    assert.equal(same.size, 25);
  });

  test('every refusal has the spec’s status', () => {
    const at10 = { size: 10, root: root(10) };
    refused(() => parseAddCheckpoint('old 01\n\n'), 400);
    refused(() => parseAddCheckpoint('nope\n\n'), 400);
    refused(() => parseAddCheckpoint('old 1\nnot-base64\n\n'), 400);
    refused(
      () => parseAddCheckpoint(`old 1\n${'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n'.repeat(64)}\n`),
      400,
    );
    refused(
      () =>
        run(
          formatAddCheckpoint({
            oldSize: 0,
            proof: [],
            note: checkpoint(10).replace(ORIGIN, 'other.test/log'),
          }),
          undefined,
        ),
      404,
    );
    const stranger = noteSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey);
    refused(
      () => run(formatAddCheckpoint({ oldSize: 0, proof: [], note: checkpoint(10, stranger) }), undefined),
      403,
    );
    refused(() => run(formatAddCheckpoint({ oldSize: 30, proof: [], note: checkpoint(25) }), at10), 400);
    refused(
      () => run(formatAddCheckpoint({ oldSize: 5, proof: proof(5, 25), note: checkpoint(25) }), at10),
      409,
      10,
    );
    refused(() => run(formatAddCheckpoint({ oldSize: 0, proof: [], note: checkpoint(25) }), at10), 409, 10);
    refused(
      () =>
        run(formatAddCheckpoint({ oldSize: 10, proof: [], note: checkpoint(10, logKey, root(11)) }), at10),
      409,
    );
    refused(
      () => run(formatAddCheckpoint({ oldSize: 10, proof: proof(9, 25), note: checkpoint(25) }), at10),
      422,
    );
    // A fork: a checkpoint of 25 whose tree does not extend the one witnessed at 10.
    const forked = rootOfLeafHashes([
      ...leaves.slice(0, 9),
      leafHash(Buffer.from('rewritten')),
      ...leaves.slice(10, 25),
    ]);
    refused(
      () =>
        run(
          formatAddCheckpoint({ oldSize: 10, proof: proof(10, 25), note: checkpoint(25, logKey, forked) }),
          at10,
        ),
      422,
    );
  });
});
