import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { Agent, request } from 'undici';
import type { IntercomSimulator } from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { createApiTokenVerifier } from '../../src/api-auth/access-token.ts';
import { apiAuth } from '../../src/api-auth/hook.ts';
import { API_AUDIENCE, ROLE_CLAIM } from '../../src/api-auth/principal.ts';
import { sql } from '../../src/db/sql.ts';
import { AppError } from '../../src/errors.ts';
import { installProblemHandlers, STRICT_AJV } from '../../src/http/problem-handler.ts';
import { loadSigningKey } from '../../src/keys/service-keys.ts';
import { Outbound } from '../../src/outbound/outbound.ts';
import { type DoorOpener, outboundDoorOpener } from '../../src/resident-api/door-opener.ts';
import { residentApi, residentIdOf } from '../../src/resident-api/routes.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { createTestDb } from '../support/test-db.ts';
import { deviceId, PLATES, standardIntercom, standardWorld } from '../support/world.ts';

/**
 * The resident API over real TLS, on the standard world plus the simulator's intercom doors reached
 * through the real outbound channel (mTLS, OAuth2, RFC 9421, contract §7). Tokens are real ES256
 * access tokens minted here and checked by a small hook with jose (the shape the access-token check
 * of src/api-auth/ gives: `req.principal`).
 */

const ISSUER = 'https://id.test.invalid';
let h: LocalStack;
let app: FastifyInstance;
let base: string;
let agent: Agent;
let north: PartnerClient;
let signingKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
const ids: Record<string, string> = {};
const routes: string[] = [];

let sim: IntercomSimulator;
let outbound: Outbound;
const DOOR_TTL_MS = 3000;

async function token(
  sub: string,
  role: 'resident' | 'operator' = 'resident',
  extra: Record<string, unknown> = {},
) {
  return new SignJWT({ [ROLE_CLAIM]: role, client_id: 'resident-app', scope: 'openid', ...extra })
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'test' })
    .setIssuer(ISSUER)
    .setAudience(API_AUDIENCE)
    .setSubject(sub)
    .setIssuedAt()
    .setJti(randomUUID())
    .setExpirationTime('5m')
    .sign(signingKey);
}

