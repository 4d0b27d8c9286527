import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  consistencyNodes,
  consistencyProof,
  inclusionNodes,
  inclusionProof,
  leafHash,
  rootOfLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';
import {
  encodeTileIndex,
  integrate,
  nodesFromTiles,
  parseTilePath,
  partialTiles,
  type Tile,
  type TileId,
  tilePath,
  tilesForNodes,
} from './tiles.ts';

describe('tile paths (C2SP tlog-tiles)', () => {
  test('the spec example and edges', () => {
    assert.equal(encodeTileIndex(1234067), 'x001/x234/067');
    assert.equal(encodeTileIndex(0), '000');
    assert.equal(encodeTileIndex(1000), 'x001/000');
    assert.equal(tilePath(0, 1234067), 'tile/0/x001/x234/067');
    assert.equal(tilePath(2, 5, 17), 'tile/2/005.p/17');
    assert.equal(tilePath('entries', 3, 1), 'tile/entries/003.p/1');
    assert.deepEqual(parseTilePath('0/x001/x234/067'), { level: 0, index: 1234067, width: 256 });
    assert.deepEqual(parseTilePath('entries/005.p/17'), { level: 'entries', index: 5, width: 17 });
  });
  test('non-canonical paths are refused', () => {
    for (const bad of [
      '00/000',
      '64/000',
      '0/67',
      '0/x000/067',
      '0/001.p/0',
      '0/001.p/256',
      '0/001.p/017',
      '0/001/',
      'x/000',
      '0/x001',
      '1/0001',
    ]) {
      assert.equal(parseTilePath(bad), undefined, bad);
    }
  });
  test('the partial tiles of the spec examples', () => {
    assert.deepEqual(partialTiles(70_000), [
      { level: 0, index: 273, width: 112 },
      { level: 1, index: 1, width: 17 },
      { level: 2, index: 0, width: 1 },
    ]);
    assert.deepEqual(partialTiles(256), [{ level: 1, index: 0, width: 1 }]);
    assert.deepEqual(partialTiles(0), []);
  });
});

describe('integrating leaves into tiles', () => {
  function grow(batches: number[]) {
    const store = new Map<string, Tile>();
    const leaves: Buffer[] = [];
    let size = 0;
    let root: Buffer = Buffer.alloc(0);
    for (const n of batches) {
      const add = Array.from({ length: n }, () => leafHash(randomBytes(12)));
      const rightmost = partialTiles(size).map((p) => store.get(`${p.level}/${p.index}`)!);
      const r = integrate(size, rightmost, add);
      for (const t of r.tiles) store.set(`${t.level}/${t.index}`, t);
      leaves.push(...add);
      size = r.size;
      root = r.root;
      assert.deepEqual(root, rootOfLeafHashes(leaves), `root at ${size}`);
    }
    return { store, leaves, size, root };
  }
  test('roots agree with the RFC 9162 tree for batches across tile and level boundaries', () => {
    grow([1, 254, 1, 1, 300, 65_000, 536, 1, 255]);
  });
  test('every tile holds the right hashes, and proofs from tiles verify', () => {
    const { store, leaves, size } = grow([70_000]);
    assert.equal(size, 70_000);
    // Level 1 tile 0: the roots of level-0 tiles 0..255.
    const l1 = store.get('1/0')!;
    assert.deepEqual(l1.hashes.subarray(32 * 5, 32 * 6), rootOfLeafHashes(leaves.slice(5 * 256, 6 * 256)));
    const tile = (id: TileId) => store.get(`${id.level}/${id.index}`)?.hashes;
    const roots = new Map<number, Buffer>();
    const rootAt = (s: number) => {
      if (!roots.has(s)) roots.set(s, rootOfLeafHashes(leaves.slice(0, s)));
      return roots.get(s)!;
    };
    for (const [i, s] of [
      [0, 1],
      [255, 256],
      [256, 257],
      [65_535, 70_000],
      [69_999, 70_000],
      [1234, 66_000],
    ] as const) {
      const nodes = inclusionNodes(i, s);
      const proof = inclusionProof(i, s, nodesFromTiles(nodes, tile));
      assert.ok(verifyInclusion(i, s, leaves[i]!, proof, rootAt(s)), `${i}/${s}`);
      assert.ok(tilesForNodes(nodes).length <= 2 * 3, 'a proof reads a few tiles');
    }
    for (const [a, b] of [
      [1, 70_000],
      [256, 65_536],
      [300, 69_999],
      [65_536, 70_000],
    ] as const) {
      const proof = consistencyProof(a, b, nodesFromTiles(consistencyNodes(a, b), tile));
      assert.ok(verifyConsistency(a, b, proof, rootAt(a), rootAt(b)), `${a}→${b}`);
    }
  });
  test('a missing or short rightmost tile is refused', () => {
    const { store, size } = grow([300]);
    assert.throws(() => integrate(size, [], [leafHash(Buffer.from('x'))]), RangeError);
    const t = store.get('0/1')!;
    assert.throws(
      () => integrate(size, [{ ...t, hashes: t.hashes.subarray(0, 32) }], [leafHash(Buffer.from('x'))]),
      RangeError,
    );
  });
});
