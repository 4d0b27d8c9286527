import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createPartnerIdentity, type PartnerIdentity } from '../../simulator/identity.ts';
import { type AdminTestServer, startAdminTestServer } from '../../src/admin-api/testing.ts';
import { FieldCipher } from '../../src/crypto/field-cipher.ts';
import { kekFromBytes } from '../../src/crypto/kek.ts';
import type { Db } from '../../src/db/db.ts';
import { sql } from '../../src/db/sql.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { createCa } from '../../src/pki/certificates.ts';
import { applyDocument } from '../../src/registry/apply.ts';
import { DATA_KEY_PURPOSES } from '../../src/registry/data-key-purposes.ts';
import type { ProvisioningDocument } from '../../src/registry/document.ts';
import { createTestDb } from '../support/test-db.ts';
import { standardWorld } from '../support/world.ts';

let db: Db;
let cipher: FieldCipher;
let server: AdminTestServer;
let op: string;
let ids: Map<string, PartnerIdentity>;
let world: ProvisioningDocument;
let reloads = 0;
const OPERATOR = 'op-7f3a';

const count = async (table: string) =>
  (await db.one<{ n: number }>(sql`select count(*)::int as n from ${sql.ident(table)}`))!.n;
const idOf = async (table: string, code: string) =>
  (await db.one<{ id: string }>(sql`select id from ${sql.ident(table)} where code = ${code}`))!.id;
/** The journal entries this operator's requests wrote, newest last. */
const journalOf = (action: string) =>
  db.query<{ subject_id: string; actor_id: string; request_id: string | null; actor_type: string }>(
    sql`select subject_id, actor_id, request_id, actor_type from journal where action = ${action} order by seq`,
  );

before(async () => {
  db = await createTestDb();
  cipher = await FieldCipher.open(db, kekFromBytes(randomBytes(32)), DATA_KEY_PURPOSES);
  const ca = await createCa({ commonName: 'test issuing CA' });
  ids = new Map();
  for (const code of ['barrier-north', 'barrier-south', 'door-co'])
    ids.set(code, await createPartnerIdentity(code, ca));
  world = standardWorld(ids);
  await applyDocument({ db, cipher }, world, { type: 'system', id: 'test' });
  server = await startAdminTestServer({
    db,
    cipher,
    onDirectoryChange: async () => {
      reloads++;
    },
  });
  op = await server.token(OPERATOR, 'operator');
});
after(async () => {
  await server?.close();
  await db?.close();
});

describe('operator API: who may call it', () => {
  test('no token is 401, a resident token 403, a token from an unknown key 401', async () => {
    const none = await server.call('GET', '/complexes');
    assert.equal(none.status, 401);
    assert.equal(none.body['type'], 'urn:smart-home:problem:invalid-token');
    const resident = await server.call('GET', '/complexes', { token: await server.token('r1', 'resident') });
    assert.equal(resident.status, 403);
    assert.equal(resident.body['type'], 'urn:smart-home:problem:wrong-role');
    const forged = await server.call('GET', '/complexes', {
      token: await server.token(OPERATOR, 'operator', { foreign: true }),
    });
    assert.equal(forged.status, 401);
    // Refused before the body is looked at: a resident cannot change anything either.
    const before = await count('complexes');
    const write = await server.call('POST', '/complexes', {
      token: await server.token('r1', 'resident'),
      body: { code: 'x', name: 'X' },
    });
    assert.equal(write.status, 403);
    assert.equal(await count('complexes'), before);
  });
});

