/**
 * Issue 5: one partner flooding at 10× its rate limit must not starve another. The flooder is the
 * simulator's CLI (`simulator events send`, its own process, no retries) sending 10× its sustained limit;
 * the other partner sends at half of its own limit from this process, once alone (its unloaded p99) and
 * once during the flood.
 *
 * A latency ratio is timing-sensitive: the short form (CI) asserts the mechanism — the flooder gets 429s,
 * the other partner gets no 429/503 and every one of its requests succeeds — and reports the ratio; the
 * long form (`npm run test:faults`) also asserts p99 under flood ≤ 2× unloaded and writes the figures.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DeviceFleet, PartnerEventLog } from '../../simulator/events.ts';
import { type DeliveryReport, deliverEvents } from '../../simulator/events-sender.ts';
import { saveIdentity } from '../../simulator/identity.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { sql } from '../../src/db/sql.ts';
import { createTestDb } from '../support/test-db.ts';
import { drained, eventsWorld, LONG, recordFigures, scale, stamp, waitFor } from './support.ts';

/** Per partner, requests per second (and the burst). */
const LIMIT = 6;
const SECONDS = scale(3, 60);
const DOORS = ['door-1', 'door-2'];

let h: LocalStack;
let victim: PartnerClient;
const victimLog = new PartnerEventLog({ seed: 3 });
const victimFleet = new DeviceFleet(victimLog, { devices: DOORS, seed: 3 });

before(async () => {
  h = await startLocalStack({
    partners: [{ code: 'quiet-vendor' }, { code: 'flood-vendor' }, { code: 'eager-vendor' }],
    db: await createTestDb(),
    document: (ids) =>
      eventsWorld(ids, [
        { code: 'quiet-vendor', devices: DOORS },
        { code: 'flood-vendor', devices: ['flood-door'] },
        { code: 'eager-vendor', devices: ['eager-door'] },
      ]),
    env: { SMART_HOME_PARTNER_RATE_LIMIT: String(LIMIT), SMART_HOME_PARTNER_RATE_BURST: String(LIMIT) },
  });
  h.runtime.app.events.start();
  victim = await h.client('quiet-vendor', { connections: 4 });
});
after(async () => {
  await h?.runtime.app.events.stop();
  await h?.close();
});

/** The quiet partner: batches of 1 at half its limit for SECONDS. */
const quietRun = (n: number) =>
  deliverEvents(victimFleet.produce(n), {
    client: victim,
    batchSize: 1,
    concurrency: 4,
    requestsPerSecond: LIMIT / 2,
    faults: { seed: n },
    retry: { maxAttempts: 1 },
  });

