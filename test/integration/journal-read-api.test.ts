import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { decodeBundle, servedLeafHash } from '../../src/journal/log/read-api.ts';
import { integrateAll, latestCheckpoint } from '../../src/journal/log/sequencer.ts';
import { rootOfLeafHashes, verifyConsistency, verifyInclusion } from '../../src/tlog/merkle.ts';
import { openNote, parseCheckpoint } from '../../src/tlog/note.ts';
import { partialTiles, TILE_WIDTH, tilePath } from '../../src/tlog/tiles.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { type Harness, startHarness } from '../support/harness.ts';
import { PLATES, standardWorld } from '../support/world.ts';

let h: Harness;
let north: PartnerClient;
let south: PartnerClient;
const northEvents = [uuidv7(), uuidv7(), uuidv7()];
const southEvents = [uuidv7(), uuidv7()];
let firstSize: number;

before(async () => {
  h = await startHarness({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => standardWorld(ids),
  });
  north = await h.client('barrier-north');
  south = await h.client('barrier-south', { localAddress: '127.0.0.3' });
  for (let i = 0; i < 3; i++) await north.barrierRead('gate-1', PLATES.anna, { eventId: northEvents[i]! });
  for (let i = 0; i < 2; i++) await south.barrierRead('gate-s', PLATES.boris, { eventId: southEvents[i]! });
  await integrateAll(h.runtime.db, h.runtime.journalLog, 100_000);
  firstSize = (await latestCheckpoint(h.runtime.db))!.size;
  // Enough rows to fill a whole level-0 tile and start the next.
  for (let i = 0; i < 260; i++) await north.barrierRead('gate-1', PLATES.unknown);
  await integrateAll(h.runtime.db, h.runtime.journalLog, 100_000);
});
after(() => h.close());

const get = (client: PartnerClient, path: string, scope = 'audit:exchange') =>
  client.send('GET', `/partner/v1/journal/${path}`, { scope });