describe('operator API: topology', () => {
  test('complex create, read, rename and delete, each change journaled with operator and request id', async () => {
    const created = await server.call('POST', '/complexes', {
      token: op,
      body: { code: 'east', name: 'ЖК Восточный' },
    });
    assert.equal(created.status, 201);
    const id = String(created.body['id']);
    assert.equal(created.body['code'], 'east');
    assert.equal((await server.call('GET', `/complexes/${id}`, { token: op })).body['name'], 'ЖК Восточный');
    const renamed = await server.call('PATCH', `/complexes/${id}`, {
      token: op,
      body: { name: 'ЖК Восток' },
    });
    assert.equal(renamed.status, 200);
    assert.equal(renamed.body['name'], 'ЖК Восток');
    const deleted = await server.call('DELETE', `/complexes/${id}`, { token: op });
    assert.deepEqual(deleted.body, { id, deleted: true });
    assert.equal((await server.call('GET', `/complexes/${id}`, { token: op })).status, 404);
    const entries = [
      ...(await journalOf('registry.complex.create')),
      ...(await journalOf('registry.complex.update')),
      ...(await journalOf('registry.complex.delete')),
    ].filter((e) => e.subject_id === id);
    assert.equal(entries.length, 3);
    for (const e of entries) {
      assert.equal(e.actor_type, 'operator');
      assert.equal(e.actor_id, OPERATOR);
      assert.match(String(e.request_id), /^[0-9a-f]{8}-[0-9a-f]{4}-7/);
    }
    assert.equal(new Set(entries.map((e) => e.request_id)).size, 3, 'one request id per request');
  });

  test('bad input names the field; unknown fields are refused; nothing is written', async () => {
    const before = { complexes: await count('complexes'), journal: await count('journal') };
    const bad = await server.call('POST', '/complexes', {
      token: op,
      body: { code: 'Not A Code', name: 'X' },
    });
    assert.equal(bad.status, 400);
    assert.match(String(bad.body['detail']), /^body\/code /);
    const extra = await server.call('POST', '/complexes', {
      token: op,
      body: { code: 'x', name: 'X', colour: 'red' },
    });
    assert.equal(extra.status, 400);
    assert.match(String(extra.body['detail']), /unknown field "colour"/);
    const query = await server.call('GET', '/complexes?sort=name', { token: op });
    assert.equal(query.status, 400);
    const badId = await server.call('GET', '/complexes/not-a-uuid', { token: op });
    assert.equal(badId.status, 400);
    assert.match(String(badId.body['detail']), /^params\/id/);
    assert.deepEqual({ complexes: await count('complexes'), journal: await count('journal') }, before);
  });

  test('unknown ids are 404 for every verb', async () => {
    const id = randomUUID();
    for (const path of [
      'complexes',
      'buildings',
      'entrances',
      'apartments',
      'residents',
      'devices',
      'partners',
    ]) {
      assert.equal((await server.call('GET', `/${path}/${id}`, { token: op })).status, 404, path);
      assert.equal((await server.call('DELETE', `/${path}/${id}`, { token: op })).status, 404, path);
    }
    assert.equal(
      (await server.call('PATCH', `/complexes/${id}`, { token: op, body: { name: 'X' } })).status,
      404,
    );
    assert.equal(
      (await server.call('PATCH', `/devices/${id}`, { token: op, body: { enabled: false } })).status,
      404,
    );
  });

  test('deleting something referenced is 409 and deletes nothing', async () => {
    const north = await idOf('complexes', 'north');
    const before = { complexes: await count('complexes'), journal: await count('journal') };
    const r = await server.call('DELETE', `/complexes/${north}`, { token: op });
    assert.equal(r.status, 409);
    assert.equal(r.body['type'], 'urn:smart-home:problem:registry-conflict');
    assert.match(String(r.body['detail']), /still referenced by buildings/);
    const apt = (await server.call('GET', '/apartments?limit=500', { token: op })).body.items!.find(
      (a) => a['path'] === 'north/b1/e1/1',
    )!;
    const r2 = await server.call('DELETE', `/apartments/${apt['id']}`, { token: op });
    assert.equal(r2.status, 409);
    assert.match(String(r2.body['detail']), /residents/);
    assert.deepEqual({ complexes: await count('complexes'), journal: await count('journal') }, before);
  });

  test('buildings, entrances and apartments: create under a parent, list by parent, delete bottom-up', async () => {
    const south = await idOf('complexes', 'south');
    const b = await server.call('POST', '/buildings', {
      token: op,
      body: { complexId: south, code: 'b9', name: 'Корпус 9' },
    });
    assert.equal(b.status, 201);
    const dup = await server.call('POST', '/buildings', {
      token: op,
      body: { complexId: south, code: 'b9', name: 'X' },
    });
    assert.equal(dup.status, 409);
    assert.match(String(dup.body['detail']), /^body\/code/);
    const orphan = await server.call('POST', '/buildings', {
      token: op,
      body: { complexId: randomUUID(), code: 'b1', name: 'X' },
    });
    assert.equal(orphan.status, 400);
    assert.match(String(orphan.body['detail']), /^body\/complexId: unknown complex/);
    const e = await server.call('POST', '/entrances', {
      token: op,
      body: { buildingId: b.body['id'], code: 'e1', name: 'П1' },
    });
    const a = await server.call('POST', '/apartments', {
      token: op,
      body: { entranceId: e.body['id'], number: '42' },
    });
    assert.equal(a.status, 201);
    assert.equal(a.body['path'], 'south/b9/e1/42');
    const listed = await server.call('GET', `/buildings?complexId=${south}`, { token: op });
    assert.deepEqual(listed.body.items!.map((x) => x['code']).sort(), ['b1', 'b9']);
    assert.equal((await server.call('DELETE', `/buildings/${b.body['id']}`, { token: op })).status, 409);
    assert.equal((await server.call('DELETE', `/apartments/${a.body['id']}`, { token: op })).status, 200);
    assert.equal((await server.call('DELETE', `/entrances/${e.body['id']}`, { token: op })).status, 200);
    assert.equal((await server.call('DELETE', `/buildings/${b.body['id']}`, { token: op })).status, 200);
  });
});