/** The flooder, as the simulator's CLI in its own process: 10× the limit, no retries. */
async function flood(seconds: number): Promise<{ report: DeliveryReport; code: number | null }> {
  const home = path.join(h.dataDir, 'simulator');
  await saveIdentity(path.join(home, 'flood-vendor'), h.identities.get('flood-vendor')!);
  const keyFile = path.join(h.dataDir, 'smart-home.pub.jwk');
  await writeFile(keyFile, JSON.stringify(h.smartHomeKey));
  const rate = LIMIT * 10;
  const child = spawn(
    process.execPath,
    [
      new URL('../../simulator/cli.ts', import.meta.url).pathname,
      ...['--home', home, '--url', h.partnerUrl, '--smart-home-key', keyFile],
      ...['--ca', path.join(h.dataDir, 'pki', 'service-ca.crt')],
      ...['events', 'send', 'flood-vendor', '--devices', 'flood-door', '--count', String(rate * seconds)],
      ...['--batch', '1', '--rate', String(rate), '--concurrency', '32', '--max-attempts', '1'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  const last = out.trim().split('\n').at(-1);
  if (!last) throw new Error(`the flooder printed nothing (exit ${code}): ${err}`);
  return { report: JSON.parse(last) as DeliveryReport, code };
}

test(`a partner flooding at 10× its limit gets 429s; another partner's requests all succeed, none 429/503 (${SECONDS} s)`, async (t) => {
  await quietRun(LIMIT / 2); // warm-up: connections, token, caches
  const alone = await quietRun(Math.round((LIMIT / 2) * SECONDS));
  assert.deepEqual(alone.statuses, { '200': alone.requests }, 'alone, every request succeeds');

  const flooding = flood(SECONDS + 4);
  // Measure under the flood once it runs at its pace: its process started, its connections open (their
  // TLS handshakes are a one-off burst, not the flood), its first events stored.
  const floodDb = (await h.runtime.db.one<{ id: string }>(
    sql`select id from partners where code = 'flood-vendor'`,
  ))!.id;
  await waitFor(
    'the flood under way',
    async () =>
      Number(
        (await h.runtime.db.one<{ n: string }>(
          sql`select count(*)::text as n from event_inbox where partner_id = ${floodDb}::uuid`,
        ))!.n,
      ) > 0,
  );
  await new Promise((r) => setTimeout(r, 1000));
  const loaded = await quietRun(Math.round((LIMIT / 2) * SECONDS));
  const flooder = await flooding;

  assert.ok(
    (flooder.report.statuses['429'] ?? 0) > flooder.report.requests / 2,
    JSON.stringify(flooder.report),
  );
  assert.equal(flooder.code, 1, 'the flooder reports the events it could not deliver');
  assert.deepEqual(
    loaded.statuses,
    { '200': loaded.requests },
    'no 429, no 503, no error for the quiet partner',
  );
  assert.equal(loaded.failed, 0);
  await drained(h.runtime.db, 'quiet-vendor', victimLog.all());

  const ratio = Math.round((loaded.ackP99ms / Math.max(alone.ackP99ms, 0.01)) * 100) / 100;
  t.diagnostic(
    `quiet partner p99: alone ${alone.ackP99ms} ms, under flood ${loaded.ackP99ms} ms (×${ratio})`,
  );
  const fl = flooder.report;
  await recordFigures(
    'faults:flood',
    [
      '### One partner flooding at 10× its rate limit',
      '',
      stamp(),
      '',
      `Limit ${LIMIT} requests/s per partner (burst ${LIMIT}). The flooder (\`simulator events send\`, its own process, no retries) at ${LIMIT * 10}/s;`,
      `the quiet partner at ${LIMIT / 2}/s, batches of 1, ${SECONDS} s alone, then ${SECONDS} s under the flood.`,
      '',
      '| partner | requests | statuses | p50 ms | p99 ms |',
      '|---|---|---|---|---|',
      `| flooder | ${fl.requests} | ${Object.entries(fl.statuses)
        .map(([k, v]) => `${k}×${v}`)
        .join(' ')} | ${fl.ackP50ms} | ${fl.ackP99ms} |`,
      `| quiet, alone | ${alone.requests} | 200×${alone.statuses['200'] ?? 0} | ${alone.ackP50ms} | ${alone.ackP99ms} |`,
      `| quiet, under flood | ${loaded.requests} | 200×${loaded.statuses['200'] ?? 0} | ${loaded.ackP50ms} | ${loaded.ackP99ms} |`,
      '',
      `p99 under flood / alone: **×${ratio}** (bound: ×2). Command: \`npm run test:faults\` (test/faults/flood.test.ts).`,
    ].join('\n'),
  );
  // The figures are written first: a long run that misses the bound still records what it measured.
  if (LONG) assert.ok(ratio <= 2, `p99 under flood ${loaded.ackP99ms} ms > 2 × ${alone.ackP99ms} ms`);
});

test('a partner over its limit retries through its 429s (Retry-After) with the same events: all stored once', async () => {
  const client = await h.client('eager-vendor', { connections: 4 });
  const log = new PartnerEventLog({ seed: 6 });
  const events = new DeviceFleet(log, { devices: ['eager-door'], seed: 6 }).produce(LIMIT * 3);
  const report = await deliverEvents(events, { client, batchSize: 1, concurrency: 4, faults: { seed: 6 } });
  assert.ok(
    (report.statuses['429'] ?? 0) > 0,
    `beyond its burst it was refused: ${JSON.stringify(report.statuses)}`,
  );
  assert.equal(report.failed, 0);
  assert.equal(report.delivered, events.length);
  const c = await drained(h.runtime.db, 'eager-vendor', events);
  assert.deepEqual([c.inbox, c.lost, c.doubled], [events.length, 0, 0]);
});
