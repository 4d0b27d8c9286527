import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { purgeIdempotencyRecords } from '../../src/barrier/decision-service.ts';
import { sql } from '../../src/db/sql.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { type Harness, startHarness } from '../support/harness.ts';
import { PLATES, standardWorld } from '../support/world.ts';

let h: Harness;
let north: PartnerClient;
let south: PartnerClient;

before(async () => {
  h = await startHarness({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => standardWorld(ids),
  });
  north = await h.client('barrier-north');
  south = await h.client('barrier-south', { localAddress: '127.0.0.3' });
});
after(() => h.close());

const journalCount = async () =>
  (await h.runtime.db.one<{ n: number }>(
    sql`select count(*)::int as n from journal where action = 'barrier.decision'`,
  ))!.n;

describe('barrier decisions over mTLS against the simulator (contract §6)', () => {
  test("a resident's car read in Cyrillic opens the gate of their complex", async () => {
    const res = await north.barrierRead('gate-1', PLATES.anna);
    assert.equal(res.status, 200);
    assert.equal(res.body['decision'], 'open');
    assert.equal(res.body['reason'], 'resident_vehicle');
    assert.equal(res.signatureValid, true, "smart-home's response signature verifies");
  });

  test('the same plate read in Latin with spaces and lower case agrees', async () => {
    const res = await north.barrierRead('gate-1', PLATES.annaLatin);
    assert.equal(res.body['decision'], 'open');
  });

  test('an unknown car is refused as not registered', async () => {
    const res = await north.barrierRead('gate-1', PLATES.unknown);
    assert.deepEqual([res.status, res.body['decision'], res.body['reason']], [200, 'deny', 'not_registered']);
  });

  test('the best candidate may be wrong: a later OCR hypothesis still matches', async () => {
    const res = await north.barrierRead('gate-1', PLATES.unknown, { alternatives: [PLATES.anna] });
    assert.equal(res.body['decision'], 'open');
  });

  test('a building-scoped barrier refuses a resident of another building of the same complex', async () => {
    const res = await north.barrierRead('garage-b2', PLATES.anna);
    assert.deepEqual([res.body['decision'], res.body['reason']], ['deny', 'not_registered']);
  });

  test('a resident of another complex is not let in', async () => {
    const res = await north.barrierRead('gate-1', PLATES.boris);
    assert.equal(res.body['decision'], 'deny');
    const own = await south.barrierRead('gate-s', PLATES.boris);
    assert.equal(own.body['decision'], 'open');
  });

  test('a guest pass opens inside its window, and an expired one is refused with its reason', async () => {
    const ok = await north.barrierRead('gate-1', PLATES.guest);
    assert.deepEqual([ok.body['decision'], ok.body['reason']], ['open', 'guest_pass']);
    const old = await north.barrierRead('gate-1', PLATES.expiredGuest);
    assert.deepEqual([old.body['decision'], old.body['reason']], ['deny', 'pass_not_valid_now']);
    const elsewhere = await north.barrierRead('garage-b2', PLATES.guest);
    assert.equal(elsewhere.body['decision'], 'deny', 'a pass opens only the barriers it names');
  });

  test('a disabled barrier denies with barrier_disabled', async () => {
    const res = await north.barrierRead('gate-off', PLATES.anna);
    assert.deepEqual([res.body['decision'], res.body['reason']], ['deny', 'barrier_disabled']);
  });

  test("another partner's barrier, and an unknown one, answer 404 alike", async () => {
    const other = await north.barrierRead('gate-s', PLATES.anna);
    const unknown = await north.barrierRead('no-such-gate', PLATES.anna);
    assert.equal(other.status, 404);
    assert.equal(unknown.status, 404);
    assert.equal(other.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(
      (other.body as unknown as Record<string, string>)['type'],
      'urn:smart-home:problem:not-found',
    );
  });

  test('a retried event gets the first answer back and journals nothing new', async () => {
    const eventId = uuidv7();
    const capturedAt = new Date();
    const first = await north.barrierRead('gate-1', PLATES.anna, { eventId, capturedAt });
    const before = await journalCount();
    const again = await north.barrierRead('gate-1', PLATES.anna, { eventId, capturedAt });
    assert.deepEqual(again.body, first.body);
    assert.equal(await journalCount(), before);
  });

  test('concurrent retries of one event are answered alike and journaled once; a conflicting copy gets 409', async () => {
    const eventId = uuidv7();
    const capturedAt = new Date();
    const before = await journalCount();
    const results = await Promise.all([
      ...Array.from({ length: 12 }, () => north.barrierRead('gate-1', PLATES.anna, { eventId, capturedAt })),
      north.barrierRead('gate-1', PLATES.unknown, { eventId, capturedAt }),
    ]);
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 12);
    assert.equal(new Set(ok.map((r) => r.body['decisionId'])).size, 1, 'one decision, one id');
    assert.equal(results.filter((r) => r.status === 409).length, 1);
    assert.equal(await journalCount(), before + 1);
  });

  test('many different reads at once are each decided on their own merits', async () => {
    const reads = [PLATES.anna, PLATES.unknown, PLATES.guest, PLATES.expiredGuest, PLATES.boris];
    const expected = [
      'resident_vehicle',
      'not_registered',
      'guest_pass',
      'pass_not_valid_now',
      'not_registered',
    ];
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => north.barrierRead('gate-1', reads[i % 5]!)),
    );
    results.forEach((r, i) => {
      assert.equal(r.body['reason'], expected[i % 5], `read ${i}`);
    });
  });

  test('the same event id with another body is a 409 conflict', async () => {
    const eventId = uuidv7();
    const capturedAt = new Date();
    await north.barrierRead('gate-1', PLATES.anna, { eventId, capturedAt });
    const res = await north.barrierRead('gate-1', PLATES.unknown, { eventId, capturedAt });
    assert.equal(res.status, 409);
    assert.equal(
      (res.body as unknown as Record<string, string>)['type'],
      'urn:smart-home:problem:event-conflict',
    );
  });

  test('a read older than 30 s or more than 5 s ahead is a 422 stale-event', async () => {
    const old = await north.barrierRead('gate-1', PLATES.anna, { capturedAt: new Date(Date.now() - 31_000) });
    const ahead = await north.barrierRead('gate-1', PLATES.anna, {
      capturedAt: new Date(Date.now() + 6_000),
    });
    assert.equal(old.status, 422);
    assert.equal(ahead.status, 422);
    const fine = await north.barrierRead('gate-1', PLATES.anna, {
      capturedAt: new Date(Date.now() - 25_000),
    });
    assert.equal(fine.status, 200);
  });

  test('every decision is one journal entry with internal ids only', async () => {
    const eventId = uuidv7();
    const res = await north.barrierRead('gate-1', PLATES.anna, { eventId, direction: 'exit' });
    const row = await h.runtime.db.one<Record<string, unknown>>(
      sql`select * from journal where id = ${res.body['decisionId']}`,
    );
    assert.ok(row);
    assert.equal(row['action'], 'barrier.decision');
    assert.equal(row['result'], 'open');
    assert.equal(row['subject_type'], 'resident');
    const anna = await h.runtime.db.one<{ id: string }>(sql`select id from residents where ref = 'anna'`);
    assert.equal(row['subject_id'], anna!.id);
    const details = row['details'] as Record<string, unknown>;
    assert.equal(details['eventId'], eventId);
    assert.equal(details['direction'], 'exit');
    assert.equal(details['reason'], 'resident_vehicle');
    const text = JSON.stringify(row);
    for (const needle of ['Анна', 'А123ВС77', 'A123BC77', '+7900'])
      assert.ok(!text.includes(needle), `journal holds ${needle}`);
  });

  test('idempotency records older than 24 h are purged; the journal keeps the decisions', async () => {
    const before = await journalCount();
    const n = await purgeIdempotencyRecords(h.runtime.db, new Date(Date.now() + 86_400_000 + 60_000));
    assert.ok(n > 10);
    assert.equal(
      (await h.runtime.db.one<{ n: number }>(sql`select count(*)::int as n from barrier_decisions`))!.n,
      0,
    );
    assert.equal(await journalCount(), before);
  });

  test('an unknown plate key id is a 400, not a silent deny', async () => {
    const res = await north.send('POST', '/partner/v1/barriers/gate-1/decisions', {
      scope: 'barrier:decide',
      body: {
        eventId: uuidv7(),
        capturedAt: new Date().toISOString(),
        direction: 'entry',
        candidates: [
          { kid: 'barrier-south-v1', token: north.plateCandidate(PLATES.anna).token, confidence: 0.9 },
        ],
      },
    });
    assert.equal(res.status, 400);
  });
});
