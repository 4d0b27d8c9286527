/**
 * The outbound partner channel under faults (issue 5), over real mTLS against the intercom simulator:
 * Retry-After of a 429/503 honoured (nothing sent before it, a door command that cannot wait fails at
 * once), the circuit breaker (fail fast, one probe after the cool-down), the bulkhead, and the retry
 * rule (an idempotent GET retried with backoff, a plain POST never).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { DeviceFleet, PartnerEventLog } from '../../simulator/events.ts';
import { PartnerEventsEndpoint } from '../../simulator/events-server.ts';
import { type IntercomSimulator, smartHomeTrust, startIntercomSimulator } from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import { sql } from '../../src/db/sql.ts';
import { loadSigningKey } from '../../src/keys/service-keys.ts';
import { registry } from '../../src/metrics/registry.ts';
import { OutboundError } from '../../src/outbound/errors.ts';
import { Outbound, type OutboundOptions } from '../../src/outbound/outbound.ts';
import { createTestDb } from '../support/test-db.ts';
import { intercomWorld } from '../support/world.ts';

const DOORS = ['door-ok', 'door-429', 'door-503', 'door-500', 'door-slow', 'door-post'];
let h: LocalStack;
let sim: IntercomSimulator;
let partnerId: string;
let residentId: string;
let clientTls: { cert: string; key: string };
let signingKey: Awaited<ReturnType<typeof loadSigningKey>>;
const log = new PartnerEventLog({ seed: 5 });
const endpoint = new PartnerEventsEndpoint(log);
const made: Outbound[] = [];

before(async () => {
  new DeviceFleet(log, { devices: DOORS, seed: 5, heartbeatEvery: 10 }).produce(20);
  h = await startLocalStack({
    partners: [{ code: 'intercom-north' }],
    db: await createTestDb(),
    document: async (ids, dataDir) => {
      sim = await startIntercomSimulator({
        identity: ids.get('intercom-north')!,
        ...(await smartHomeTrust(dataDir)),
        clientId: 'smart-home-at-north',
        doors: DOORS,
        events: endpoint,
      });
      return intercomWorld(ids, sim, DOORS);
    },
  });
  partnerId = (await h.runtime.db.one<{ id: string }>(
    sql`select id from partners where code = 'intercom-north'`,
  ))!.id;
  residentId = (await h.runtime.db.one<{ id: string }>(sql`select id from residents where ref = 'anna'`))!.id;
  clientTls = {
    cert: await readFile(path.join(h.dataDir, 'pki', 'service-client.crt'), 'utf8'),
    key: await readFile(path.join(h.dataDir, 'pki', 'service-client.key'), 'utf8'),
  };
  signingKey = await loadSigningKey(path.join(h.dataDir, 'keys', 'response-signing.jwk'), 'Ed25519');
});
after(async () => {
  await Promise.allSettled(made.map((o) => o.close()));
  await h?.close();
  await sim?.stop();
});

/** A fresh channel (its own breaker, bulkhead and Retry-After gate) with these options. */
function outbound(options: Partial<OutboundOptions> = {}): Outbound {
  const o = new Outbound({
    db: h.runtime.db,
    cipher: h.runtime.cipher,
    directory: () => h.runtime.app.directory(),
    clientTls,
    signingKey,
    options: {
      connectTimeoutMs: 2000,
      timeoutMs: 5000,
      connections: 4,
      tokenRefreshMarginSeconds: 60,
      retryDelayMs: 20,
      doorCommandTtlMs: 10_000,
      ...options,
    },
  });
  made.push(o);
  return o;
}

const open = (o: Outbound, door: string) =>
  o.openDoor({ partner: partnerId, doorExternalId: door, residentId });

async function metric(name: string): Promise<string> {
  return registry.getSingleMetricAsString(name);
}

test('429 with a Retry-After (HTTP-date) past expiresAt: the command fails at once, and nothing reaches the partner before then', async () => {
  const o = outbound();
  sim.setDoor('door-429', {
    mode: 'throttle',
    retryAfter: new Date(Date.now() + 30_000).toUTCString(),
  });
  const before = sim.doorRequests;
  const r = await open(o, 'door-429');
  assert.deepEqual([r.status, r.reason, r.httpStatus, r.attempts], ['partner_error', 'throttled', 429, 1]);
  // Any door of that partner, through the same channel: held back without a request.
  const held = await open(o, 'door-ok');
  assert.deepEqual([held.status, held.reason, held.attempts], ['partner_error', 'throttled', 0]);
  assert.equal(sim.doorRequests, before + 1, 'one request: the throttled one');
  assert.match(
    await metric('smart_home_outbound_throttled_total'),
    new RegExp(`partner="${partnerId}",status="429"\\} [1-9]`),
  );
  sim.setDoor('door-429', { mode: 'normal' });
});

