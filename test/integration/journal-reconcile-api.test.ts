/**
 * Contract §8.4 on smart-home's partner listener, driven by a partner over real mTLS: an in-process
 * Negentropy initiator holding the partner's own set (from the decisions it was answered) reconciles
 * against `POST /partner/v1/journal/reconcile`, then reads our side of each difference from
 * `POST /partner/v1/journal/projections`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { integrateAll } from '../../src/journal/log/sequencer.ts';
import { Negentropy } from '../../src/reconcile/negentropy.ts';
import {
  barrierDecisionProjection,
  elementHex,
  eventTime,
  indexProjections,
  type Projection,
  projectionElement,
} from '../../src/reconcile/projection.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { type Harness, startHarness } from '../support/harness.ts';
import { PLATES, standardWorld } from '../support/world.ts';

let h: Harness;
let north: PartnerClient;
let south: PartnerClient;
/** What north was answered: its own journal of barrier decisions. */
const northSeen: Projection[] = [];
const southSeen: Projection[] = [];
let from: string;
let to: string;

async function decide(client: PartnerClient, barrier: string, plate: string, into: Projection[]) {
  const eventId = uuidv7();
  const res = await client.barrierRead(barrier, plate, { eventId });
  assert.equal(res.status, 200);
  const decision = (res.body as { decision: 'open' | 'deny' }).decision;
  into.push(barrierDecisionProjection({ eventId, barrierId: barrier, decision }));
}

before(async () => {
  h = await startHarness({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => standardWorld(ids),
  });
  north = await h.client('barrier-north');
  south = await h.client('barrier-south', { localAddress: '127.0.0.3' });
  const start = Date.now() - 1000;
  for (let i = 0; i < 40; i++)
    await decide(north, 'gate-1', i % 3 === 0 ? PLATES.unknown : PLATES.anna, northSeen);
  for (let i = 0; i < 5; i++) await decide(south, 'gate-s', PLATES.boris, southSeen);
  await integrateAll(h.runtime.db, h.runtime.journalLog, 100_000);
  from = new Date(start).toISOString();
  to = new Date(Date.now() + 60_000).toISOString();
});
after(() => h.close());

const post = (client: PartnerClient, path: string, body: Buffer, query = `from=${from}&to=${to}`) =>
  client.send('POST', `/partner/v1/journal/${path}?${query}`, {
    scope: 'audit:exchange',
    rawBody: body,
    headers: { 'content-type': 'application/octet-stream' },
  });

/** The partner as initiator: Negentropy over the endpoint until done. */
async function reconcileAs(client: PartnerClient, set: Projection[]) {
  const { index } = indexProjections(set);
  const neg = new Negentropy(index);
  const have: string[] = [];
  const need: string[] = [];
  let msg: Buffer | null = neg.initiate();
  let rounds = 0;
  while (msg) {
    const res = await post(client, 'reconcile', msg);
    assert.equal(res.status, 200, res.rawBody.toString());
    assert.equal(res.signatureValid, true);
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    rounds++;
    const r = neg.reconcileAsInitiator(res.rawBody);
    have.push(...r.have.map((e) => e.toString('hex')));
    need.push(...r.need.map((e) => e.toString('hex')));
    msg = r.next;
  }
  return { have: have.sort(), need: need.sort(), rounds };
}

const el = (p: Projection) => elementHex(projectionElement(p));

