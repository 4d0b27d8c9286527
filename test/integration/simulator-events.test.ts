/**
 * The partner simulator's side of contract §9's backfill over real TLS, driven by smart-home's own
 * outbound channel (mTLS, a client-credentials token of scope events:read at the partner, RFC 9421 both
 * ways): `GET /v1/events?afterSeq=&limit=` answers the partner's log in seq order, refuses a bad query
 * or another scope, and can be switched down, unavailable (503 + Retry-After) or slow.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { DeviceFleet, PartnerEventLog } from '../../simulator/events.ts';
import { PartnerEventsEndpoint } from '../../simulator/events-server.ts';
import { saveIdentity } from '../../simulator/identity.ts';
import {
  type IntercomSimulator,
  intercomPartnerEntry,
  smartHomeTrust,
  startIntercomSimulator,
} from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import { sql } from '../../src/db/sql.ts';
import { PartnerEvent } from '../../src/events/model.ts';
import { freePort } from '../../src/util/free-port.ts';
import { createTestDb } from '../support/test-db.ts';
import { intercomWorld } from '../support/world.ts';

const DOORS = ['door-1', 'door-2'];
const checkEvent = TypeCompiler.Compile(PartnerEvent);
let h: LocalStack;
let sim: IntercomSimulator;
let partnerId: string;
const log = new PartnerEventLog({ seed: 11 });
const fleet = new DeviceFleet(log, { devices: DOORS, seed: 11, heartbeatEvery: 20 });
const endpoint = new PartnerEventsEndpoint(log);

before(async () => {
  fleet.produce(700);
  h = await startLocalStack({
    partners: [{ code: 'intercom-north' }, { code: 'intercom-cli' }],
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
});
after(async () => {
  await h?.close();
  await sim?.stop();
});

const get = (query: string, scope = 'events:read') =>
  h.runtime.outbound.send(partnerId, 'GET', `/v1/events${query}`, {
    scope,
    retryOn401: false,
    maxResponseBytes: 1024 * 1024,
  });
async function waitFor<T>(check: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 200));
  }
}
const events = (body: Buffer) => (JSON.parse(body.toString('utf8')) as { events: PartnerEvent[] }).events;

test('pages through the log in seq order: the same event objects as delivered, up to 500', async () => {
  endpoint.set('normal');
  const first = await get('?afterSeq=0&limit=500');
  assert.equal(first.status, 200);
  const page1 = events(first.body);
  assert.equal(page1.length, 500);
  assert.deepEqual(
    page1.map((e) => e.seq),
    Array.from({ length: 500 }, (_, i) => i + 1),
  );
  assert.ok(page1.every((e) => checkEvent.Check(e)));
  assert.deepEqual(page1, log.after(0, 500));
  const rest = events((await get('?afterSeq=500&limit=500')).body);
  assert.deepEqual(
    rest.map((e) => e.seq),
    Array.from({ length: 200 }, (_, i) => 501 + i),
  );
  assert.deepEqual(events((await get('?afterSeq=700&limit=10')).body), []);
  assert.deepEqual(events((await get('?afterSeq=42&limit=1')).body), [log.get(43)]);
  assert.deepEqual(endpoint.asked.slice(-4), [0, 500, 700, 42]);
});

test('a query outside afterSeq ≥ 0 and limit 1–500, or with another parameter, is 400', async () => {
  for (const q of ['?afterSeq=0&limit=501', '?afterSeq=-1&limit=5', '?limit=5', '?afterSeq=0&limit=5&x=1']) {
    const a = await get(q);
    assert.equal(a.status, 400, q);
    assert.equal(sim.refusals.at(-1)?.problem, 'invalid-request');
  }
});

test('a token without events:read is refused (401)', async () => {
  const a = await get('?afterSeq=0&limit=5', 'doors:open');
  assert.equal(a.status, 401);
  assert.equal(sim.refusals.at(-1)?.problem, 'invalid-token');
});

test('switched down it cuts the connection; switched unavailable it answers 503 with Retry-After', async () => {
  endpoint.set('down');
  const before = endpoint.requests;
  await assert.rejects(get('?afterSeq=0&limit=5'));
  assert.ok(endpoint.requests > before, 'the request reached the partner, which did not answer');
  endpoint.set('normal');
  assert.equal((await get('?afterSeq=0&limit=5')).status, 200, 'back again');
  endpoint.set('unavailable', { retryAfterS: 1 });
  // The outbound channel may surface the 503 as an answer or as its own "asked to wait" error.
  const a = await get('?afterSeq=0&limit=5').catch((err: Error) => err);
  if (!(a instanceof Error)) assert.deepEqual([a.status, a.headers['retry-after']], [503, '1']);
  assert.deepEqual(sim.refusals.at(-1), {
    path: '/v1/events?afterSeq=0&limit=5',
    status: 503,
    problem: 'unavailable',
  });
  endpoint.set('normal');
});

test('`simulator events serve` answers backfills from the log `events send` keeps (its own process)', async () => {
  const home = path.join(h.dataDir, 'simulator');
  const dir = path.join(home, 'intercom-cli');
  const id = h.identities.get('intercom-cli')!;
  await saveIdentity(dir, id);
  const devices = new DeviceFleet(new PartnerEventLog({ seed: 12 }), { devices: ['door-9'], seed: 12 });
  const kept = devices.produce(5);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'events.jsonl'), kept.map((e) => `${JSON.stringify(e)}\n`).join(''));
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      new URL('../../simulator/cli.ts', import.meta.url).pathname,
      ...['--home', home, 'events', 'serve', 'intercom-cli', '--data', h.dataDir, '--port', String(port)],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d) => {
        err += d;
        if (err.includes('serving 5 events')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`events serve exited with ${code}: ${err}`)));
    });
    const entry = intercomPartnerEntry(
      {
        url: `https://127.0.0.1:${port}`,
        serverCaPem: await readFile(path.join(dir, 'public', 'server-ca.crt'), 'utf8'),
        clientId: 'smart-home',
      },
      id,
      { complexes: ['north'], networks: ['127.0.0.1/32'] },
    );
    const doc = intercomWorld(h.identities, sim, DOORS);
    await h.apply({ ...doc, partners: [...(doc.partners ?? []), entry] });
    const cli = (await h.runtime.db.one<{ id: string }>(
      sql`select id from partners where code = 'intercom-cli'`,
    ))!.id;
    const a = await h.runtime.outbound.send(cli, 'GET', '/v1/events?afterSeq=1&limit=2', {
      scope: 'events:read',
      retryOn401: false,
    });
    assert.equal(a.status, 200);
    assert.deepEqual(events(a.body), kept.slice(1, 3));
    // What `events send` appends meanwhile is served too.
    const later = devices.produce(2);
    await appendFile(path.join(dir, 'events.jsonl'), later.map((e) => `${JSON.stringify(e)}\n`).join(''));
    const b = await waitFor(async () => {
      const r = await h.runtime.outbound.send(cli, 'GET', '/v1/events?afterSeq=5&limit=10', {
        scope: 'events:read',
        retryOn401: false,
      });
      return events(r.body).length === 2 ? r : undefined;
    });
    assert.deepEqual(events(b.body), later);
  } finally {
    child.kill('SIGTERM');
  }
});
