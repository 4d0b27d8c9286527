/**
 * Issue 5: PostgreSQL restarted in the middle of a load. smart-home must recover by itself (its pool
 * drops the dead connections and opens new ones), answer what it could not store with an error, and
 * the partner's retries (same eventIds, Standard Webhooks) make up the rest: nothing lost, nothing
 * doubled, counted in the inbox and the journal afterwards.
 *
 * Real PostgreSQL only (DATABASE_URL set; CI's second stage): the PGlite stage's database is embedded in
 * the test process and cannot go down, so there this file registers no test. Restarts the local cluster
 * with `pg_ctlcluster --skip-systemctl-redirect <version> main restart` (the CI machine's own server).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { DeviceFleet, PartnerEventLog } from '../../simulator/events.ts';
import { deliverEvents } from '../../simulator/events-sender.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { createTestDb } from '../support/test-db.ts';
import { drained, eventsWorld, recordFigures, scale, stamp } from './support.ts';

const run = promisify(execFile);
const DOORS = ['door-1', 'door-2', 'door-3'];
const N = scale(3_000, 30_000);

async function restartPostgres(): Promise<number> {
  const [version] = await readdir('/etc/postgresql');
  const t0 = performance.now();
  await run('pg_ctlcluster', ['--skip-systemctl-redirect', version!, 'main', 'restart'], { timeout: 60_000 });
  return Math.round(performance.now() - t0);
}

if (process.env['DATABASE_URL']) {
  let h: LocalStack;
  let client: PartnerClient;

  before(async () => {
    h = await startLocalStack({
      partners: [{ code: 'pg-vendor' }],
      db: await createTestDb(),
      document: (ids) => eventsWorld(ids, [{ code: 'pg-vendor', devices: DOORS }]),
      env: {
        SMART_HOME_PARTNER_RATE_LIMIT: '100000',
        SMART_HOME_PARTNER_RATE_BURST: '100000',
        SMART_HOME_EVENTS_PROCESSOR_INTERVAL_MS: '200',
      },
    });
    h.runtime.app.events.start();
    client = await h.client('pg-vendor', { connections: 4 });
  });
  after(async () => {
    await h?.runtime.app.events.stop();
    await h?.close();
  });

  test(`PostgreSQL restarted mid-load (${N.toLocaleString('en')} events; real PostgreSQL only — PGlite is embedded and cannot go down): recovers by itself, retries make up the rest, nothing lost or doubled`, async () => {
    const log = new PartnerEventLog({ seed: 4 });
    const events = new DeviceFleet(log, { devices: DOORS, seed: 4, heartbeatEvery: 40 }).produce(N);
    const batches = Math.ceil(N / 20);
    // Spread over ~4 s (long: ~20 s), so the restart lands in the middle of the load.
    const seconds = scale(4, 20);
    const delivery = deliverEvents(events, {
      client,
      batchSize: 20,
      concurrency: 4,
      requestsPerSecond: batches / seconds,
      faults: { seed: 4, duplicates: 0.05 },
      retry: { maxAttempts: 60, baseMs: 100, maxMs: 2_000 },
    });
    await new Promise((r) => setTimeout(r, (seconds * 1000) / 3));
    const restartMs = await restartPostgres();
    const report = await delivery;

    assert.equal(report.failed, 0, JSON.stringify(report.statuses));
    assert.equal(report.delivered, N);
    const refused = report.requests - (report.statuses['200'] ?? 0);
    assert.ok(refused > 0, `the restart hit the load: ${JSON.stringify(report.statuses)}`);
    const c = await drained(h.runtime.db, 'pg-vendor', events);
    assert.deepEqual(
      {
        inbox: c.inbox,
        lost: c.lost,
        unexpected: c.unexpected,
        doubled: c.doubled,
        unjournaled: c.unjournaled,
      },
      { inbox: N, lost: 0, unexpected: 0, doubled: 0, unjournaled: 0 },
    );
    await recordFigures(
      'faults:postgres-restart',
      [
        '### PostgreSQL restarted mid-load',
        '',
        stamp(),
        '',
        '| events | duplicates sent | requests | answered other than 200 (retried) | statuses | restart took | stored | journaled | lost | doubled |',
        '|---|---|---|---|---|---|---|---|---|---|',
        `| ${N} | ${report.duplicatesSent} | ${report.requests} | ${refused} | ${Object.entries(
          report.statuses,
        )
          .map(([k, v]) => `${k}×${v}`)
          .join(' ')} | ${restartMs} ms | ${c.inbox} | ${c.journaled} | ${c.lost} | ${c.doubled} |`,
        '',
        `Batches of 20, 4 connections, spread over ${seconds} s; \`pg_ctlcluster … restart\` a third of the way in.`,
        'Command: `DATABASE_URL=… REDIS_URL=… npm run test:faults` (test/faults/postgres-restart.test.ts).',
      ].join('\n'),
    );
  });
}