async function call(
  method: 'GET' | 'POST' | 'DELETE',
  url: string,
  opts: { as?: string | null; body?: unknown } = {},
  // biome-ignore lint/suspicious/noExplicitAny: JSON answers of every route, asserted field by field
): Promise<{ status: number; body: any; headers: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (opts.as !== null) headers['authorization'] = `Bearer ${opts.as ?? tokens.anna}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await request(`${base}/api/v1${url}`, {
    method,
    headers,
    body: opts.body === undefined ? null : JSON.stringify(opts.body),
    dispatcher: agent,
  });
  const text = await res.body.text();
  return { status: res.statusCode, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

const tokens: Record<string, string> = {};

/** The door-open route's `Server-Timing`: `partner;dur=<ms>, total;dur=<ms>`, exactly. */
function serverTimingOf(headers: Record<string, unknown>): { partner: number; total: number } {
  const value = headers['server-timing'];
  assert.equal(typeof value, 'string', 'a Server-Timing header');
  const m = /^partner;dur=(\d+(?:\.\d+)?), total;dur=(\d+(?:\.\d+)?)$/.exec(value as string);
  assert.ok(m, `Server-Timing as documented: ${String(value)}`);
  return { partner: Number(m[1]), total: Number(m[2]) };
}

const device = (partner: string, externalId: string) => deviceId(h.runtime.db, partner, externalId);

before(async () => {
  h = await startLocalStack({
    db: await createTestDb(),
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }, { code: 'intercom-north' }],
    document: async (identities, dataDir) => {
      const doc = standardWorld(identities);
      const intercom = await standardIntercom(
        identities,
        dataDir,
        ['door-b1e1', 'door-b2', 'door-off', 'door-s'],
        ['north', 'south'],
      );
      sim = intercom.sim;
      doc.partners!.push(intercom.partner);
      const door = (externalId: string, name: string, complex: string, more: object = {}) => ({
        partner: 'intercom-north',
        externalId,
        kind: 'door' as const,
        name,
        complex,
        ...more,
      });
      doc.devices!.push(
        door('door-b1e1', 'Подъезд 1, корпус 1', 'north', { building: 'b1', entrance: 'e1' }),
        door('door-b2', 'Корпус 2', 'north', { building: 'b2' }),
        door('door-off', 'Калитка', 'north', { building: 'b1', enabled: false }),
        door('door-s', 'Южный подъезд', 'south'),
        // A door of a partner that takes no commands from us (no outbound registration).
        { ...door('door-nocmd', 'Старая калитка', 'north', { building: 'b1' }), partner: 'barrier-north' },
      );
      doc.residents!.push({
        ref: 'vera',
        fullName: 'Вера Смирнова',
        phone: '+79007778899',
        apartments: ['north/b1/e1/2'],
      });
      return doc;
    },
  });
  north = await h.client('barrier-north');
  for (const r of ['anna', 'boris', 'vera']) {
    ids[r] = (await h.runtime.db.one<{ id: string }>(sql`select id from residents where ref = ${r}`))!.id;
  }
  for (const [k, p, e] of [
    ['gate1', 'barrier-north', 'gate-1'],
    ['garageB2', 'barrier-north', 'garage-b2'],
    ['gateOff', 'barrier-north', 'gate-off'],
    ['gateS', 'barrier-south', 'gate-s'],
    ['doorB1e1', 'intercom-north', 'door-b1e1'],
    ['doorB2', 'intercom-north', 'door-b2'],
    ['doorOff', 'intercom-north', 'door-off'],
    ['doorS', 'intercom-north', 'door-s'],
    ['doorNoCmd', 'barrier-north', 'door-nocmd'],
  ] as const) {
    ids[k] = await device(p, e);
  }

  outbound = new Outbound({
    db: h.runtime.db,
    cipher: h.runtime.cipher,
    directory: () => h.runtime.app.directory(),
    clientTls: {
      cert: await readFile(path.join(h.dataDir, 'pki', 'service-client.crt'), 'utf8'),
      key: await readFile(path.join(h.dataDir, 'pki', 'service-client.key'), 'utf8'),
    },
    signingKey: await loadSigningKey(path.join(h.dataDir, 'keys', 'response-signing.jwk'), 'Ed25519'),
    options: {
      connectTimeoutMs: 2000,
      timeoutMs: 2000,
      connections: 4,
      tokenRefreshMarginSeconds: 60,
      retryDelayMs: 50,
      doorCommandTtlMs: DOOR_TTL_MS,
    },
  });

  const pair = await generateKeyPair('ES256', { extractable: true });
  signingKey = pair.privateKey;
  const publicJwk: JWK = { ...(await exportJWK(pair.publicKey)), kid: 'test', alg: 'ES256', use: 'sig' };
  const verifier = createApiTokenVerifier({ issuer: ISSUER, jwks: { keys: [publicJwk] }, db: h.runtime.db });
  for (const r of ['anna', 'boris', 'vera']) tokens[r] = await token(ids[r]!);
  tokens['operator'] = await token(randomUUID(), 'operator');

  app = Fastify({
    https: {
      cert: await readFile(path.join(h.dataDir, 'pki', 'public-server.crt'), 'utf8'),
      key: await readFile(path.join(h.dataDir, 'pki', 'public-server.key'), 'utf8'),
    },
    ajv: STRICT_AJV,
    genReqId: () => uuidv7(),
    logger: false,
  }) as unknown as FastifyInstance;
  installProblemHandlers(app);
  app.addHook('onRoute', (r) => {
    for (const m of [r.method].flat()) if (m !== 'HEAD') routes.push(`${m} ${r.url}`);
  });
  await app.register(
    async (api) => {
      // The access-token check of src/api-auth/, as the public listener applies it to /api/v1.
      await apiAuth({ verifier, requiredRole: 'resident' })(api);
      await api.register(
        residentApi({
          db: h.runtime.db,
          cipher: h.runtime.cipher,
          doors: outboundDoorOpener(outbound),
          guestPassMaxDays: 7,
        }),
      );
    },
    { prefix: '/api/v1' },
  );
  // A channel that never answers (it should keep to expiresAt itself): the route's own deadline.
  const real = outboundDoorOpener(outbound);
  const stuck: DoorOpener = {
    async prepare(input) {
      return { ...(await real.prepare(input)), send: () => new Promise(() => {}) };
    },
  };
  await app.register(
    async (api) => {
      await apiAuth({ verifier, requiredRole: 'resident' })(api);
      await api.register(
        residentApi({ db: h.runtime.db, cipher: h.runtime.cipher, doors: stuck, guestPassMaxDays: 7 }),
      );
    },
    { prefix: '/stuck/api/v1' },
  );
  // The plugin without the check in front: its own refusal is the second line of defence.
  await app.register(
    residentApi({
      db: h.runtime.db,
      cipher: h.runtime.cipher,
      doors: outboundDoorOpener(outbound),
      guestPassMaxDays: 7,
    }),
    { prefix: '/unguarded/api/v1' },
  );
  await app.listen({ host: '127.0.0.1', port: 0 });
  base = `https://localhost:${(app.server.address() as { port: number }).port}`;
  agent = new Agent({ connect: { ca: h.serverCa } });
});