describe('the journal read API (contract §8.1, C2SP tlog-tiles)', () => {
  test('checkpoint: the signed note, verifiable with the log key, not cacheable, response signed', async () => {
    const res = await get(north, 'checkpoint');
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal(res.signatureValid, true);
    const cp = parseCheckpoint(
      openNote(res.rawBody.toString('utf8'), [h.runtime.journalLog.signer.verifier]).text,
    );
    assert.equal(cp.origin, h.runtime.journalLog.origin);
    assert.ok(cp.size > TILE_WIDTH);
  });

  test('tiles and bundles rebuild the checkpoint root; a partner sees only its own entries in full', async () => {
    const note = (await get(north, 'checkpoint')).rawBody.toString('utf8');
    const { size, root } = parseCheckpoint(openNote(note, [h.runtime.journalLog.signer.verifier]).text);
    const leaves: Buffer[] = [];
    const own: Array<Record<string, unknown>> = [];
    let withheld = 0;
    for (let n = 0; n * TILE_WIDTH < size; n++) {
      const width = Math.min(TILE_WIDTH, size - n * TILE_WIDTH);
      const bundle = await get(north, tilePath('entries', n, width));
      assert.equal(bundle.status, 200, `bundle ${n}`);
      assert.equal(bundle.headers['cache-control'], 'public, max-age=31536000, immutable');
      const entries = decodeBundle(bundle.rawBody);
      assert.equal(entries.length, width);
      const tile = await get(north, tilePath(0, n, width));
      assert.equal(tile.status, 200);
      assert.equal(tile.rawBody.length, width * 32);
      entries.forEach((e, i) => {
        const h0 = servedLeafHash(e);
        assert.deepEqual(h0, tile.rawBody.subarray(i * 32, i * 32 + 32), `leaf ${n * TILE_WIDTH + i}`);
        leaves.push(h0);
        if (e.length === 32) withheld++;
        else own.push(JSON.parse(e.toString('utf8')));
      });
    }
    assert.deepEqual(rootOfLeafHashes(leaves), root);
    const northId = north.identity.code;
    const southDecisions = withheld;
    assert.ok(southDecisions >= 2, 'south’s decisions are withheld from north');
    assert.ok(own.length >= 263, 'north’s own decisions are served in full');
    for (const e of own) {
      assert.equal(typeof e['id'], 'string');
      assert.ok(!JSON.stringify(e).includes(PLATES.anna), `no plate in ${northId}'s entries`);
    }
    // Level-1 tile: the root of the full level-0 tile.
    const partial = partialTiles(size).find((t) => t.level === 1)!;
    const l1 = await get(north, tilePath(1, partial.index, partial.width));
    assert.equal(l1.status, 200);
    assert.deepEqual(l1.rawBody.subarray(0, 32), rootOfLeafHashes(leaves.slice(0, TILE_WIDTH)));
  });

  test('south gets its own entries in full where north got hashes', async () => {
    const note = (await get(south, 'checkpoint')).rawBody.toString('utf8');
    const { size } = parseCheckpoint(openNote(note, [h.runtime.journalLog.signer.verifier]).text);
    const first = decodeBundle(
      (await get(south, tilePath('entries', 0, Math.min(TILE_WIDTH, size)))).rawBody,
    );
    const full = first
      .filter((e) => e.length !== 32)
      .map((e) => JSON.parse(e.toString('utf8')) as Record<string, unknown>);
    const decisions = full.filter((e) => e['action'] === 'barrier.decision');
    assert.equal(decisions.length, 2, 'its two decisions, none of north’s');
    assert.equal(new Set(decisions.map((e) => e['partnerId'])).size, 1);
  });

  test('a partner gets inclusion proofs for its own entries by eventId, and consistency proofs', async () => {
    const v = [h.runtime.journalLog.signer.verifier];
    const res = await north.send<Record<string, unknown>>(
      'GET',
      `/partner/v1/journal/proof/inclusion?id=${northEvents[1]}`,
      {
        scope: 'audit:exchange',
      },
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.signatureValid, true);
    const b = res.body as {
      leafIndex: number;
      treeSize: number;
      leafHash: string;
      proof: string[];
      checkpoint: string;
      entry: string;
    };
    const cp = parseCheckpoint(openNote(b.checkpoint, v).text);
    assert.equal(cp.size, b.treeSize);
    assert.ok(
      verifyInclusion(
        b.leafIndex,
        b.treeSize,
        Buffer.from(b.leafHash, 'base64'),
        b.proof.map((p) => Buffer.from(p, 'base64')),
        cp.root,
      ),
    );
    assert.equal(JSON.parse(b.entry).details.eventId, northEvents[1]);
    // South's event is not north's to prove (nor to learn whether it exists).
    const foreign = await north.send('GET', `/partner/v1/journal/proof/inclusion?id=${southEvents[0]}`, {
      scope: 'audit:exchange',
    });
    assert.equal(foreign.status, 404);
    const bad = await north.send('GET', '/partner/v1/journal/proof/inclusion?id=nope', {
      scope: 'audit:exchange',
    });
    assert.equal(bad.status, 400);
    const cons = await north.send<{ proof: string[]; checkpoints: { from: string; to: string }; to: number }>(
      'GET',
      `/partner/v1/journal/proof/consistency?from=${firstSize}`,
      { scope: 'audit:exchange' },
    );
    assert.equal(cons.status, 200, JSON.stringify(cons.body));
    const from = parseCheckpoint(openNote(cons.body.checkpoints.from, v).text);
    const to = parseCheckpoint(openNote(cons.body.checkpoints.to, v).text);
    assert.ok(
      verifyConsistency(
        from.size,
        to.size,
        cons.body.proof.map((p) => Buffer.from(p, 'base64')),
        from.root,
        to.root,
      ),
    );
  });

  test('beyond the newest checkpoint, non-canonical paths and a token without the scope are refused', async () => {
    const note = (await get(north, 'checkpoint')).rawBody.toString('utf8');
    const { size } = parseCheckpoint(openNote(note, [h.runtime.journalLog.signer.verifier]).text);
    const last = partialTiles(size)[0]!;
    assert.equal((await get(north, tilePath(0, last.index, Math.min(last.width + 1, 255)))).status, 404);
    assert.equal((await get(north, tilePath(0, last.index + 1))).status, 404);
    assert.equal(
      (await get(north, tilePath('entries', last.index))).status,
      404,
      'the partial bundle is not yet full',
    );
    for (const bad of ['tile/0/1', 'tile/00/000', 'tile/0/000.p/256', 'tile/x/000', 'tile/0/x000/001']) {
      assert.equal((await get(north, bad)).status, 404, bad);
    }
    const res = await get(north, 'checkpoint', 'barrier:decide');
    assert.equal(res.status, 403);
  });
});