describe('POST /partner/v1/journal/reconcile (Negentropy v1 over the partner zone)', () => {
  test('the partner holding exactly what we journaled finds no difference, in one round trip', async () => {
    const r = await reconcileAs(north, northSeen);
    assert.deepEqual(r, { have: [], need: [], rounds: 1 });
  });

  test('a dropped, an altered and an added entry: exactly those elements differ', async () => {
    const set = northSeen.map((p) => ({ ...p }));
    const dropped = set.splice(5, 1)[0]!;
    const original = { ...set[10]! };
    set[10]!.result = original.result === 'open' ? 'deny' : 'open';
    const added = barrierDecisionProjection({ eventId: uuidv7(), barrierId: 'gate-1', decision: 'open' });
    set.push(added);
    const r = await reconcileAs(north, set);
    assert.deepEqual(r.have, [el(set[10]!), el(added)].sort(), 'only the partner holds these');
    assert.deepEqual(r.need, [el(dropped), el(original)].sort(), 'only smart-home holds these');

    // Our side of what only we hold, with the item time and when we recorded it.
    const res = await north.send<{
      projections: Array<{ element: string; time: number; at: string; projection: Projection }>;
    }>('POST', `/partner/v1/journal/projections?from=${from}&to=${to}`, {
      scope: 'audit:exchange',
      body: { elements: [...r.need, ...r.have] },
    });
    assert.equal(res.status, 200);
    assert.equal(res.signatureValid, true);
    const got = res.body.projections;
    assert.deepEqual(
      got.map((x) => x.projection).sort((a, b) => a.eventId.localeCompare(b.eventId)),
      [dropped, original].sort((a, b) => a.eventId.localeCompare(b.eventId)),
      'the projections of our elements, none for the partner-only ones',
    );
    for (const x of got) {
      assert.equal(x.element, el(x.projection));
      assert.equal(x.time, eventTime(x.projection.eventId));
      assert.ok(Math.abs(Date.parse(x.at) - x.time) < 60_000, 'recorded about when the event happened');
    }
  });

  test('a partner sees only its own entries: the other partner’s set is empty for it', async () => {
    assert.deepEqual(await reconcileAs(south, southSeen), { have: [], need: [], rounds: 1 });
    // south asks for north's elements: nothing.
    const res = await south.send<{ projections: unknown[] }>('POST', '/partner/v1/journal/projections', {
      scope: 'audit:exchange',
      body: { elements: northSeen.slice(0, 3).map(el) },
    });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body.projections, []);
    // and with south's set against north's endpoint view, all of south's are "only the partner's".
    const r = await reconcileAs(north, [...northSeen, ...southSeen]);
    assert.deepEqual(r.have, southSeen.map(el).sort());
    assert.deepEqual(r.need, []);
  });

  test('the window cuts the set by eventId time', async () => {
    const cut = eventTime(northSeen[20]!.eventId);
    const query = `from=${from}&to=${encodeURIComponent(new Date(cut).toISOString())}`;
    const { index } = indexProjections(northSeen.filter((p) => eventTime(p.eventId) < cut));
    const neg = new Negentropy(index);
    const res = await post(north, 'reconcile', neg.initiate(), query);
    assert.equal(res.status, 200);
    const r = neg.reconcileAsInitiator(res.rawBody);
    assert.equal(r.next, null);
    assert.deepEqual([r.have.length, r.need.length], [0, 0]);
  });

  test('refusals: window, body, message, scope', async () => {
    const neg = new Negentropy(indexProjections([]).index);
    const first = neg.initiate();
    const bad = async (query: string, body: Buffer, status: number, type: string) => {
      const res = await post(north, 'reconcile', body, query);
      assert.equal(res.status, status, `${query}: ${res.rawBody}`);
      assert.equal((res.body as { type: string }).type, `urn:smart-home:problem:${type}`);
      assert.equal(res.signatureValid, true);
    };
    await bad(`from=${from}`, first, 400, 'invalid-request');
    await bad(`from=${to}&to=${from}`, first, 400, 'invalid-request');
    await bad(`from=2026-01-01&to=${to}`, first, 400, 'invalid-request');
    await bad(`from=2020-01-01T00:00:00Z&to=2020-03-01T00:00:00Z`, first, 400, 'invalid-request');
    await bad(`from=${from}&to=${to}&extra=1`, first, 400, 'invalid-request');
    await bad(`from=${from}&to=${to}`, Buffer.from([0x61, 0x05]), 400, 'invalid-request');
    await bad(`from=${from}&to=${to}`, Buffer.from('{}'), 400, 'invalid-request');
    await bad(`from=${from}&to=${to}`, Buffer.alloc(4 * 1024 * 1024 + 1, 0x61), 413, 'payload-too-large');
    // A protocol version we do not speak is answered with ours (Negentropy v1 negotiation).
    const v2 = await post(north, 'reconcile', Buffer.from([0x62]));
    assert.equal(v2.status, 200);
    assert.deepEqual([...v2.rawBody], [0x61]);
    // The barrier scope is not the audit scope.
    const wrong = await north.send('POST', `/partner/v1/journal/reconcile?from=${from}&to=${to}`, {
      scope: 'barrier:decide',
      rawBody: first,
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(wrong.status, 403);
  });
});

describe('POST /partner/v1/journal/projections', () => {
  const ask = (body: unknown, query = '') =>
    north.send<{ projections: Array<{ projection: Projection }>; type?: string }>(
      'POST',
      `/partner/v1/journal/projections${query}`,
      { scope: 'audit:exchange', body },
    );

  test('without a window it finds our elements; unknown ones are left out', async () => {
    const unknown = 'ab'.repeat(32);
    const res = await ask({ elements: [el(northSeen[0]!), unknown, el(northSeen[39]!)] });
    assert.equal(res.status, 200);
    assert.deepEqual(
      res.body.projections.map((x) => x.projection),
      [northSeen[0], northSeen[39]],
    );
  });

  test('schema: at most 1,000 hex elements, nothing else', async () => {
    const e = el(northSeen[0]!);
    for (const [body, why] of [
      [{ elements: [] }, 'empty'],
      [{ elements: Array.from({ length: 1001 }, () => e) }, 'too many'],
      [{ elements: [e.toUpperCase()] }, 'upper-case hex'],
      [{ elements: [e.slice(2)] }, 'short'],
      [{ elements: [e], from: from }, 'unknown member'],
      [{ element: [e] }, 'misspelt'],
      [[e], 'not an object'],
    ] as const) {
      const res = await ask(body);
      assert.equal(res.status, 400, why);
      assert.equal(res.body.type, 'urn:smart-home:problem:invalid-request', why);
    }
    const ok = await ask({ elements: Array.from({ length: 1000 }, () => e) });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.projections.length, 1, 'asked 1,000 times, answered once');
    const badWindow = await ask({ elements: [e] }, `?from=${to}&to=${from}`);
    assert.equal(badWindow.status, 400);
  });
});
