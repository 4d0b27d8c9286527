/**
 * Issue 5, faults of delivery, with counts straight from the database:
 * - a burst of events (long form: 100,000) with 10 % sent twice and shuffled order → every event stored
 *   once and journaled once, none lost;
 * - the partner's backfill endpoint down while deliveries were dropped → once it is back, smart-home's
 *   backfill fills every gap, and what it fetched is stored once alongside what was delivered.
 * The partner is the simulator: its event log, its sender (Standard Webhooks retries, seeded faults),
 * its GET /v1/events; smart-home the full stack over real mTLS.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { DeviceFleet, PartnerEventLog } from '../../simulator/events.ts';
import { deliverEvents } from '../../simulator/events-sender.ts';
import { PartnerEventsEndpoint } from '../../simulator/events-server.ts';
import { type IntercomSimulator, smartHomeTrust, startIntercomSimulator } from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { sql } from '../../src/db/sql.ts';
import { createTestDb } from '../support/test-db.ts';
import { drained, eventsWorld, recordFigures, scale, stamp, storedCounts, waitFor } from './support.ts';

const DOORS = ['door-1', 'door-2', 'door-3', 'door-4'];
const BURST = scale(2_000, 100_000);
const GAPPY = scale(1_000, 20_000);

let h: LocalStack;
let sim: IntercomSimulator;
let burster: PartnerClient;
let gappy: PartnerClient;
let field: PartnerClient;
const gappyLog = new PartnerEventLog({ seed: 2 });
const endpoint = new PartnerEventsEndpoint(gappyLog);

before(async () => {
  h = await startLocalStack({
    partners: [{ code: 'burst-vendor' }, { code: 'intercom-north' }, { code: 'field-vendor' }],
    db: await createTestDb(),
    // The intercom vendor runs its own server: the backfill endpoint smart-home calls (contract §9).
    document: async (ids, dataDir) => {
      sim = await startIntercomSimulator({
        identity: ids.get('intercom-north')!,
        ...(await smartHomeTrust(dataDir)),
        clientId: 'smart-home-at-north',
        doors: [],
        events: endpoint,
      });
      return eventsWorld(ids, [
        { code: 'burst-vendor', devices: DOORS },
        { code: 'intercom-north', devices: DOORS, sim },
        { code: 'field-vendor', devices: DOORS },
      ]);
    },
    env: {
      SMART_HOME_PARTNER_RATE_LIMIT: '100000',
      SMART_HOME_PARTNER_RATE_BURST: '100000',
      SMART_HOME_EVENTS_GAP_GRACE_MS: '200',
      SMART_HOME_EVENTS_BACKFILL_MIN_BACKOFF_MS: '100',
      SMART_HOME_EVENTS_BACKFILL_MAX_BACKOFF_MS: '500',
      SMART_HOME_EVENTS_PROCESSOR_INTERVAL_MS: '200',
    },
  });
  // What startServer does for a running instance: process stored events, move cursors, backfill gaps.
  h.runtime.app.events.start();
  burster = await h.client('burst-vendor', { connections: 8 });
  gappy = await h.client('intercom-north', { connections: 8 });
  field = await h.client('field-vendor', { connections: 4 });
});
after(async () => {
  await h?.runtime.app.events.stop();
  await h?.close();
  await sim?.stop();
});

test(`a burst of ${BURST.toLocaleString('en')} events, 10 % sent twice, shuffled: each stored and journaled once, none lost`, async () => {
  const log = new PartnerEventLog({ seed: 1 });
  const events = new DeviceFleet(log, { devices: DOORS, seed: 1, heartbeatEvery: 50 }).produce(BURST);
  const report = await deliverEvents(events, {
    client: burster,
    batchSize: 100,
    concurrency: 8,
    faults: { seed: 1, duplicates: 0.1, shuffleWindow: scale(500, 5_000) },
  });
  assert.equal(report.failed, 0, JSON.stringify(report.statuses));
  assert.equal(report.delivered, BURST);
  assert.ok(report.duplicatesSent > BURST * 0.08, `${report.duplicatesSent} duplicates sent`);
  assert.equal(report.accepted, BURST, 'smart-home accepted each event once');
  const c = await drained(h.runtime.db, 'burst-vendor', events);
  const heartbeats = events.filter((e) => e.type === 'device.heartbeat').length;
  assert.deepEqual(
    {
      inbox: c.inbox,
      lost: c.lost,
      unexpected: c.unexpected,
      doubled: c.doubled,
      unjournaled: c.unjournaled,
    },
    { inbox: BURST, lost: 0, unexpected: 0, doubled: 0, unjournaled: 0 },
  );
  assert.equal(c.journaled, BURST - heartbeats);
  await recordFigures(
    'faults:burst',
    [
      '### A burst with duplicates, shuffled',
      '',
      stamp(),
      '',
      '| sent (distinct) | duplicates sent | requests | accepted | answered duplicate | stored (inbox) | journaled | lost | doubled | events/s |',
      '|---|---|---|---|---|---|---|---|---|---|',
      `| ${report.delivered} | ${report.duplicatesSent} | ${report.requests} | ${report.accepted} | ${report.duplicatesAnswered} | ${c.inbox} | ${c.journaled} (+ ${heartbeats} heartbeats, not journaled one by one) | ${c.lost} | ${c.doubled} | ${report.eventsPerSecond} |`,
      '',
      `Batches of 100, 8 connections, shuffle window ${scale(500, 5_000)}, seed 1. Command: \`npm run test:faults\` (test/faults/delivery.test.ts).`,
    ].join('\n'),
  );
});

test(`the partner's backfill endpoint down while deliveries were dropped: once it is back, every gap is filled (${GAPPY.toLocaleString('en')} events)`, async () => {
  const events = new DeviceFleet(gappyLog, { devices: DOORS, seed: 2, heartbeatEvery: 50 }).produce(GAPPY);
  endpoint.set('down');
  // Every 20th event is never POSTed (the last one is, so the gaps are inside the sequence).
  const dropped = (seq: number) => seq % 20 === 7;
  const report = await deliverEvents(events, {
    client: gappy,
    batchSize: 100,
    concurrency: 4,
    faults: { seed: 2, drop: (e) => dropped(e.seq), shuffleWindow: 300 },
  });
  assert.equal(report.failed, 0);
  assert.equal(report.dropped, events.filter((e) => dropped(e.seq)).length);
  // While it is down smart-home keeps asking (and holds no backfilled event).
  await waitFor('a backfill attempt against the down partner', async () => endpoint.requests >= 2);
  const during = await storedCounts(h.runtime.db, 'intercom-north', events);
  assert.deepEqual([during.lost, during.viaBackfill], [report.dropped, 0]);
  const downRequests = endpoint.requests;

  endpoint.set('normal');
  const c = await drained(h.runtime.db, 'intercom-north', events);
  assert.deepEqual(
    {
      inbox: c.inbox,
      lost: c.lost,
      viaBackfill: c.viaBackfill,
      doubled: c.doubled,
      unjournaled: c.unjournaled,
    },
    { inbox: GAPPY, lost: 0, viaBackfill: report.dropped, doubled: 0, unjournaled: 0 },
  );
  assert.ok(endpoint.served >= report.dropped);
  await recordFigures(
    'faults:backfill',
    [
      '### The partner down, deliveries dropped, then backfill',
      '',
      stamp(),
      '',
      '| events in the log | delivered | dropped (never POSTed) | backfill requests while down | stored | via backfill | lost | doubled |',
      '|---|---|---|---|---|---|---|---|',
      `| ${GAPPY} | ${report.delivered} | ${report.dropped} | ${downRequests} | ${c.inbox} | ${c.viaBackfill} | ${c.lost} | ${c.doubled} |`,
      '',
      'Every 20th event dropped, the partner’s `GET /v1/events` cutting connections until the deliveries were done,',
      'then back. Command: `npm run test:faults` (test/faults/delivery.test.ts).',
    ].join('\n'),
  );
});

test('devices as they are — clocks behind and ahead, stale events, reboots, alerts, heartbeats — delivered late and in bursts: each stored once, the stale ones journaled as stale', async () => {
  const n = scale(600, 10_000);
  const fleet = new DeviceFleet(new PartnerEventLog({ seed: 3 }), {
    devices: [
      { id: 'door-1' },
      { id: 'door-2', clockSkewMs: -90_000 },
      { id: 'door-3', clockSkewMs: 20_000 },
      { id: 'door-4' },
    ],
    seed: 3,
    heartbeatEvery: 20,
    staleRatio: 0.05,
    staleAgeMs: 2 * 3600_000,
    rebootRatio: 0.01,
    statusRatio: 0.03,
  });
  const events = fleet.produce(n);
  const report = await deliverEvents(events, {
    client: field,
    batchSize: 25,
    concurrency: 4,
    faults: {
      seed: 3,
      duplicates: 0.05,
      shuffleWindow: 50,
      maxDelayMs: 30,
      burst: { batches: 4, pauseMs: 200 },
    },
  });
  assert.deepEqual([report.failed, report.delivered], [0, n]);
  const c = await drained(h.runtime.db, 'field-vendor', events);
  assert.deepEqual([c.inbox, c.lost, c.doubled, c.unjournaled], [n, 0, 0, 0]);

  // SMART_HOME_EVENTS_STALE_AFTER_S (300 s): only the events that happened 2 h before they were sent.
  const staleAfter = Date.now() - 300_000;
  const stale = events.filter((e) => e.type !== 'device.heartbeat' && Date.parse(e.occurredAt) < staleAfter);
  const reboots = events.filter((e) => e.status === 'reboot').length;
  assert.ok(stale.length > 0 && reboots > 0);
  const rows = await h.runtime.db.query<{ stale: string; result: string; n: number }>(
    sql`select details->>'stale' as stale, result, count(*)::int as n from journal j
        join partners p on p.id = j.partner_id
        where p.code = 'field-vendor' and j.action like 'event.%' group by 1, 2`,
  );
  const count = (pred: (r: { stale: string; result: string }) => boolean) =>
    rows.filter(pred).reduce((a, r) => a + Number(r.n), 0);
  assert.equal(
    count((r) => r.stale === 'true'),
    stale.length,
    'exactly the stale events are journaled stale',
  );
  assert.equal(
    count((r) => r.result === 'reboot'),
    reboots,
  );
});
