import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  consistencyNodes,
  consistencyProof,
  EMPTY_ROOT,
  inclusionNodes,
  inclusionProof,
  leafHash,
  type NodeId,
  nodeHash,
  nodeKey,
  rootFromNodes,
  rootNodes,
  rootOfLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';

// transparency-dev/merkle testonly/constants.go and proof/verify_test.go (RFC 6962/9162 hashing).
const hd = (h: string) => Buffer.from(h, 'hex');
const LEAVES = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map(hd);
const ROOTS = [
  'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
].map(hd);
const NODES = [
  [
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
    '0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7',
    '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
    'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    '4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658',
    'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
    '46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1',
  ],
  [
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
    '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
    'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
  ],
  [
    'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
  ],
  ['5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328'],
].map((l) => l.map(hd));
// Inclusion: leaf is 1-based in the reference file.
const INCLUSION: Array<[number, number, string[]]> = [
  [
    1,
    8,
    [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  ],
  [
    6,
    8,
    [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  ],
  [3, 3, ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125']],
  [
    2,
    5,
    [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  ],
];
const CONSISTENCY: Array<[number, number, string[]]> = [
  [
    1,
    8,
    [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  ],
  [
    6,
    8,
    [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  ],
  [
    2,
    5,
    [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  ],
  [
    6,
    7,
    [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  ],
];

/** Every complete subtree of an in-memory tree, for the proof builders. */
function nodeMap(leaves: readonly Buffer[]): Map<string, Buffer> {
  const map = new Map<string, Buffer>();
  let level = leaves.map((l) => leafHash(l));
  for (let l = 0; level.length > 0; l++) {
    for (const [i, h] of level.entries()) map.set(nodeKey(l, i), h);
    const next: Buffer[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i]!, level[i + 1]!));
    level = next;
  }
  return map;
}
const onlyNeeded = (all: Map<string, Buffer>, ids: NodeId[]) =>
  new Map(ids.map((n) => [nodeKey(n.level, n.index), all.get(nodeKey(n.level, n.index))!]));

describe('RFC 9162 Merkle tree against transparency-dev/merkle vectors', () => {
  const all = nodeMap(LEAVES);
  test('node hashes of every complete subtree', () => {
    for (const [l, level] of NODES.entries()) {
      for (const [i, h] of level.entries()) assert.deepEqual(all.get(nodeKey(l, i)), h);
    }
  });
  test('root of every tree size 0..8, from leaves and from the right border only', () => {
    assert.deepEqual(EMPTY_ROOT, ROOTS[0]);
    for (let n = 0; n <= 8; n++) {
      const hashes = LEAVES.slice(0, n).map((l) => leafHash(l));
      assert.deepEqual(rootOfLeafHashes(hashes), ROOTS[n], `size ${n}`);
      assert.deepEqual(rootFromNodes(n, onlyNeeded(all, rootNodes(n))), ROOTS[n], `size ${n} (nodes)`);
    }
  });
  test('inclusion proofs: generated equal the reference, and verify', () => {
    for (const [leaf1, size, proof] of INCLUSION) {
      const index = leaf1 - 1;
      const got = inclusionProof(index, size, onlyNeeded(all, inclusionNodes(index, size)));
      assert.deepEqual(got, proof.map(hd), `${index}/${size}`);
      assert.ok(verifyInclusion(index, size, leafHash(LEAVES[index]!), got, ROOTS[size]!));
    }
  });
  test('consistency proofs: generated equal the reference, and verify', () => {
    for (const [s1, s2, proof] of CONSISTENCY) {
      const got = consistencyProof(s1, s2, onlyNeeded(all, consistencyNodes(s1, s2)));
      assert.deepEqual(got, proof.map(hd), `${s1}→${s2}`);
      assert.ok(verifyConsistency(s1, s2, got, ROOTS[s1]!, ROOTS[s2]!));
    }
  });
  test('every corruption of an inclusion proof is refused (the reference probes)', () => {
    const some = hd('abacaba000000000000000000000000000000000000000000060061e00123456');
    for (const [leaf1, size, p] of INCLUSION) {
      const i = leaf1 - 1;
      const proof = p.map(hd);
      const root = ROOTS[size]!;
      const leaf = leafHash(LEAVES[i]!);
      const probes: Array<[number, number, Buffer, Buffer, Buffer[]]> = [
        [i - 1, size, root, leaf, proof],
        [i + 1, size, root, leaf, proof],
        [i ^ 2, size, root, leaf, proof],
        [i, size * 2, root, leaf, proof],
        [i, Math.floor(size / 2), root, leaf, proof],
        [i, size, root, Buffer.from('WrongLeaf'), proof],
        [i, size, EMPTY_ROOT, leaf, proof],
        [i, size, some, leaf, proof],
        [i, size, root, leaf, [...proof, Buffer.alloc(0)]],
        [i, size, root, leaf, [...proof, root]],
        [i, size, root, leaf, [Buffer.alloc(0), ...proof]],
        [i, size, root, leaf, [root, ...proof]],
        [i, size, root, leaf, proof.slice(0, -1)],
      ];
      if (proof.length > 1) probes.push([i, size, root, leaf, [proof[0]!, some, ...proof.slice(1)]]);
      proof.forEach((_, k) => {
        const bad = proof.map((x) => Buffer.from(x));
        bad[k]![0]! ^= 8;
        probes.push([i, size, root, leaf, bad]);
      });
      for (const [pi, ps, pr, pl, pp] of probes) {
        assert.equal(verifyInclusion(pi, ps, pl, pp, pr), false, `${pi}/${ps} ${pp.length}`);
      }
    }
  });
  test('every corruption of a consistency proof is refused (the reference probes)', () => {
    for (const [s1, s2, p] of CONSISTENCY) {
      const proof = p.map(hd);
      const r1 = ROOTS[s1]!;
      const r2 = ROOTS[s2]!;
      const probes: Array<[number, number, Buffer, Buffer, Buffer[]]> = [
        [s1 - 1, s2, r1, r2, proof],
        [s1 + 1, s2, r1, r2, proof],
        [s1 ^ 2, s2, r1, r2, proof],
        [s1, s2 * 2, r1, r2, proof],
        [s1, Math.floor(s2 / 2), r1, r2, proof],
        [s1, s2, Buffer.from('WrongRoot'), r2, proof],
        [s1, s2, r1, Buffer.from('WrongRoot'), proof],
        [s1, s2, r2, r1, proof],
        [s1, s2, r1, r2, []],
        [s1, s2, r1, r2, [...proof, Buffer.alloc(0)]],
        [s1, s2, r1, r2, [...proof, r1]],
        [s1, s2, r1, r2, [...proof, r2]],
        [s1, s2, r1, r2, [Buffer.alloc(0), ...proof]],
        [s1, s2, r1, r2, [r1, ...proof]],
        [s1, s2, r1, r2, [r2, ...proof]],
        [s1, s2, r1, r2, [proof[0]!, ...proof]],
        [s1, s2, r1, r2, proof.slice(0, -1)],
      ];
      proof.forEach((_, k) => {
        const bad = proof.map((x) => Buffer.from(x));
        bad[k]![0]! ^= 16;
        probes.push([s1, s2, r1, r2, bad]);
      });
      for (const [a, b, x, y, pp] of probes) {
        assert.equal(verifyConsistency(a, b, pp, x, y), false, `${a}→${b} ${pp.length}`);
      }
    }
  });
  test('trivial consistency: 0→n and n→n with an empty proof; time travel refused', () => {
    const r1 = Buffer.alloc(32, 1);
    const r2 = Buffer.alloc(32, 2);
    assert.ok(verifyConsistency(0, 0, [], r1, r1));
    assert.ok(verifyConsistency(0, 1, [], r1, r2));
    assert.ok(verifyConsistency(1, 1, [], r2, r2));
    assert.equal(verifyConsistency(1, 1, [], r1, r2), false);
    assert.equal(verifyConsistency(1, 0, [], r1, r2), false);
    assert.equal(verifyConsistency(1, 2, [], r1, r2), false);
    assert.equal(verifyConsistency(0, 1, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT), false);
  });
});

describe('proofs of larger random trees', () => {
  test('every leaf of every size up to 70 proves inclusion; every pair of sizes proves consistency', () => {
    const leaves = Array.from({ length: 70 }, () => randomBytes(8));
    const all = nodeMap(leaves);
    const roots = [
      EMPTY_ROOT,
      ...leaves.map((_, n) => rootOfLeafHashes(leaves.slice(0, n + 1).map((l) => leafHash(l)))),
    ];
    for (let size = 1; size <= 70; size++) {
      assert.deepEqual(rootFromNodes(size, onlyNeeded(all, rootNodes(size))), roots[size]);
      for (let i = 0; i < size; i++) {
        const proof = inclusionProof(i, size, onlyNeeded(all, inclusionNodes(i, size)));
        assert.ok(verifyInclusion(i, size, leafHash(leaves[i]!), proof, roots[size]!), `${i}/${size}`);
      }
      for (let s1 = 0; s1 <= size; s1++) {
        const proof = consistencyProof(s1, size, onlyNeeded(all, consistencyNodes(s1, size)));
        assert.ok(verifyConsistency(s1, size, proof, roots[s1]!, roots[size]!), `${s1}→${size}`);
        if (s1 > 0 && s1 < size) {
          assert.equal(verifyConsistency(s1, size, proof, roots[s1]!, roots[size - 1]!), false);
        }
      }
    }
  });
  test('asking for a leaf outside the tree, or a shrinking tree, throws', () => {
    assert.throws(() => inclusionNodes(5, 5), RangeError);
    assert.throws(() => inclusionNodes(-1, 5), RangeError);
    assert.throws(() => consistencyNodes(6, 5), RangeError);
  });
});
