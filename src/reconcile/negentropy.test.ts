import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { BLOCK, concatIndexes, encodeVarInt, ID_SIZE, ReconIndex, type ReconStorage } from './index.ts';
import { Negentropy, NegentropyError, PROTOCOL_VERSION } from './negentropy.ts';

interface Item {
  time: number;
  id: Buffer;
}
const sortItems = (items: Item[]) =>
  items.sort((a, b) => (a.time !== b.time ? a.time - b.time : Buffer.compare(a.id, b.id)));
function indexOf(items: Item[]): ReconIndex {
  const sorted = sortItems([...items]);
  return ReconIndex.fromSorted(
    sorted.map((i) => i.time),
    Buffer.concat(sorted.map((i) => i.id)),
  );
}
/** Negentropy v1 fingerprint by the definition: BigInt sum mod 2^256, LE, ‖ varint(n), SHA-256, 16 bytes. */
function referenceFingerprint(ids: Buffer[]): Buffer {
  let sum = 0n;
  for (const id of ids) sum = (sum + BigInt(`0x${Buffer.from(id).reverse().toString('hex')}`)) % 2n ** 256n;
  const le = Buffer.from(sum.toString(16).padStart(64, '0'), 'hex').reverse();
  return createHash('sha256')
    .update(le)
    .update(Uint8Array.from(encodeVarInt(ids.length)))
    .digest()
    .subarray(0, 16);
}
function randomItems(n: number, times: () => number): Item[] {
  return Array.from({ length: n }, () => ({ time: times(), id: randomBytes(ID_SIZE) }));
}
function sync(client: ReconStorage, server: ReconStorage, opts = {}) {
  const a = new Negentropy(client, opts);
  const b = new Negentropy(server, opts);
  let msg: Buffer | null = a.initiate();
  const have: Buffer[] = [];
  const need: Buffer[] = [];
  let rounds = 0;
  let bytes = 0;
  while (msg) {
    rounds++;
    bytes += msg.length;
    const answer = b.reconcile(msg);
    bytes += answer.length;
    const r = a.reconcileAsInitiator(answer);
    have.push(...r.have);
    need.push(...r.need);
    msg = r.next;
    assert.ok(rounds < 50, 'terminates');
  }
  const hex = (l: Buffer[]) => l.map((x) => x.toString('hex')).sort();
  return { have: hex(have), need: hex(need), rounds, bytes };
}

describe('the reconciliation index', () => {
  test('range fingerprints equal the definition, for ranges inside, across and over blocks', () => {
    const items = sortItems(randomItems(1000, () => Math.floor(Math.random() * 50)));
    const index = indexOf(items);
    for (const [lo, hi] of [
      [0, 0],
      [0, 1],
      [3, 9],
      [0, BLOCK],
      [1, BLOCK + 1],
      [63, 64 * 5 + 1],
      [0, 1000],
      [999, 1000],
      [500, 700],
    ]) {
      assert.deepEqual(
        index.fingerprint(lo!, hi!),
        referenceFingerprint(items.slice(lo, hi).map((i) => i.id)),
        `[${lo}, ${hi})`,
      );
    }
  });
  test('ids of all 0xff bytes carry across every limb (sum mod 2^256)', () => {
    const items = [0, 1, 2].map((t) => ({ time: t, id: Buffer.alloc(32, 0xff) }));
    items[2]!.id[0] = 0xfe;
    const index = indexOf(items);
    assert.deepEqual(index.fingerprint(0, 3), referenceFingerprint(items.map((i) => i.id)));
  });
  test('appending as the day grows gives the same index as building at once; out of order is refused', () => {
    const items = sortItems(randomItems(700, () => Math.floor(Math.random() * 100)));
    const grown = new ReconIndex(4);
    for (let k = 0; k < items.length; k += 37) {
      const part = items.slice(k, k + 37);
      grown.append(
        part.map((i) => i.time),
        Buffer.concat(part.map((i) => i.id)),
      );
    }
    const built = indexOf(items);
    for (const [lo, hi] of [
      [0, 700],
      [5, 650],
      [64, 128],
    ])
      assert.deepEqual(grown.fingerprint(lo!, hi!), built.fingerprint(lo!, hi!));
    assert.throws(() => grown.append([0], randomBytes(32)), /sorted/);
    assert.throws(() => grown.append([items[699]!.time], items[699]!.id), /duplicate/);
    assert.throws(() => ReconIndex.fromSorted([2, 1], randomBytes(64)), /sorted/);
  });
  test('days side by side behave as one index, cut to a time window', () => {
    const day1 = sortItems(randomItems(300, () => Math.floor(Math.random() * 1000)));
    const day2 = sortItems(randomItems(300, () => 1000 + Math.floor(Math.random() * 1000)));
    const all = concatIndexes([indexOf(day1), indexOf(day2)]);
    const one = indexOf([...day1, ...day2]);
    assert.equal(all.size, 600);
    for (const [lo, hi] of [
      [0, 600],
      [250, 350],
      [299, 301],
      [0, 300],
      [300, 600],
    ]) {
      assert.deepEqual(all.fingerprint(lo!, hi!), one.fingerprint(lo!, hi!), `[${lo}, ${hi})`);
    }
    const cut = concatIndexes([indexOf(day1), indexOf(day2)], 500, 1500);
    const expected = [...day1, ...day2].filter((i) => i.time >= 500 && i.time < 1500);
    assert.equal(cut.size, expected.length);
    assert.deepEqual(
      cut.fingerprint(0, cut.size),
      referenceFingerprint(sortItems(expected).map((i) => i.id)),
    );
    assert.throws(() => concatIndexes([indexOf(day2), indexOf(day1)]), /order/);
  });
});

