/**
 * The partner listener under load (issue 5), over real mTLS: load shedding driven by a fixed event-loop
 * lag (never by timing) — 503 overloaded with Retry-After, signed, before token and signature work,
 * the partner far over its fair share shed first — and `/metrics` on the public listener behind its
 * bearer token, with HTTP, 429 and 503 counters per route pattern and partner.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { sql } from '../../src/db/sql.ts';
import { type Harness, startHarness } from '../support/harness.ts';
import { PLATES, standardWorld } from '../support/world.ts';

const METRICS_TOKEN = 'metrics-token-for-tests-0123456789abcdef';
let h: Harness;
let north: PartnerClient;
let south: PartnerClient;
let agent: Agent;
let lag = 0;
let northId: string;

before(async () => {
  h = await startHarness({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => standardWorld(ids),
    env: {
      SMART_HOME_SHED_LAG_MS: '100',
      SMART_HOME_SHED_RETRY_AFTER_S: '3',
      SMART_HOME_SHED_FAIR_SHARE_FACTOR: '4',
      SMART_HOME_PARTNER_RATE_LIMIT: '1000',
      SMART_HOME_PARTNER_RATE_BURST: '1000',
      SMART_HOME_METRICS_TOKEN: METRICS_TOKEN,
    },
  });
  h.runtime.app.loadShedder.useProbe({ lagMs: () => lag });
  north = await h.client('barrier-north');
  south = await h.client('barrier-south', { localAddress: '127.0.0.3' });
  agent = new Agent({ connect: { ca: h.serverCa } });
  northId = (await h.runtime.db.one<{ id: string }>(
    sql`select id from partners where code = 'barrier-north'`,
  ))!.id;
});
after(async () => {
  await agent?.close();
  await h?.close();
});

const problemType = (r: { body: unknown }) => (r.body as { type?: string }).type;

async function scrape(token = METRICS_TOKEN) {
  const res = await request(`${h.publicUrl}/metrics`, {
    dispatcher: agent,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}

test('no lag: served; a lagging loop sheds with 503 overloaded, Retry-After, signed, before the token check', async () => {
  await north.token('barrier:decide');
  await south.token('barrier:decide');
  assert.equal((await north.barrierRead('gate-1', PLATES.anna)).status, 200);
  lag = 1000; // ≥ twice the threshold: everyone is shed
  try {
    const shed = await south.barrierRead('gate-s', PLATES.boris);
    assert.equal(shed.status, 503);
    assert.equal(problemType(shed), 'urn:smart-home:problem:overloaded');
    assert.equal(shed.headers['retry-after'], '3');
    assert.equal(shed.signatureValid, true, 'signed like every partner-zone answer');
    // A request that would fail the token check gets the 503: shedding comes first.
    const bogus = await north.send('POST', '/partner/v1/barrier/decisions', {
      scope: 'barrier:decide',
      token: 'not-a-token',
      body: {},
    });
    assert.equal(bogus.status, 503);
    // The token endpoint is shed too (its answers are OAuth's, unsigned).
    const token = await request(`${h.partnerUrl}/oauth/token`, {
      method: 'POST',
      dispatcher: north.agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&client_id=barrier-north&scope=barrier%3Adecide',
    });
    assert.deepEqual([token.statusCode, token.headers['retry-after']], [503, '3']);
    await token.body.dump();
  } finally {
    lag = 0;
  }
  assert.equal((await south.barrierRead('gate-s', PLATES.boris)).status, 200, 'served again');
});

test('moderate lag: only the partner far over its fair share is shed', async () => {
  // North floods (40 requests), South sends a few.
  await Promise.all(Array.from({ length: 40 }, () => north.barrierRead('gate-1', PLATES.anna)));
  lag = 150; // over the threshold, under twice it
  try {
    const flooding = await north.barrierRead('gate-1', PLATES.anna);
    assert.equal(flooding.status, 503);
    assert.equal(problemType(flooding), 'urn:smart-home:problem:overloaded');
    const quiet = await south.barrierRead('gate-s', PLATES.boris);
    assert.equal(quiet.status, 200, 'the other partner keeps being served');
  } finally {
    lag = 0;
  }
});

test('/metrics: only with the bearer token, on the public listener only, and never shed', async () => {
  assert.equal((await scrape('')).status, 401);
  assert.equal((await scrape('wrong-token-wrong-token-wrong-token-00')).status, 401);
  lag = 1000;
  let m: Awaited<ReturnType<typeof scrape>>;
  try {
    m = await scrape();
    assert.equal(m.status, 200, 'not shed');
    const health = await request(`${h.publicUrl}/healthz`, { dispatcher: agent });
    assert.equal(health.statusCode, 200, 'health is not shed');
    await health.body.dump();
  } finally {
    lag = 0;
  }
  assert.match(String(m.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  // Default process metrics, HTTP counters by route PATTERN, shedding per partner (internal id).
  assert.match(m.text, /^process_cpu_user_seconds_total /m);
  assert.match(
    m.text,
    /smart_home_http_requests_total\{listener="partner",method="POST",route="\/partner\/v1\/barriers\/:barrierId\/decisions",status="200"\} \d+/,
  );
  assert.match(m.text, /smart_home_http_request_duration_seconds_bucket\{le="[^"]+",listener="partner"/);
  assert.match(m.text, new RegExp(`smart_home_partner_shed_total\\{partner="${northId}"\\} [1-9]`));
  assert.ok(!/А123|anna|Анна/i.test(m.text), 'no personal data in labels');
  // The partner listener has no /metrics.
  const viaPartner = await north.send('GET', '/metrics', { scope: 'barrier:decide' });
  assert.equal(viaPartner.status, 404);
});
