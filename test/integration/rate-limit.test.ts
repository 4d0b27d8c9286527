import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { sql } from '../../src/db/sql.ts';
import { registry } from '../../src/metrics/registry.ts';
import { type Harness, startHarness } from '../support/harness.ts';
import { PLATES, standardWorld } from '../support/world.ts';

let h: Harness;
let north: PartnerClient;
let south: PartnerClient;

before(async () => {
  h = await startHarness({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => standardWorld(ids),
    env: { SMART_HOME_PARTNER_RATE_LIMIT: '1', SMART_HOME_PARTNER_RATE_BURST: '3' },
  });
  north = await h.client('barrier-north');
  south = await h.client('barrier-south', { localAddress: '127.0.0.3' });
});
after(() => h.close());

test('a partner over its rate limit gets 429 with Retry-After; another partner is unaffected', async () => {
  const statuses: number[] = [];
  let limited: Awaited<ReturnType<PartnerClient['barrierRead']>> | undefined;
  for (let i = 0; i < 5; i++) {
    const res = await north.barrierRead('gate-1', PLATES.anna);
    statuses.push(res.status);
    if (res.status === 429) limited ??= res;
  }
  assert.deepEqual(statuses.slice(0, 3), [200, 200, 200]);
  assert.ok(limited, 'the burst is spent after three requests');
  assert.ok(Number(limited.headers['retry-after']) >= 1);
  assert.equal((limited.body as unknown as { type: string }).type, 'urn:smart-home:problem:rate-limited');
  assert.equal(limited.signatureValid, true);
  assert.equal((await south.barrierRead('gate-s', PLATES.boris)).status, 200);
  // Counted per partner, by its internal id (the /metrics exposition).
  const northId = (await h.runtime.db.one<{ id: string }>(
    sql`select id from partners where code = 'barrier-north'`,
  ))!.id;
  const text = await registry.getSingleMetricAsString('smart_home_partner_rate_limited_total');
  assert.match(text, new RegExp(`partner="${northId}"\\} [1-9]`));
});

test('the token endpoint has its own bucket per partner: a token flood is refused with 429', async () => {
  const statuses: number[] = [];
  let retryAfter: unknown;
  for (let i = 0; i < 5; i++) {
    const res = await request(`${h.partnerUrl}/oauth/token`, {
      method: 'POST',
      dispatcher: south.agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: 'barrier-south',
        scope: 'barrier:decide',
        resource: 'urn:smart-home:partner-api',
      }).toString(),
    });
    statuses.push(res.statusCode);
    if (res.statusCode === 429) retryAfter ??= res.headers['retry-after'];
    await res.body.dump();
  }
  assert.equal(statuses[0], 200);
  assert.ok(statuses.includes(429), `statuses ${statuses}`);
  assert.ok(Number(retryAfter) >= 1);
});