describe('operator API: residents', () => {
  test('name and phone are write-only except in the journaled detail view; stored encrypted', async () => {
    const apt = (await server.call('GET', '/apartments?limit=500', { token: op })).body.items!.find(
      (a) => a['path'] === 'south/b1/e1/5',
    )!;
    const created = await server.call('POST', '/residents', {
      token: op,
      body: {
        ref: 'vera',
        fullName: 'Вера Сидорова',
        phone: '+79005556677',
        apartmentIds: [apt['id']],
        vehicles: ['О555ОО77'],
      },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = String(created.body['id']);
    assert.equal(created.body['vehicleCount'], 1);
    assert.ok(!JSON.stringify(created.body).includes('Вера'));
    const list = await server.call('GET', `/residents?apartmentId=${apt['id']}`, { token: op });
    assert.ok(list.body.items!.some((r) => r['id'] === id));
    assert.ok(!JSON.stringify(list.body).includes('+7900'));
    const views = (await journalOf('registry.resident.view')).length;
    const detail = await server.call('GET', `/residents/${id}`, { token: op });
    assert.equal(detail.body['fullName'], 'Вера Сидорова');
    assert.equal(detail.body['phone'], '+79005556677');
    assert.deepEqual(detail.body['vehicles'], ['O555OO77'], 'canonical (contract §5.1)');
    assert.equal((await journalOf('registry.resident.view')).length, views + 1);
    const apts = await server.call('GET', `/residents/${id}/apartments`, { token: op });
    assert.deepEqual(
      apts.body.items!.map((a) => a['path']),
      ['south/b1/e1/5'],
    );
    const row = await db.one(sql`select row_to_json(r)::text as j from residents r where id = ${id}`);
    assert.ok(!String(row!['j']).includes('Вера') && !String(row!['j']).includes('79005556677'));
    // Plate tokens for every barrier partner, as apply writes them.
    const tokens = await db.one<{ n: number }>(sql`select count(*)::int as n from plate_tokens t
      join vehicles v on v.id = t.vehicle_id where v.resident_id = ${id}`);
    assert.equal(tokens!.n, 2);
    const phone = await server.call('PATCH', `/residents/${id}`, {
      token: op,
      body: { phone: '+79005556678' },
    });
    assert.equal(phone.status, 200);
    assert.equal((await server.call('GET', `/residents/${id}`, { token: op })).body['phone'], '+79005556678');
    assert.equal((await server.call('DELETE', `/residents/${id}`, { token: op })).status, 200);
    assert.equal(await db.one(sql`select 1 from vehicles where resident_id = ${id}`), undefined);
  });

  test('a failing change leaves neither the row nor the journal entry', async () => {
    const before = { residents: await count('residents'), journal: await count('journal') };
    // Anna's phone: the clash is found after nothing else was written…
    const clash = await server.call('POST', '/residents', {
      token: op,
      body: { ref: 'mallory', fullName: 'M', phone: world.residents![0]!.phone, apartmentIds: [] },
    });
    assert.equal(clash.status, 409);
    assert.match(String(clash.body['detail']), /^body\/phone/);
    // …and a bad plate only after the resident row was inserted: rolled back with it.
    const plate = await server.call('POST', '/residents', {
      token: op,
      body: {
        ref: 'mallory',
        fullName: 'M',
        phone: '+79990001122',
        apartmentIds: [],
        vehicles: ['Ж123ЖЖ77'],
      },
    });
    assert.equal(plate.status, 400);
    assert.match(String(plate.body['detail']), /^body\/vehicles\/0/);
    assert.deepEqual({ residents: await count('residents'), journal: await count('journal') }, before);
  });
});

describe('operator API: partners and devices', () => {
  test('a partner shows public keys with RFC 7638 thumbprints and never a secret', async () => {
    const id = await idOf('partners', 'barrier-north');
    const r = await server.call('GET', `/partners/${id}`, { token: op });
    assert.equal(r.status, 200);
    const keys = r.body['signingKeys'] as Array<Record<string, unknown>>;
    assert.equal(keys[0]!['kid'], ids.get('barrier-north')!.signing.kid);
    assert.match(String(keys[0]!['thumbprint']), /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(r.body['networks'], ['127.0.0.1/32', '127.0.0.4/32']);
    const text = JSON.stringify(r.body);
    assert.ok(!/secret_enc|"d":|secret"/i.test(text));
    const stored = await db.one<{ secret_enc: string }>(
      sql`select secret_enc from partner_secrets where partner_id = ${id}`,
    );
    assert.ok(!text.includes(stored!.secret_enc));
  });

  test('onboarding, device in perimeter, directory reloads; referenced deletes are 409', async () => {
    const north = await idOf('complexes', 'north');
    const door = ids.get('door-co')!;
    const reloadsBefore = reloads;
    const created = await server.call('POST', '/partners', {
      token: op,
      body: {
        code: 'door-co',
        name: 'Door company',
        scopes: ['events:write'],
        complexIds: [north],
        networks: ['127.0.0.9'],
        certificates: [door.thumbprint],
        signingKeys: [door.signing.publicJwk],
        encryptionKeys: [door.encryption.publicJwk],
      },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const partnerId = String(created.body['id']);
    assert.deepEqual(created.body['networks'], ['127.0.0.9/32']);
    assert.equal((created.body['plateKeys'] as unknown[]).length, 1);
    const outside = await server.call('POST', '/devices', {
      token: op,
      body: {
        partnerId,
        externalId: 'd-1',
        kind: 'door',
        name: 'Door',
        complexId: await idOf('complexes', 'south'),
      },
    });
    assert.equal(outside.status, 400);
    assert.match(String(outside.body['detail']), /^body\/complexId: complex is outside/);
    const barrier = await server.call('POST', '/devices', {
      token: op,
      body: { partnerId, externalId: 'd-1', kind: 'barrier', name: 'Gate', complexId: north },
    });
    assert.match(String(barrier.body['detail']), /^body\/kind/);
    const dev = await server.call('POST', '/devices', {
      token: op,
      body: { partnerId, externalId: 'd-1', kind: 'door', name: 'Door', complexId: north },
    });
    assert.equal(dev.status, 201);
    const disabled = await server.call('PATCH', `/devices/${dev.body['id']}`, {
      token: op,
      body: { enabled: false },
    });
    assert.equal(disabled.body['enabled'], false);
    const deviceEntries = await db.query<{ partner_id: string; device_id: string }>(
      sql`select partner_id, device_id from journal where subject_id = ${String(dev.body['id'])} order by seq`,
    );
    assert.equal(deviceEntries.length, 2);
    assert.equal(deviceEntries[0]!.partner_id, partnerId);
    assert.equal(deviceEntries[0]!.device_id, dev.body['id']);
    assert.equal(reloads, reloadsBefore + 3, 'partner and device changes reload the directory');
    const r = await server.call('DELETE', `/partners/${partnerId}`, { token: op });
    assert.equal(r.status, 409);
    assert.match(String(r.body['detail']), /devices/);
    const shrink = await server.call('PATCH', `/partners/${partnerId}`, {
      token: op,
      body: { complexIds: [] },
    });
    assert.equal(shrink.status, 409);
    assert.equal((await server.call('DELETE', `/devices/${dev.body['id']}`, { token: op })).status, 200);
    assert.equal((await server.call('DELETE', `/partners/${partnerId}`, { token: op })).status, 200);
    assert.equal(await db.one(sql`select 1 from partner_secrets where partner_id = ${partnerId}`), undefined);
  });

  test('a bad CIDR after the partner row was written rolls the whole onboarding back', async () => {
    const before = { partners: await count('partners'), journal: await count('journal') };
    const door = ids.get('door-co')!;
    const r = await server.call('POST', '/partners', {
      token: op,
      body: {
        code: 'door-co',
        name: 'Door company',
        scopes: ['events:write'],
        complexIds: [],
        networks: ['10.1.2.3/8'],
        certificates: [door.thumbprint],
        signingKeys: [door.signing.publicJwk],
        encryptionKeys: [],
      },
    });
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.match(String(r.body['detail']), /^body\/networks\/0/);
    assert.deepEqual({ partners: await count('partners'), journal: await count('journal') }, before);
  });

  test('a partner change keeps its barriers valid; code and unknown fields cannot be patched', async () => {
    const id = await idOf('partners', 'barrier-north');
    const before = await count('journal');
    const scopes = await server.call('PATCH', `/partners/${id}`, {
      token: op,
      body: { scopes: ['audit:exchange'] },
    });
    assert.equal(scopes.status, 409);
    assert.match(String(scopes.body['detail']), /^body\/scopes: .*barrier:decide/);
    const code = await server.call('PATCH', `/partners/${id}`, { token: op, body: { code: 'renamed' } });
    assert.equal(code.status, 400);
    assert.match(String(code.body['detail']), /unknown field "code"/);
    const name = await server.call('PATCH', `/partners/${id}`, { token: op, body: { name: 'North gates' } });
    assert.equal(name.body['name'], 'North gates');
    assert.equal(await count('journal'), before + 1);
  });

  test('a device referenced by a guest pass cannot be deleted', async () => {
    const gate = await db.one<{ id: string }>(sql`select id from devices where external_id = 'gate-1'`);
    const r = await server.call('DELETE', `/devices/${gate!.id}`, { token: op });
    assert.equal(r.status, 409);
    assert.match(String(r.body['detail']), /guest passes/);
  });

  test('a device with partner events not yet processed cannot be deleted (the inbox has no foreign key)', async () => {
    const d = await db.one<{ id: string; partner_id: string; external_id: string }>(
      sql`select id, partner_id, external_id from devices d where external_id <> 'gate-1'
          and not exists (select 1 from guest_pass_devices g where g.device_id = d.id) order by external_id limit 1`,
    );
    const eventId = '0190a000-0000-7000-8000-0000000000e1';
    await db.query(sql`insert into event_inbox (partner_id, event_id, seq, type, occurred_at, received_at,
        device_external_id, device_id, content_hash, via)
      values (${d!.partner_id}, ${eventId}, 1, 'device.heartbeat', now(), now(), ${d!.external_id}, ${d!.id},
        decode(repeat('ab', 32), 'hex'), 'delivery')`);
    try {
      const before = await count('journal');
      const r = await server.call('DELETE', `/devices/${d!.id}`, { token: op });
      assert.equal(r.status, 409);
      assert.match(String(r.body['detail']), /partner events not yet processed/);
      assert.ok(await db.one(sql`select 1 from devices where id = ${d!.id}`), 'still there');
      assert.equal(await count('journal'), before, 'nothing journaled');
    } finally {
      await db.query(sql`delete from event_inbox where event_id = ${eventId}`);
    }
  });
});

describe('operator API: journal search', () => {
  test('filters by partner, device, resident, action and time', async () => {
    const partnerId = await idOf('partners', 'barrier-north');
    const byPartner = await server.call('GET', `/journal?partnerId=${partnerId}&limit=500`, { token: op });
    assert.ok(byPartner.body.items!.length > 0);
    assert.ok(byPartner.body.items!.every((e) => e['partnerId'] === partnerId));
    const anna = (await db.one<{ id: string }>(sql`select id from residents where ref = 'anna'`))!.id;
    const byResident = await server.call('GET', `/journal?residentId=${anna}&limit=500`, { token: op });
    // Her create and the guest passes she issued.
    assert.ok(byResident.body.items!.some((e) => e['action'] === 'registry.resident.create'));
    assert.ok(byResident.body.items!.some((e) => e['action'] === 'registry.guest-pass.create'));
    const prefix = await server.call('GET', '/journal?action=registry.complex.&result=ok&limit=500', {
      token: op,
    });
    assert.ok(prefix.body.items!.every((e) => String(e['action']).startsWith('registry.complex.')));
    const future = await server.call('GET', '/journal?from=2999-01-01T00:00:00Z', { token: op });
    assert.deepEqual(future.body.items, []);
    const all = await server.call('GET', `/journal?to=2999-01-01T00:00:00Z&limit=500`, { token: op });
    assert.ok(all.body.items!.length > 10);
    const device = await db.one<{ id: string }>(sql`select id from devices where external_id = 'gate-1'`);
    const byDevice = await server.call('GET', `/journal?deviceId=${device!.id}`, { token: op });
    assert.ok(byDevice.body.items!.every((e) => e['deviceId'] === device!.id));
  });

  test('pages are stable: every entry once, in order, even with entries appended between pages', async () => {
    for (const order of ['asc', 'desc'] as const) {
      const whole = await server.call('GET', `/journal?order=${order}&limit=500`, { token: op });
      const expected = whole.body.items!.map((e) => e['id']);
      const seen: unknown[] = [];
      let cursor: unknown = null;
      let pages = 0;
      do {
        const r = await server.call(
          'GET',
          `/journal?order=${order}&limit=3${cursor ? `&cursor=${cursor}` : ''}`,
          {
            token: op,
          },
        );
        assert.equal(r.status, 200);
        assert.ok(r.body.items!.length <= 3);
        seen.push(...r.body.items!.map((e) => e['id']));
        cursor = r.body['nextCursor'];
        // Newer entries arrive meanwhile: in desc order they sort before the cursor, in asc after the end.
        if (pages++ === 0 && order === 'desc')
          await appendJournal(db, { actorType: 'system', action: 'test.noise', result: 'ok' });
      } while (cursor);
      assert.deepEqual(seen, expected, order);
      assert.ok(pages > 2);
    }
  });

  test('limit has a maximum; a bad cursor or date is 400', async () => {
    assert.equal((await server.call('GET', '/journal?limit=501', { token: op })).status, 400);
    assert.equal((await server.call('GET', '/journal?limit=0', { token: op })).status, 400);
    const c = await server.call('GET', '/journal?cursor=bm90LWEtY3Vyc29y', { token: op });
    assert.equal(c.status, 400);
    assert.match(String(c.body['detail']), /cursor/);
    assert.equal((await server.call('GET', '/journal?from=yesterday', { token: op })).status, 400);
    assert.equal((await server.call('GET', '/journal?from=2026-13-45T99:00:00Z', { token: op })).status, 400);
  });

  test('registry lists page by id with a cursor', async () => {
    const whole = await server.call('GET', '/apartments?limit=500', { token: op });
    assert.equal(whole.status, 200, JSON.stringify(whole.body));
    const seen: unknown[] = [];
    let cursor: unknown = null;
    do {
      const r = await server.call('GET', `/apartments?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
        token: op,
      });
      seen.push(...r.body.items!.map((a) => a['id']));
      cursor = r.body['nextCursor'];
    } while (cursor);
    assert.deepEqual(
      seen,
      whole.body.items!.map((a) => a['id']),
    );
  });
});

describe('apply after the API', () => {
  test('apply brings the world back and is idempotent', async () => {
    await applyDocument({ db, cipher }, world, { type: 'system', id: 'test' });
    const before = await count('journal');
    const s = await applyDocument({ db, cipher }, world, { type: 'system', id: 'test' });
    assert.equal(s.created + s.updated, 0);
    assert.equal(await count('journal'), before);
  });
});
