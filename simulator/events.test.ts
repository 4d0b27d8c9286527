import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { PartnerEvent } from '../src/events/model.ts';
import { uuidv7Time } from '../src/util/uuid.ts';
import { DeviceFleet, PartnerEventLog } from './events.ts';
import { deliverEvents, deliveryPlan, retryAfterMs } from './events-sender.ts';
import { parseBackfillQuery } from './events-server.ts';
import type { PartnerClient } from './partner-client.ts';

const checkEvent = TypeCompiler.Compile(PartnerEvent);
const T0 = Date.UTC(2026, 11, 2, 7, 0, 0);

function fleet(seed: number, extra: Partial<ConstructorParameters<typeof DeviceFleet>[1]> = {}) {
  let t = T0;
  const now = () => t++;
  const log = new PartnerEventLog({ seed, now });
  return new DeviceFleet(log, {
    devices: ['door-1', { id: 'door-2', clockSkewMs: -90_000 }],
    subjects: ['pseudonym-a', 'pseudonym-b'],
    seed,
    now,
    ...extra,
  });
}

test('the log numbers events +1 from 1 without gaps, with valid UUIDv7 ids minted on the device clock', () => {
  const f = fleet(7, { heartbeatEvery: 10, rebootRatio: 0.01, statusRatio: 0.02 });
  const events = f.produce(500);
  assert.equal(events.length, 500);
  assert.deepEqual(
    events.map((e) => e.seq),
    Array.from({ length: 500 }, (_, i) => i + 1),
  );
  for (const e of events) {
    assert.ok(checkEvent.Check(e), `event ${e.seq} matches the contract schema`);
    assert.equal(uuidv7Time(e.eventId), Date.parse(e.occurredAt), 'the id carries the device time');
  }
  assert.equal(new Set(events.map((e) => e.eventId)).size, 500);
  // door-2's clock runs 90 s behind: its events say so.
  const skewed = events.find((e) => e.device === 'door-2' && e.type === 'device.heartbeat')!;
  assert.ok(Date.parse(skewed.occurredAt) < T0 - 80_000);
  assert.ok(events.some((e) => e.type === 'device.heartbeat'));
  assert.ok(events.some((e) => e.status === 'reboot'));
  assert.ok(events.some((e) => e.type === 'access.denied' && e.subject === null));
  assert.deepEqual(f.log.after(498, 500), events.slice(498));
  assert.deepEqual(f.log.after(0, 3), events.slice(0, 3));
  assert.equal(f.log.get(250), events[249]);
});