after(async () => {
  await agent?.close();
  await app?.close();
  await outbound?.close();
  await h?.close();
  await sim?.stop();
});

/** Anything that would tell a resident about a partner: its id, code, or its own device ids. */
async function assertNoPartnerInternals(body: unknown) {
  const text = JSON.stringify(body);
  const partners = await h.runtime.db.query<{ id: string; code: string }>(sql`select id, code from partners`);
  for (const p of partners) {
    assert.ok(!text.includes(p.id), 'a partner id leaked');
    assert.ok(!text.includes(p.code), 'a partner code leaked');
  }
  for (const ext of [
    'gate-1',
    'garage-b2',
    'gate-off',
    'gate-s',
    'door-b1e1',
    'door-b2',
    'door-off',
    'door-s',
  ])
    assert.ok(!text.includes(`"${ext}"`), `a partner device id leaked: ${ext}`);
}

describe('GET /api/v1/me', () => {
  test('name and phone decrypted, apartments with complex, building and entrance names', async () => {
    const res = await call('GET', '/me');
    assert.equal(res.status, 200);
    assert.equal(res.body.id, ids['anna']);
    assert.equal(res.body.fullName, 'Анна Петрова');
    assert.equal(res.body.phone, '+79001112233');
    assert.equal(res.body.apartments.length, 1);
    const a = res.body.apartments[0];
    assert.deepEqual(
      [a.number, a.entrance.name, a.building.name, a.complex.name],
      ['1', 'Подъезд 1', 'Корпус 1', 'ЖК Северный'],
    );
  });

  test('no token → 401, a malformed or foreign token → 401, an operator token → 403', async () => {
    assert.equal((await call('GET', '/me', { as: null })).status, 401);
    const other = await new SignJWT({ [ROLE_CLAIM]: 'resident', client_id: 'x' })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' })
      .setIssuer(ISSUER)
      .setAudience(API_AUDIENCE)
      .setSubject(ids['anna']!)
      .setExpirationTime('5m')
      .sign((await generateKeyPair('ES256')).privateKey);
    assert.equal((await call('GET', '/me', { as: other })).status, 401);
    const res = await call('GET', '/me', { as: tokens['operator'] });
    assert.equal(res.status, 403);
    assert.equal(res.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(res.body.type, 'urn:smart-home:problem:wrong-role');
  });

  test('second line of defence: without the check in front, every route refuses; an operator principal too', async () => {
    const listed = routes.filter((r) => r.includes(' /unguarded/'));
    assert.equal(listed.length, 11);
    for (const r of listed) {
      const [method, url] = r.split(' ') as ['GET' | 'POST' | 'DELETE', string];
      const res = await request(`${base}${url.replace(':id', ids['doorB1e1']!)}`, {
        method,
        headers: {
          authorization: `Bearer ${tokens['anna']}`,
          ...(method === 'POST' && !url.includes(':id') ? { 'content-type': 'application/json' } : {}),
        },
        body: method === 'POST' && !url.includes(':id') ? '{}' : null,
        dispatcher: agent,
      });
      await res.body.dump();
      assert.ok([400, 401].includes(res.statusCode), `${r}: ${res.statusCode}`);
    }
    const asOperator = {
      principal: { kind: 'operator', operatorId: 'x', subject: 'x', scopes: new Set(), clientId: undefined },
    };
    assert.throws(
      () => residentIdOf(asOperator as never),
      (e: unknown) => e instanceof AppError && e.code === 'wrong-role',
    );
  });
});

describe('GET /api/v1/access-points', () => {
  test("the doors and barriers covering the resident's apartment, with our id, kind and name only", async () => {
    const res = await call('GET', '/access-points');
    assert.equal(res.status, 200);
    const got = new Map(res.body.items.map((x: { id: string }) => [x.id, x]));
    // Anna (north b1 e1): the complex gates, her entrance door, the b1 doors (one disabled).
    assert.deepEqual(
      new Set(got.keys()),
      new Set([ids['gate1'], ids['gateOff'], ids['doorB1e1'], ids['doorOff'], ids['doorNoCmd']]),
    );
    assert.deepEqual(got.get(ids['doorB1e1']), {
      id: ids['doorB1e1'],
      kind: 'door',
      name: 'Подъезд 1, корпус 1',
      enabled: true,
    });
    assert.equal((got.get(ids['gateOff']) as { enabled: boolean }).enabled, false);
    for (const x of res.body.items)
      assert.deepEqual(Object.keys(x).sort(), ['enabled', 'id', 'kind', 'name']);
    await assertNoPartnerInternals(res.body);
  });

  test('another complex gives other access points', async () => {
    const res = await call('GET', '/access-points', { as: tokens['boris'] });
    assert.deepEqual(
      new Set(res.body.items.map((x: { id: string }) => x.id)),
      new Set([ids['gateS'], ids['doorS']]),
    );
  });
});

describe('POST /api/v1/access-points/{id}/open, against the intercom simulator', () => {
  const cases: Array<{
    outcome: string;
    label?: string;
    set: () => void;
    reset?: () => void;
    opens: boolean;
  }> = [
    { outcome: 'opened', set: () => sim.setDoor('door-b1e1', { mode: 'normal' }), opens: true },
    { outcome: 'rejected', set: () => sim.setDoor('door-b1e1', { mode: 'reject' }), opens: false },
    { outcome: 'device_offline', set: () => sim.setDoor('door-b1e1', { mode: 'offline' }), opens: false },
    {
      outcome: 'expired',
      // The partner's clock is past expiresAt when the command arrives.
      set: () => sim.setClockSkew(60_000),
      reset: () => sim.setClockSkew(0),
      opens: false,
    },
    {
      outcome: 'timeout',
      set: () => sim.setDoor('door-b1e1', { mode: 'slow', slowMs: 20_000 }),
      opens: false,
    },
    { outcome: 'partner_error', set: () => sim.setDoor('door-b1e1', { mode: 'error' }), opens: false },
    {
      outcome: 'partner_error',
      label: 'a badly signed answer (the partner acted, we cannot trust what it said)',
      set: () => sim.setDoor('door-b1e1', { mode: 'bad-signature' }),
      opens: true,
    },
  ];
  for (const c of cases) {
    test(`the partner's "${c.outcome}"${c.label ? ` (${c.label})` : ''} is answered and journaled before and after`, async () => {
      c.set();
      try {
        const openings = sim.openings.length;
        const res = await call('POST', `/access-points/${ids['doorB1e1']}/open`);
        assert.equal(res.status, 200);
        assert.equal(res.body.status, c.outcome);
        assert.equal(res.body.accessPointId, ids['doorB1e1']);
        const timing = serverTimingOf(res.headers);
        assert.ok(timing.partner > 0, 'a partner that was called took some time');
        assert.ok(timing.partner <= timing.total, `partner ≤ total: ${String(res.headers['server-timing'])}`);
        assert.equal(sim.openings.length, openings + (c.opens ? 1 : 0));
        if (c.opens) {
          const opening = sim.openings.at(-1)!;
          assert.equal(opening.commandId, res.body.commandId);
          assert.equal(opening.doorId, 'door-b1e1');
          assert.notEqual(opening.subject, ids['anna'], 'the partner sees a pseudonym, never our id');
        }
        const entries = await h.runtime.db.query<{
          action: string;
          result: string;
          actor_id: string;
          device_id: string;
          request_id: string;
        }>(
          sql`select action, result, actor_id, device_id, request_id from journal
              where details->>'commandId' = ${res.body.commandId} order by seq`,
        );
        assert.deepEqual(
          entries.map((e) => [e.action, e.result, e.actor_id, e.device_id]),
          [
            ['door.open.request', 'sent', ids['anna'], ids['doorB1e1']],
            ['door.open.result', c.outcome, ids['anna'], ids['doorB1e1']],
          ],
        );
        assert.equal(entries[0]!.request_id, entries[1]!.request_id, 'one request id for both');
        await assertNoPartnerInternals(res.body);
      } finally {
        c.reset?.();
        sim.setDoor('door-b1e1', { mode: 'normal' });
      }
    });
  }

  test('a channel that never answers: the route answers "timeout" at expiresAt and journals it', async () => {
    const res = await request(`${base}/stuck/api/v1/access-points/${ids['doorB1e1']}/open`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens['anna']}` },
      dispatcher: agent,
    });
    const body = (await res.body.json()) as { status: string; commandId: string };
    assert.equal(body.status, 'timeout');
    // A channel that reports no partner time: the whole wait for its answer is counted as the partner's.
    const timing = serverTimingOf(res.headers);
    assert.ok(timing.partner > 0 && timing.partner <= timing.total, String(res.headers['server-timing']));
    const entries = await h.runtime.db.query<{ result: string; details: { failure?: string } }>(
      sql`select result, details from journal where details->>'commandId' = ${body.commandId} order by seq`,
    );
    assert.deepEqual(
      entries.map((e) => [e.result, e.details.failure]),
      [
        ['sent', undefined],
        ['timeout', 'deadline'],
      ],
    );
  });

  test('a barrier → 409 not-a-door; a disabled door, or one whose partner takes no commands → 409', async () => {
    const sent = sim.doorRequests;
    const barrier = await call('POST', `/access-points/${ids['gate1']}/open`);
    assert.equal(barrier.status, 409);
    assert.equal(barrier.body.type, 'urn:smart-home:problem:not-a-door');
    assert.match(barrier.body.detail, /only doors open from the app/);
    const off = await call('POST', `/access-points/${ids['doorOff']}/open`);
    assert.equal(off.status, 409);
    assert.equal(off.body.type, 'urn:smart-home:problem:access-point-disabled');
    assert.match(off.body.detail, /out of service/);
    const nocmd = await call('POST', `/access-points/${ids['doorNoCmd']}/open`);
    assert.equal(nocmd.status, 409);
    assert.match(nocmd.body.detail, /cannot be opened from the app/);
    assert.equal(sim.doorRequests, sent, 'nothing was sent');
  });

  test("a door outside the resident's scope and an unknown id answer 404 alike; a non-id → 400", async () => {
    const other = await call('POST', `/access-points/${ids['doorB2']}/open`);
    const unknown = await call('POST', `/access-points/${randomUUID()}/open`);
    assert.deepEqual([other.status, unknown.status], [404, 404]);
    assert.deepEqual({ ...other.body, instance: '' }, { ...unknown.body, instance: '' });
    assert.equal((await call('POST', '/access-points/not-a-uuid/open')).status, 400);
  });
});

describe('vehicles', () => {
  test('add (Cyrillic, spaces), list, barrier honours it, delete removes its tokens', async () => {
    const add = await call('POST', '/vehicles', { as: tokens['vera'], body: { plate: 'к 777 кк 77' } });
    assert.equal(add.status, 201);
    assert.equal(add.body.plate, 'К777КК77');
    assert.equal(add.body.format, 'private');
    const list = await call('GET', '/vehicles', { as: tokens['vera'] });
    assert.deepEqual(
      list.body.items.map((v: { id: string }) => v.id),
      [add.body.id],
    );
    const stored = await h.runtime.db.one<{ plate_enc: string }>(
      sql`select plate_enc from vehicles where id = ${add.body.id}`,
    );
    assert.ok(!stored!.plate_enc.includes('777'), 'stored encrypted');
    const tokensOf = async () =>
      (await h.runtime.db.one<{ n: number }>(
        sql`select count(*)::int as n from plate_tokens where vehicle_id = ${add.body.id}`,
      ))!.n;
    // One token per barrier partner key (north and south), computed as apply does.
    assert.equal(await tokensOf(), 2);
    const read = await north.barrierRead('gate-1', 'К777КК77');
    assert.deepEqual([read.body['decision'], read.body['reason']], ['open', 'resident_vehicle']);

    const del = await call('DELETE', `/vehicles/${add.body.id}`, { as: tokens['vera'] });
    assert.equal(del.status, 204);
    assert.equal(await tokensOf(), 0);
    const again = await north.barrierRead('gate-1', 'К777КК77');
    assert.equal(again.body['decision'], 'deny');
    const journal = await h.runtime.db.query<{ action: string; actor_id: string; details: unknown }>(
      sql`select action, actor_id, details from journal where subject_id = ${add.body.id} order by seq`,
    );
    assert.deepEqual(
      journal.map((j) => [j.action, j.actor_id]),
      [
        ['registry.vehicle.create', ids['vera']],
        ['registry.vehicle.delete', ids['vera']],
      ],
    );
    assert.ok(!JSON.stringify(journal).includes('777'), 'no plate in the journal');
  });

  test('the same plate twice → 409, however it is written', async () => {
    const first = await call('POST', '/vehicles', { as: tokens['vera'], body: { plate: 'Т 123 ТТ 750' } });
    assert.equal(first.status, 201);
    const dup = await call('POST', '/vehicles', { as: tokens['vera'], body: { plate: 't123tt750rus' } });
    assert.equal(dup.status, 409);
    assert.equal(dup.body.type, 'urn:smart-home:problem:plate-already-registered');
    // Anna's provisioned car is listed with its format.
    const anna = await call('GET', '/vehicles');
    assert.deepEqual(
      anna.body.items.map((v: { plate: string; format: string }) => [v.plate, v.format]),
      [['А123ВС77', 'private']],
    );
  });

  test('plate validation names what is wrong, never echoing the plate', async () => {
    const cases: Array<[string, RegExp]> = [
      ['Ж123ВС77', /^plate: character 1 is not one of the 12 letters used on Russian plates/],
      ['А123ВС00', /^plate: the region code must be 01–99/],
      ['А000ВС77', /^plate: the registration number cannot be all zeros/],
      ['АВС12377', /^plate: the letters and digits do not form a Russian plate: expected private car/],
      ['А12#ВС77', /^plate: character 4 is neither a letter, a digit nor a separator/],
    ];
    for (const [plate, message] of cases) {
      const res = await call('POST', '/vehicles', { as: tokens['vera'], body: { plate } });
      assert.equal(res.status, 400, plate);
      assert.equal(res.body.type, 'urn:smart-home:problem:invalid-plate');
      assert.match(res.body.detail, message);
      assert.ok(!res.body.detail.includes(plate));
    }
    const extra = await call('POST', '/vehicles', {
      as: tokens['vera'],
      body: { plate: 'А123ВС77', owner: 'x' },
    });
    assert.equal(extra.status, 400);
    assert.match(extra.body.detail, /unknown field "owner"/);
  });
});

describe('guest passes', () => {
  const hour = 3600_000;
  const window = (fromH: number, untilH: number) => ({
    validFrom: new Date(Date.now() + fromH * hour).toISOString(),
    validUntil: new Date(Date.now() + untilH * hour).toISOString(),
  });

  test('issue one for a barrier: the barrier opens for it; revoked, it no longer does', async () => {
    const res = await call('POST', '/guest-passes', {
      body: { plate: 'О 555 ОО 177', ...window(-0.1, 2), barrierIds: [ids['gate1']] },
    });
    assert.equal(res.status, 201);
    assert.equal(res.body.status, 'active');
    assert.equal(res.body.plate, 'О555ОО177');
    assert.deepEqual(res.body.barriers, [{ id: ids['gate1'], name: 'Main gate' }]);
    assert.ok(Date.parse(res.body.validFrom) >= Date.now() - 60_000, 'a start in the past is now');
    const tokensN = (await h.runtime.db.one<{ n: number }>(
      sql`select count(*)::int as n from plate_tokens where pass_id = ${res.body.id}`,
    ))!.n;
    assert.equal(tokensN, 2);
    const read = await north.barrierRead('gate-1', 'О555ОО177');
    assert.deepEqual([read.body['decision'], read.body['reason']], ['open', 'guest_pass']);

    const list = await call('GET', '/guest-passes');
    assert.ok(list.body.items.some((p: { id: string }) => p.id === res.body.id));

    const revoked = await call('POST', `/guest-passes/${res.body.id}/revoke`);
    assert.equal(revoked.status, 200);
    assert.equal(revoked.body.status, 'revoked');
    const twice = await call('POST', `/guest-passes/${res.body.id}/revoke`);
    assert.equal(twice.body.revokedAt, revoked.body.revokedAt, 'revoking again changes nothing');
    const after = await north.barrierRead('gate-1', 'О555ОО177');
    assert.deepEqual([after.body['decision'], after.body['reason']], ['deny', 'pass_not_valid_now']);
    const journal = await h.runtime.db.query<{ action: string; actor_type: string }>(
      sql`select action, actor_type from journal where subject_id = ${res.body.id} and action like 'registry.%' order by seq`,
    );
    assert.deepEqual(
      journal.map((j) => [j.action, j.actor_type]),
      [
        ['registry.guest-pass.create', 'resident'],
        ['registry.guest-pass.revoke', 'resident'],
      ],
    );
  });

  test('a future pass is scheduled', async () => {
    const res = await call('POST', '/guest-passes', {
      body: { plate: 'Е001ЕЕ77', ...window(24, 48), barrierIds: [ids['gate1']] },
    });
    assert.equal(res.status, 201);
    assert.equal(res.body.status, 'scheduled');
  });

  test("refused: too long, already over, a door, a barrier not the resident's, a bad plate", async () => {
    const bad = async (body: object, status: number, detail: RegExp) => {
      const before = (await h.runtime.db.one<{ n: number }>(
        sql`select count(*)::int as n from guest_passes`,
      ))!.n;
      const res = await call('POST', '/guest-passes', { body });
      assert.equal(res.status, status, JSON.stringify(res.body));
      assert.match(res.body.detail, detail);
      const now = (await h.runtime.db.one<{ n: number }>(sql`select count(*)::int as n from guest_passes`))!
        .n;
      assert.equal(now, before);
    };
    const plate = 'Е002ЕЕ77';
    await bad({ plate, ...window(1, 1 + 7 * 24 + 1), barrierIds: [ids['gate1']] }, 400, /at most 7 days/);
    await bad({ plate, ...window(-3, -1), barrierIds: [ids['gate1']] }, 400, /must be in the future/);
    await bad({ plate, ...window(2, 1), barrierIds: [ids['gate1']] }, 400, /after validFrom/);
    await bad(
      { plate, ...window(0, 1), barrierIds: [ids['doorB1e1']] },
      400,
      /barrierIds\/0: a guest pass opens barriers only/,
    );
    await bad(
      { plate, ...window(0, 1), barrierIds: [ids['gate1'], ids['gateS']] },
      404,
      /barrierIds\/1: no such access point/,
    );
    await bad({ plate, ...window(0, 1), barrierIds: [ids['garageB2']] }, 404, /no such access point/);
    await bad({ plate: 'Ы1', ...window(0, 1), barrierIds: [ids['gate1']] }, 400, /^plate: character 1/);
    await bad({ plate, ...window(0, 1), barrierIds: [] }, 400, /barrierIds/);
  });
});

describe('GET /api/v1/history', () => {
  test("the resident's own door and barrier events, newest first, by cursor, without partner internals", async () => {
    await north.barrierRead('gate-1', PLATES.anna);
    const all = await call('GET', '/history?limit=100');
    assert.equal(all.status, 200);
    const actions = new Set(all.body.items.map((e: { action: string }) => e.action));
    assert.ok(
      actions.has('door.open.request') && actions.has('door.open.result') && actions.has('barrier.decision'),
    );
    const decision = all.body.items.find((e: { action: string }) => e.action === 'barrier.decision');
    assert.deepEqual(decision.accessPoint, { id: ids['gate1'], kind: 'barrier', name: 'Main gate' });
    assert.equal(decision.reason, 'resident_vehicle');
    // Passes' decisions are hers too (the guest passes above were read at gate-1).
    assert.ok(all.body.items.some((e: { guestPassId: string | null }) => e.guestPassId !== null));
    await assertNoPartnerInternals(all.body);
    assert.ok(!JSON.stringify(all.body).includes('commandId'));

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { items: Array<{ id: string }>; nextCursor: string | null } } = await call(
        'GET',
        `/history?limit=3${cursor ? `&cursor=${cursor}` : ''}`,
      );
      seen.push(...page.body.items.map((e) => e.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    assert.deepEqual(
      seen,
      all.body.items.map((e: { id: string }) => e.id),
    );

    const vera = await call('GET', '/history', { as: tokens['vera'] });
    assert.ok(
      vera.body.items.every((e: { id: string }) => !seen.includes(e.id)),
      'nothing of Anna for Vera',
    );
    assert.equal((await call('GET', '/history?cursor=!!')).status, 400);
    assert.equal((await call('GET', '/history?limit=1000')).status, 400);
  });
});

describe('GET /api/v1/data-export', () => {
  test('everything about the resident, decrypted, in one document; the export is journaled', async () => {
    const res = await call('GET', '/data-export');
    assert.equal(res.status, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.deepEqual(res.body.profile, { id: ids['anna'], fullName: 'Анна Петрова', phone: '+79001112233' });
    assert.equal(res.body.apartments[0].complex.name, 'ЖК Северный');
    assert.deepEqual(
      res.body.vehicles.map((v: { plate: string }) => v.plate),
      ['А123ВС77'],
    );
    const plates = res.body.guestPasses.map((p: { plate: string }) => p.plate);
    assert.ok(plates.includes('Х001ХХ99') && plates.includes('О555ОО177'));
    assert.ok(res.body.history.length > 0);
    assert.ok(res.body.changes.some((c: { action: string }) => c.action === 'resident.data-export'));
    await assertNoPartnerInternals(res.body);
    const text = JSON.stringify(res.body);
    assert.ok(!text.includes('Борис') && !text.includes('Вера'), "no other resident's data");
    const logged = await h.runtime.db.one<{ actor_id: string }>(
      sql`select actor_id from journal where action = 'resident.data-export' order by seq desc limit 1`,
    );
    assert.equal(logged!.actor_id, ids['anna']);
  });
});

/**
 * BOLA: every route with an object id, called by another resident on Anna's object, answers 404 and
 * changes nothing. A route with an id that has no row here fails the completeness check.
 */
describe('BOLA matrix', () => {
  type Row = { route: string; attackers: string[]; call: (as: string) => Promise<{ status: number }> };
  let annaVehicle = '';
  let annaPass = '';
  const rows: Row[] = [
    {
      route: 'POST /api/v1/access-points/:id/open',
      // Vera shares Anna's entrance and may use her door: only Boris is an attacker here.
      attackers: ['boris'],
      call: (as) => call('POST', `/access-points/${ids['doorB1e1']}/open`, { as }),
    },
    {
      route: 'DELETE /api/v1/vehicles/:id',
      attackers: ['boris', 'vera'],
      call: (as) => call('DELETE', `/vehicles/${annaVehicle}`, { as }),
    },
    {
      route: 'POST /api/v1/guest-passes/:id/revoke',
      attackers: ['boris', 'vera'],
      call: (as) => call('POST', `/guest-passes/${annaPass}/revoke`, { as }),
    },
  ];

  const state = async () =>
    JSON.stringify(
      await h.runtime.db.query(sql`select
        (select count(*)::int from journal) as journal,
        (select json_agg(id order by id) from vehicles) as vehicles,
        (select json_agg(json_build_object('id', id, 'revoked', revoked_at) order by id) from guest_passes) as passes,
        (select count(*)::int from plate_tokens) as tokens`),
    );

  test('every route with an object id has a row', () => {
    const withId = routes.filter((r) => r.includes(' /api/v1/') && r.includes(':')).sort();
    assert.deepEqual(withId, rows.map((r) => r.route).sort());
  });

  test("another resident's token on Anna's objects → 404, and nothing changes", async () => {
    annaVehicle = (await h.runtime.db.one<{ id: string }>(
      sql`select id from vehicles where resident_id = ${ids['anna']}`,
    ))!.id;
    annaPass = (await h.runtime.db.one<{ id: string }>(
      sql`select id from guest_passes where issued_by = ${ids['anna']} and revoked_at is null limit 1`,
    ))!.id;
    const sent = sim.doorRequests;
    for (const row of rows) {
      for (const attacker of row.attackers) {
        const before = await state();
        const res = await row.call(tokens[attacker]!);
        assert.equal(res.status, 404, `${row.route} as ${attacker}`);
        assert.equal(await state(), before, `${row.route} as ${attacker} changed something`);
      }
    }
    assert.equal(sim.doorRequests, sent, 'no door command was sent');
    // The owner still can: the rows above call real objects.
    assert.equal((await rows[2]!.call(tokens['anna']!)).status, 200);
    assert.equal((await rows[1]!.call(tokens['anna']!)).status, 204);
  });

  test("lists are the caller's own", async () => {
    for (const url of ['/vehicles', '/guest-passes']) {
      const vera = await call('GET', url, { as: tokens['vera'] });
      const anna = await call('GET', url);
      const veraIds = new Set(vera.body.items.map((x: { id: string }) => x.id));
      assert.ok(
        anna.body.items.every((x: { id: string }) => !veraIds.has(x.id)),
        url,
      );
    }
  });
});
