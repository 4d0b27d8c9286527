/**
 * The reconciliation index store (src/journal/reconcile/store.ts) on the real journal: a day built
 * from the rows the signed log holds, extended as the day grows (appended, or rebuilt when a late row
 * sorts before its newest item), the clock margin of the look-up, and the bound on days kept.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { sql } from '../../src/db/sql.ts';
import { integrateAll } from '../../src/journal/log/sequencer.ts';
import { DAY_MS, ReconStore } from '../../src/journal/reconcile/store.ts';
import {
  barrierDecisionProjection,
  eventTime,
  indexProjections,
  type Projection,
} from '../../src/reconcile/projection.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { type Harness, startHarness } from '../support/harness.ts';
import { PLATES, standardWorld } from '../support/world.ts';

let h: Harness;
let north: PartnerClient;
let northId: string;
const seen: Projection[] = [];

async function decide(eventId = uuidv7()) {
  const res = await north.barrierRead('gate-1', PLATES.anna, { eventId });
  assert.equal(res.status, 200);
  const p = barrierDecisionProjection({
    eventId,
    barrierId: 'gate-1',
    decision: (res.body as { decision: 'open' | 'deny' }).decision,
  });
  seen.push(p);
  return p;
}
const integrate = () => integrateAll(h.runtime.db, h.runtime.journalLog, 100_000);
const store = (o: { clockMarginMs?: number; cacheDays?: number } = {}) =>
  new ReconStore({
    db: h.runtime.db,
    cipher: h.runtime.cipher,
    clockMarginMs: o.clockMarginMs ?? 600_000,
    cacheDays: o.cacheDays ?? 8,
  });

/** The view's items equal these projections, and its fingerprint equals an index built from them. */
async function assertHolds(s: ReconStore, from: number, to: number, expected: Projection[]) {
  const v = await s.view(northId, from, to);
  const got = [...v.items()].map((i) => i.projection);
  const byId = (a: Projection, b: Projection) => a.eventId.localeCompare(b.eventId);
  assert.deepEqual([...got].sort(byId), [...expected].sort(byId));
  const { index } = indexProjections(expected);
  assert.equal(v.storage.size, index.size);
  assert.deepEqual(v.storage.fingerprint(0, v.storage.size), index.fingerprint(0, index.size));
  return v;
}

before(async () => {
  h = await startHarness({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => standardWorld(ids),
  });
  north = await h.client('barrier-north');
  northId = (await h.runtime.db.one<{ id: string }>(
    sql`select id from partners where code = 'barrier-north'`,
  ))!.id;
});
after(() => h?.close());

test('a day is built from the signed log, extended as it grows, rebuilt for a row that sorts earlier', async () => {
  const s = store();
  for (let i = 0; i < 10; i++) await decide();
  const from = Math.floor((eventTime(seen[0]!.eventId) - 60_000) / DAY_MS) * DAY_MS;
  const to = Date.now() + 3_600_000;
  // Nothing is in the signed log yet: the day is empty.
  await assertHolds(s, from, to, []);
  await integrate();
  const v1 = await assertHolds(s, from, to, seen);
  assert.equal(v1.checkpoint !== undefined && v1.size > 0, true);

  // Rows appended after the checkpoint join only once integrated; earlier views stay as they were.
  for (let i = 0; i < 5; i++) await decide();
  await assertHolds(s, from, to, seen.slice(0, 10));
  await integrate();
  await assertHolds(s, from, to, seen);
  assert.equal(v1.storage.size, 10, 'a view is a snapshot');

  // A decision whose eventId is older than every item held: the day is rebuilt in order.
  await decide(uuidv7(eventTime(seen[0]!.eventId) - 30_000));
  await integrate();
  await assertHolds(s, from, to, seen);
  // A fresh store builds the same day from scratch.
  await assertHolds(store(), from, to, seen);
  // Every element looks up its item; a window cuts by eventId time.
  const v = await s.view(northId, from, to);
  for (const p of seen) assert.deepEqual(v.lookup(indexProjections([p]).index.id(0))?.projection, p);
  const cut = eventTime(seen[5]!.eventId);
  await assertHolds(
    s,
    from,
    cut,
    seen.filter((p) => eventTime(p.eventId) < cut),
  );
});

test('the clock margin: a row recorded far from its eventId time is outside the day until the margin covers it', async () => {
  const skewed = await decide(uuidv7(Date.now() - 2 * 3_600_000)); // the partner's clock 2 h behind
  await integrate();
  const t = eventTime(skewed.eventId);
  const from = t - 1000;
  const to = t + 1000;
  await assertHolds(store(), from, to, []);
  const wide = await assertHolds(store({ clockMarginMs: 3 * 3_600_000 }), from, to, [skewed]);
  assert.deepEqual(
    wide.skewed(3_600_000).map((i) => i.projection),
    [skewed],
    'recorded 2 h after its eventId time',
  );
  assert.deepEqual(wide.skewed(3 * 3_600_000), []);
  // Extension applies the same margin as a build.
  const s = store();
  await assertHolds(s, from, to, []);
  await decide(uuidv7(t + 10));
  await integrate();
  await assertHolds(s, from, to, []);
  await assertHolds(store({ clockMarginMs: 3 * 3_600_000 }), from, to, seen.slice(-2));
});

test('at most cacheDays (partner, day) indexes are kept; a window longer than that still answers', async () => {
  const s = store({ cacheDays: 2 });
  const now = Date.now();
  for (let d = 5; d >= 1; d--) await s.view(northId, now - d * DAY_MS, now - d * DAY_MS + 1000);
  assert.ok(s.cachedDays <= 2, `${s.cachedDays}`);
  const v = await s.view(northId, now - 4 * DAY_MS, now + DAY_MS);
  // The two decisions recorded 2 h off their eventId time (previous test) are outside the margin.
  const skewed = new Set(seen.slice(-2));
  assert.equal(
    v.storage.size,
    seen.filter((p) => !skewed.has(p) && eventTime(p.eventId) >= now - 4 * DAY_MS).length,
  );
  assert.ok(s.cachedDays <= 6);
  await assert.rejects(s.view(northId, now, now), /end after it starts/);
});

test('a change of the partner’s registration (a device renamed) projects its days again', async () => {
  let version = 'v1';
  const s = new ReconStore({
    db: h.runtime.db,
    cipher: h.runtime.cipher,
    clockMarginMs: 600_000,
    cacheDays: 8,
    registryVersion: () => version,
  });
  const p = await decide();
  await integrate();
  const t = eventTime(p.eventId);
  const devices = async () => [...(await s.view(northId, t, t + 1)).items()].map((i) => i.projection.device);
  assert.deepEqual(await devices(), ['gate-1']);
  await h.runtime.db.query(
    sql`update devices set external_id = 'gate-1-renamed' where external_id = 'gate-1'`,
  );
  try {
    assert.deepEqual(await devices(), ['gate-1'], 'the cached day, while the registration looks the same');
    version = 'v2';
    assert.deepEqual(await devices(), ['gate-1-renamed']);
  } finally {
    await h.runtime.db.query(
      sql`update devices set external_id = 'gate-1' where external_id = 'gate-1-renamed'`,
    );
  }
});