test('the same seed produces the same events; another seed other ones', () => {
  const a = fleet(42).produce(50);
  const b = fleet(42).produce(50);
  const c = fleet(43).produce(50);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test('a reboot reports reboot and loses the subscription state until reconciled', () => {
  const f = fleet(1);
  const e = f.reboot('door-1');
  assert.deepEqual([e.type, e.status], ['device.status', 'reboot']);
  assert.equal(f.devices.get('door-1')!.subscribed, false);
  f.resubscribe('door-1');
  assert.equal(f.devices.get('door-1')!.subscribed, true);
});

test('stale events happened long before the device reports them', () => {
  const f = fleet(3, { staleRatio: 1, staleAgeMs: 2 * 3600_000 });
  const e = f.access();
  assert.ok(Date.parse(e.occurredAt) <= T0 - 2 * 3600_000 + 10);
});

test('the delivery plan: every kept event once at least, the duplicates and drops counted, reproducible', () => {
  const events = fleet(5).produce(2000);
  const faults = { seed: 9, duplicates: 0.1, shuffleWindow: 200, drop: 0.05 };
  const plan = deliveryPlan(events, faults, 100);
  const again = deliveryPlan(events, faults, 100);
  assert.deepEqual(
    plan.sequence.map((e) => e.seq),
    again.sequence.map((e) => e.seq),
  );
  const sent = new Set(plan.sequence.map((e) => e.seq));
  const dropped = new Set(plan.dropped.map((e) => e.seq));
  assert.equal(sent.size + dropped.size, 2000, 'each event is sent or dropped');
  for (const s of dropped) assert.ok(!sent.has(s), 'a dropped event is never sent');
  assert.equal(plan.sequence.length, sent.size + plan.duplicatesSent);
  assert.ok(plan.duplicatesSent > 150 && plan.duplicatesSent < 250, `${plan.duplicatesSent} ≈ 10 %`);
  assert.ok(dropped.size > 50 && dropped.size < 150, `${dropped.size} ≈ 5 %`);
  const inOrder = plan.sequence.every((e, i) => i === 0 || e.seq > plan.sequence[i - 1]!.seq);
  assert.equal(inOrder, false, 'shuffled');
  // Shuffling stays within its window: no event moves further than the window (plus duplicate lag).
  const byRank = plan.sequence.map((e, i) => Math.abs(i - (e.seq - 1)));
  assert.ok(Math.max(...byRank) < 200 + 300 + 150);
});

test('a drop chosen per event leaves exactly those out', () => {
  const events = fleet(5).produce(100);
  const plan = deliveryPlan(events, { drop: (e) => e.seq % 10 === 0 }, 10);
  assert.deepEqual(
    plan.dropped.map((e) => e.seq),
    [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
  );
  assert.deepEqual(
    plan.sequence.map((e) => e.seq),
    events.filter((e) => e.seq % 10 !== 0).map((e) => e.seq),
  );
});

test('Retry-After: delay-seconds and HTTP-date (RFC 9110 §10.2.3); anything else is not a delay', () => {
  assert.equal(retryAfterMs('3'), 3000);
  assert.equal(retryAfterMs(['2']), 2000);
  const now = Date.UTC(2026, 11, 2, 8, 0, 0);
  assert.equal(retryAfterMs('Wed, 02 Dec 2026 08:00:05 GMT', now), 5000);
  assert.equal(retryAfterMs('Wed, 02 Dec 2026 07:00:00 GMT', now), 0);
  assert.equal(retryAfterMs('soon'), undefined);
  assert.equal(retryAfterMs(undefined), undefined);
});

test('the backfill query: afterSeq ≥ 0, limit 1–500 (default 500), nothing else', () => {
  assert.deepEqual(parseBackfillQuery({ afterSeq: '0', limit: '500' }), { afterSeq: 0, limit: 500 });
  assert.deepEqual(parseBackfillQuery({ afterSeq: '41' }), { afterSeq: 41, limit: 500 });
  for (const bad of [
    {},
    { afterSeq: '-1' },
    { afterSeq: '1', limit: '0' },
    { afterSeq: '1', limit: '501' },
    { afterSeq: '01' },
    { afterSeq: '1.5' },
    { afterSeq: '1', limit: '5', extra: '1' },
    { afterSeq: ['1', '2'] },
  ]) {
    assert.ok('problem' in parseBackfillQuery(bad), JSON.stringify(bad));
  }
});

/** A partner client whose answers are scripted: records what was sent and when. */
function scripted(
  answers: Array<{ status: number; headers?: Record<string, string>; signatureValid?: boolean }>,
) {
  const calls: Array<{ at: number; body: string }> = [];
  const client = {
    token: async () => 'token',
    send: async (_m: string, _p: string, opts: { body?: unknown }) => {
      calls.push({ at: performance.now(), body: JSON.stringify(opts.body) });
      const a = answers.shift() ?? { status: 200 };
      return {
        status: a.status,
        headers: a.headers ?? {},
        body: a.status === 200 ? { accepted: 1, duplicates: 0 } : {},
        rawBody: Buffer.alloc(0),
        signatureValid: a.signatureValid ?? true,
      };
    },
  };
  return { client: client as unknown as PartnerClient, calls };
}

test('the sender retries anything but a verified 2xx with the same events, and waits as Retry-After asks', async () => {
  const events = fleet(8).produce(1);
  const { client, calls } = scripted([
    { status: 429, headers: { 'retry-after': '1' } },
    { status: 500 },
    { status: 200, signatureValid: false },
    { status: 503, headers: { 'retry-after': '0' } },
    { status: 200 },
  ]);
  const report = await deliverEvents(events, {
    client,
    batchSize: 1,
    concurrency: 1,
    retry: { baseMs: 10, maxMs: 20 },
  });
  assert.equal(calls.length, 5);
  assert.equal(new Set(calls.map((c) => c.body)).size, 1, 'the same body (so the same eventId) every time');
  assert.ok(calls[1]!.at - calls[0]!.at >= 990, 'no retry before the 429 Retry-After');
  assert.ok(calls[2]!.at - calls[1]!.at < 500, 'a 500 is retried after a short backoff');
  assert.deepEqual(report.statuses, { '429': 1, '500': 1, 'bad-signature': 1, '503': 1, '200': 1 });
  assert.deepEqual([report.delivered, report.retries, report.failed], [1, 4, 0]);
});

test('a batch still refused after maxAttempts is reported failed, not delivered', async () => {
  const events = fleet(9).produce(3);
  const { client, calls } = scripted(Array.from({ length: 10 }, () => ({ status: 409 })));
  const report = await deliverEvents(events, {
    client,
    batchSize: 3,
    retry: { maxAttempts: 3, baseMs: 1, maxMs: 2 },
  });
  assert.equal(calls.length, 3);
  assert.deepEqual([report.delivered, report.failed, report.statuses['409']], [0, 3, 3]);
});
