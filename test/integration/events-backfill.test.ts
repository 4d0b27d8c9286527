/**
 * Contract §9 gaps: a seq missing past the grace period is asked of the partner
 * (`GET {partnerBase}/v1/events?afterSeq=&limit=`, signed both ways, scope events:read) from the
 * simulator's log, stored through the delivery path (via backfill, idempotent with a late delivery),
 * retried with backoff while the partner is down, never run twice at once, and recorded without a
 * hot loop for a partner that has no endpoint. Operators see the cursors at GET /admin/v1/events/cursors.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { PartnerEventLog } from '../../simulator/events.ts';
import { PartnerEventsEndpoint } from '../../simulator/events-server.ts';
import { type IntercomSimulator, smartHomeTrust, startIntercomSimulator } from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { ResidentApp } from '../../simulator/resident-app.ts';
import { sql } from '../../src/db/sql.ts';
import type { PartnerEvent } from '../../src/events/model.ts';
import { cursorsOverview } from '../../src/events/routes.ts';
import { createOperator } from '../../src/identity/operators.ts';
import { writeOAuthClients } from '../support/oauth-clients.ts';
import { createTestDb } from '../support/test-db.ts';
import { intercomWorld } from '../support/world.ts';

const DOORS = ['door-1', 'door-2'];
const WEB_REDIRECT = 'https://console.example/callback';
const CONSOLE_SECRET = 'console-secret-console-secret-console-secret';
let h: LocalStack;
let sim: IntercomSimulator;
let north: PartnerClient;
let other: PartnerClient;
let northId: string;
let otherId: string;
let clientsDir: string;
const log = new PartnerEventLog({ seed: 9 });
const otherLog = new PartnerEventLog({ seed: 10 });
const endpoint = new PartnerEventsEndpoint(log);

before(async () => {
  clientsDir = await mkdtemp(path.join(tmpdir(), 'smart-home-events-'));
  const clientsFile = await writeOAuthClients(clientsDir, [
    {
      clientId: 'operator-console',
      role: 'operator',
      redirectUris: [WEB_REDIRECT],
      clientSecret: CONSOLE_SECRET,
    },
  ]);
  h = await startLocalStack({
    partners: [{ code: 'intercom-north' }, { code: 'intercom-other' }],
    db: await createTestDb(),
    env: {
      SMART_HOME_OAUTH_CLIENTS_FILE: clientsFile,
      SMART_HOME_EVENTS_GAP_GRACE_MS: '0',
      SMART_HOME_EVENTS_BACKFILL_LIMIT: '7',
      SMART_HOME_EVENTS_BACKFILL_MIN_BACKOFF_MS: '60000',
      SMART_HOME_EVENTS_BACKFILL_MAX_BACKOFF_MS: '600000',
      // One attempt per call: the backfill's own backoff is what this suite observes.
      SMART_HOME_OUTBOUND_RETRY_ATTEMPTS: '1',
    },
    document: async (ids, dataDir) => {
      sim = await startIntercomSimulator({
        identity: ids.get('intercom-north')!,
        ...(await smartHomeTrust(dataDir)),
        clientId: 'smart-home-at-north',
        doors: DOORS,
        events: endpoint,
      });
      const doc = intercomWorld(ids, sim, DOORS);
      const o = ids.get('intercom-other')!;
      // A vendor without an outbound endpoint: smart-home cannot ask it for anything.
      doc.partners!.push({
        code: 'intercom-other',
        name: 'Intercom vendor without an API',
        scopes: ['events:write'],
        complexes: ['north'],
        networks: ['127.0.0.1/32'],
        certificates: [o.thumbprint],
        signingKeys: [o.signing.publicJwk as never],
        encryptionKeys: [o.encryption.publicJwk as never],
      });
      doc.devices!.push({
        partner: 'intercom-other',
        externalId: 'door-x',
        kind: 'door',
        name: 'X',
        complex: 'north',
      });
      return doc;
    },
  });
  north = await h.client('intercom-north');
  other = await h.client('intercom-other');
  const id = async (code: string) =>
    (await h.runtime.db.one<{ id: string }>(sql`select id::text as id from partners where code = ${code}`))!
      .id;
  [northId, otherId] = [await id('intercom-north'), await id('intercom-other')];
});
after(async () => {
  await h?.close();
  await sim?.stop();
  await rm(clientsDir, { recursive: true, force: true });
});

const post = (events: PartnerEvent[], c = north) =>
  c.send<{ accepted: number; duplicates: number }>('POST', '/partner/v1/events', {
    scope: 'events:write',
    body: { events },
  });
const produce = (n: number, l = log, device = 'door-1') =>
  Array.from({ length: n }, (_, i) =>
    l.append(
      i % 3 === 2 ? { type: 'device.heartbeat', device } : { type: 'access.denied', device, method: 'face' },
    ),
  );
const cursor = async (partnerId: string) =>
  (await cursorsOverview(h.runtime.db)).cursors.find((c) => c.partnerId === partnerId);
const inbox = (partnerId: string) =>
  h.runtime.db.query<{ seq: number; via: string }>(
    sql`select seq, via from event_inbox where partner_id = ${partnerId}::uuid order by seq`,
  );

test('a gap is filled from the partner’s log, page by page, through the delivery path', async () => {
  const events = produce(30);
  const missing = new Set([10, 11, 12, 13, 14, 25]);
  const delivered = events.filter((e) => !missing.has(e.seq));
  assert.equal((await post(delivered.slice(0, 12))).status, 200);
  assert.equal((await post(delivered.slice(12))).status, 200);
  await h.runtime.app.events.advance(northId);
  const gap = await cursor(northId);
  assert.equal(gap?.contiguous, 9);
  assert.equal(gap?.maxSeen, 30);
  assert.deepEqual([gap?.gap?.afterSeq, gap?.gap?.upToSeq], [9, 30]);

  const asked = endpoint.asked.length;
  const [outcome] = await h.runtime.app.events.backfillDue();
  assert.deepEqual(outcome, { partnerId: northId, outcome: 'filled', stored: 6 });
  // limit 7 from afterSeq 9: 10–16, then from 24 (contiguous after the first page): 25–30.
  assert.deepEqual(endpoint.asked.slice(asked), [9, 24]);
  const rows = await inbox(northId);
  assert.deepEqual(
    rows.map((r) => r.seq),
    events.map((e) => e.seq),
  );
  assert.deepEqual(
    rows.filter((r) => r.via === 'backfill').map((r) => r.seq),
    [...missing],
  );
  const filled = await cursor(northId);
  assert.deepEqual([filled?.contiguous, filled?.maxSeen, filled?.gap], [30, 30, null]);
  assert.equal(filled?.backfill.attempts, 0);

  // Processed like delivered events, their journal entries saying how they came.
  await h.runtime.app.events.processAll();
  const via = await h.runtime.db.query<{ via: string }>(
    sql`select details->>'via' as via from journal
        where action like 'event.%' and details->>'eventId' = any(${events.filter((e) => missing.has(e.seq)).map((e) => e.eventId)}::text[])`,
  );
  assert.ok(via.length > 0 && via.every((r) => r.via === 'backfill'));

  // The late normal delivery of what the backfill fetched: duplicates, nothing stored twice.
  const late = await post(events.filter((e) => missing.has(e.seq)));
  assert.deepEqual(late.body, { accepted: 0, duplicates: 6 });
  assert.equal((await inbox(northId)).length, 30);
});

test('a partner that is down: the attempt is recorded with a next time, then the gap is filled once it is back', async () => {
  const events = produce(5);
  assert.equal((await post(events.slice(2))).status, 200);
  await h.runtime.app.events.advance(northId);
  endpoint.set('down');
  const [failed] = await h.runtime.app.events.backfillDue();
  assert.equal(failed?.outcome, 'failed');
  const c = await cursor(northId);
  assert.equal(c?.backfill.attempts, 1);
  assert.ok(c?.backfill.lastError, 'the error is recorded');
  const next = Date.parse(c!.backfill.nextAttemptAt!);
  assert.ok(next >= Date.now() + 25_000, 'backoff of at least half the minimum (jitter)');
  assert.deepEqual(await h.runtime.app.events.backfillDue(), [], 'not due again before its time');

  endpoint.set('normal');
  // Operators (or the schedule once due) retry it; forced here rather than waiting out the backoff.
  const [ok] = await h.runtime.app.events.backfillDue(northId);
  assert.equal(ok?.outcome, 'filled');
  const done = await cursor(northId);
  assert.deepEqual(
    [done?.contiguous, done?.gap, done?.backfill.attempts, done?.backfill.lastError],
    [events.at(-1)!.seq, null, 0, null],
  );
});

test('one backfill per partner at a time: a second caller finds the lease taken', async () => {
  const events = produce(4);
  assert.equal((await post(events.slice(1))).status, 200);
  await h.runtime.app.events.advance(northId);
  endpoint.set('slow', { slowMs: 300 });
  try {
    const [a, b] = await Promise.all([
      h.runtime.app.events.backfillDue(northId),
      new Promise((r) => setTimeout(r, 50)).then(() => h.runtime.app.events.backfillDue(northId)),
    ]);
    assert.deepEqual(
      [a.length, b.length],
      [1, 0],
      'the second call ran nothing while the first held the partner',
    );
    assert.equal(a[0]?.outcome, 'filled');
  } finally {
    endpoint.set('normal');
  }
});

test('a partner without an outbound endpoint: the gap is recorded and reported, retried only at the longest backoff', async () => {
  const events = produce(3, otherLog, 'door-x');
  assert.equal((await post([events[2]!], other)).status, 200);
  await h.runtime.app.events.advance(otherId);
  const [r] = await h.runtime.app.events.backfillDue();
  assert.equal(r?.outcome, 'no-endpoint');
  const c = await cursor(otherId);
  assert.deepEqual([c?.contiguous, c?.maxSeen], [0, 3]);
  assert.match(c?.backfill.lastError ?? '', /no outbound endpoint/);
  assert.ok(Date.parse(c!.backfill.nextAttemptAt!) >= Date.now() + 590_000);
  assert.deepEqual(await h.runtime.app.events.backfillDue(), []);
  // The partner delivers what was missing after all: the gap closes and its backfill state clears.
  assert.deepEqual((await post(events.slice(0, 2), other)).body, { accepted: 2, duplicates: 0 });
  await h.runtime.app.events.advance(otherId);
  const closed = await cursor(otherId);
  assert.deepEqual([closed?.contiguous, closed?.gap, closed?.backfill.lastError], [3, null, null]);
});

test('GET /admin/v1/events/cursors: the same overview for an operator; no token, no answer', async () => {
  const password = 'correct horse battery staple';
  const { otpauthUri } = await createOperator(
    { db: h.runtime.db, cipher: h.runtime.cipher },
    'duty.events',
    password,
  );
  const op = new ResidentApp({
    issuer: h.publicUrl,
    ca: h.serverCa,
    clientId: 'operator-console',
    redirectUri: WEB_REDIRECT,
    clientSecret: CONSOLE_SECRET,
  });
  try {
    await op.signInOperator('duty.events', password, new URL(otpauthUri).searchParams.get('secret')!);
    const res = await op.admin<Awaited<ReturnType<typeof cursorsOverview>>>('GET', '/events/cursors');
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const expected = await cursorsOverview(h.runtime.db);
    assert.deepEqual(
      res.body.cursors.map((c) => [c.partnerId, c.contiguous, c.maxSeen]),
      expected.cursors.map((c) => [c.partnerId, c.contiguous, c.maxSeen]),
    );
    assert.ok(res.body.cursors.some((c) => c.partnerId === northId));
  } finally {
    await op.close();
  }
  const agent = new Agent({ connect: { ca: h.serverCa } });
  try {
    const res = await request(`${h.publicUrl}/admin/v1/events/cursors`, { dispatcher: agent });
    await res.body.dump();
    assert.equal(res.statusCode, 401);
  } finally {
    await agent.close();
  }
});