test('503 with a Retry-After within expiresAt: the same command waits it out and is delivered once', async () => {
  const o = outbound();
  sim.setDoor('door-503', { mode: 'unavailable', retryAfter: '1' });
  setTimeout(() => sim.setDoor('door-503', { mode: 'normal' }), 300);
  const t0 = Date.now();
  const r = await open(o, 'door-503');
  assert.equal(r.status, 'opened');
  assert.equal(r.attempts, 2);
  assert.ok(Date.now() - t0 >= 900, 'the second attempt came after the Retry-After');
  assert.equal(sim.openings.filter((x) => x.commandId === r.command.commandId).length, 1);
});

test('circuit breaker: opens after N failures, fails fast, lets one probe through after the cool-down', async () => {
  const o = outbound({ breakerFailures: 3, breakerCooldownMs: 300 });
  sim.setDoor('door-500', { mode: 'error' });
  for (let i = 0; i < 3; i++) {
    const r = await open(o, 'door-500');
    assert.deepEqual([r.status, r.reason, r.httpStatus], ['partner_error', 'http_status', 500]);
  }
  const gauge = new RegExp(`smart_home_outbound_breaker_state\\{partner="${partnerId}"\\} (\\d)`);
  assert.equal(gauge.exec(await metric('smart_home_outbound_breaker_state'))?.[1], '2', 'open');
  const before = sim.doorRequests;
  const fast = await open(o, 'door-ok');
  assert.deepEqual([fast.status, fast.reason, fast.attempts], ['partner_error', 'circuit_open', 0]);
  assert.equal(sim.doorRequests, before, 'nothing sent while open');
  // A generic call fails fast too, with a clear error.
  await assert.rejects(
    o.send(partnerId, 'GET', '/v1/events?afterSeq=0&limit=1', { scope: 'events:read' }),
    (e: unknown) => e instanceof OutboundError && e.code === 'ERR_OUTBOUND_CIRCUIT_OPEN',
  );
  await new Promise((r) => setTimeout(r, 350));
  const probe = await open(o, 'door-ok');
  assert.equal(probe.status, 'opened', 'the probe succeeded');
  assert.equal(gauge.exec(await metric('smart_home_outbound_breaker_state'))?.[1], '0', 'closed again');
  assert.equal((await open(o, 'door-ok')).status, 'opened');
  sim.setDoor('door-500', { mode: 'normal' });
});

test('bulkhead: one call in flight, one queued, the next fails at once', async () => {
  const o = outbound({ maxConcurrent: 1, maxQueued: 1 });
  await o.channel(partnerId).token(); // the token request is not part of the race
  sim.setDoor('door-slow', { mode: 'slow', slowMs: 400 });
  const results = await Promise.all([open(o, 'door-slow'), open(o, 'door-slow'), open(o, 'door-slow')]);
  const outcomes = results.map((r) => `${r.status}/${r.reason ?? ''}`).sort();
  assert.deepEqual(outcomes, ['opened/', 'opened/', 'partner_error/overloaded']);
  assert.equal(results.find((r) => r.reason === 'overloaded')?.attempts, 0, 'never sent');
  assert.match(
    await metric('smart_home_outbound_refused_total'),
    new RegExp(`partner="${partnerId}",reason="bulkhead_full"\\} [1-9]`),
  );
  sim.setDoor('door-slow', { mode: 'normal' });
});

test('retries: an idempotent GET is retried with backoff up to the attempts; a POST is sent once', async () => {
  const o = outbound({ retryAttempts: 3, breakerFailures: 100 });
  endpoint.set('unavailable', { retryAfterS: 0 });
  let before = endpoint.requests;
  const retries = async () =>
    Number(
      new RegExp(`smart_home_outbound_retries_total\\{partner="${partnerId}"\\} (\\d+)`).exec(
        await metric('smart_home_outbound_retries_total'),
      )?.[1] ?? 0,
    );
  const retried = await retries();
  const a = await o.send(partnerId, 'GET', '/v1/events?afterSeq=0&limit=5', { scope: 'events:read' });
  assert.equal(a.status, 503, 'the last answer, once the attempts are spent');
  assert.equal(endpoint.requests - before, 3);
  assert.equal((await retries()) - retried, 2, 'two retries counted');

  endpoint.set('down');
  before = endpoint.requests;
  await assert.rejects(
    o.send(partnerId, 'GET', '/v1/events?afterSeq=0&limit=5', { scope: 'events:read' }),
    (e: unknown) => e instanceof OutboundError && e.code === 'ERR_OUTBOUND_CONNECT',
  );
  assert.equal(endpoint.requests - before, 3, 'a cut connection is retried too');

  endpoint.set('normal');
  const ok = await o.send(partnerId, 'GET', '/v1/events?afterSeq=0&limit=5', { scope: 'events:read' });
  assert.equal(ok.status, 200);

  sim.setDoor('door-post', { mode: 'unavailable', retryAfter: '0' });
  const requests = sim.doorRequests;
  const post = await o.send(partnerId, 'POST', '/v1/doors/door-post/open', {
    scope: 'doors:open',
    body: { not: 'idempotent here' },
  });
  assert.equal(post.status, 503);
  assert.equal(sim.doorRequests - requests, 1, 'a POST not marked idempotent is never retried');
  sim.setDoor('door-post', { mode: 'normal' });
});