describe('Negentropy v1', () => {
  const cases: Array<[string, number, number, number, () => number]> = [
    ['identical sets', 5000, 0, 0, () => Math.floor(Math.random() * 1e6)],
    ['one missing on each side', 20_000, 1, 1, () => Math.floor(Math.random() * 1e9)],
    [
      'many differences, many equal times (id-prefix bounds)',
      3000,
      150,
      90,
      () => Math.floor(Math.random() * 20),
    ],
    ['empty client', 0, 0, 500, () => Math.floor(Math.random() * 1e6)],
    ['small sets', 3, 2, 1, () => 7],
  ];
  for (const [name, common, onlyClient, onlyServer, times] of cases) {
    test(`finds exactly the difference: ${name}`, () => {
      const shared = randomItems(common, times);
      const mine = randomItems(onlyClient, times);
      const theirs = randomItems(onlyServer, times);
      const r = sync(indexOf([...shared, ...mine]), indexOf([...shared, ...theirs]));
      assert.deepEqual(r.have, mine.map((i) => i.id.toString('hex')).sort());
      assert.deepEqual(r.need, theirs.map((i) => i.id.toString('hex')).sort());
    });
  }
  test('one difference in 100,000: three round trips, a few kilobytes', () => {
    const shared = randomItems(100_000, () => 1_700_000_000_000 + Math.floor(Math.random() * 86_400_000));
    const extra = randomItems(1, () => 1_700_000_000_000 + 5);
    const r = sync(indexOf(shared), indexOf([...shared, ...extra]));
    assert.deepEqual(r.need, [extra[0]!.id.toString('hex')]);
    assert.ok(r.rounds <= 3, `${r.rounds} rounds`);
    assert.ok(r.bytes <= 4096, `${r.bytes} bytes`);
  });
  test('a frame size limit spreads a large difference over more rounds and still finds all of it', () => {
    const shared = randomItems(2000, () => Math.floor(Math.random() * 1e6));
    const mine = randomItems(400, () => Math.floor(Math.random() * 1e6));
    const theirs = randomItems(400, () => Math.floor(Math.random() * 1e6));
    const a = sync(indexOf([...shared, ...mine]), indexOf([...shared, ...theirs]), { frameSizeLimit: 4096 });
    assert.equal(a.have.length, 400);
    assert.equal(a.need.length, 400);
    assert.ok(a.rounds > 3);
  });
  test('bad messages are refused with NegentropyError; another version gets our version byte alone', () => {
    const server = new Negentropy(indexOf(randomItems(10, () => 1)));
    assert.deepEqual(server.reconcile(Buffer.from([0x62])), Buffer.from([PROTOCOL_VERSION]));
    for (const bad of [
      [],
      [0x10],
      [0x61, 0x01],
      [0x61, 0x00, 0x00, 0x03],
      [0x61, 0x00, 0x21],
      [0x61, 0x00, 0x00, 0x01, 1, 2],
      [0x61, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
    ]) {
      assert.throws(
        () => new Negentropy(indexOf([])).reconcile(Buffer.from(bad)),
        NegentropyError,
        JSON.stringify(bad),
      );
    }
    const capped = new Negentropy(indexOf([]), { maxIdsPerMessage: 2 });
    const three = Buffer.concat([Buffer.from([0x61, 0x00, 0x00, 0x02, 0x03]), randomBytes(96)]);
    assert.throws(() => capped.reconcile(three), /too many ids/);
  });
  test('a time past 2^53 on the wire saturates to infinity instead of wrapping', () => {
    // Bound: varint 2^56 (time), no prefix, mode Skip; then the infinity bound, IdList of 0.
    const big = [0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    const msg = Buffer.from([0x61, ...big, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00]);
    const server = new Negentropy(indexOf(randomItems(5, () => 3)));
    const answer = server.reconcile(msg);
    assert.equal(answer[0], PROTOCOL_VERSION);
  });
});

describe('an index built from columns', () => {
  test('is not changed by appends to it, nor are the columns it was built from; an empty one grows', () => {
    const items = sortItems(randomItems(10, () => 5));
    const times = Float64Array.from(items.map((i) => i.time));
    const ids = Buffer.concat(items.map((i) => i.id));
    const copy = Buffer.from(ids);
    const index = ReconIndex.fromSorted(times, ids);
    const before = index.fingerprint(0, 10);
    index.append([6], randomBytes(32));
    assert.deepEqual(ids, copy);
    assert.deepEqual(index.fingerprint(0, 10), before);
    assert.equal(index.size, 11);
    const empty = ReconIndex.fromSorted(new Float64Array(0), new Uint8Array(0));
    empty.append([1, 2], randomBytes(64));
    assert.equal(empty.size, 2);
  });
});
