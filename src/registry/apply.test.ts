import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createPartnerIdentity, type PartnerIdentity } from '../../simulator/identity.ts';
import { createTestDb, isPostgres } from '../../test/support/test-db.ts';
import { standardWorld } from '../../test/support/world.ts';
import { FieldCipher } from '../crypto/field-cipher.ts';
import { kekFromBytes } from '../crypto/kek.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { createCa } from '../pki/certificates.ts';
import { applyDocument } from './apply.ts';
import { DATA_KEY_PURPOSES } from './data-key-purposes.ts';
import { DocumentError, type ProvisioningDocument, parseDocument, validateDocument } from './document.ts';

let db: Db;
let cipher: FieldCipher;
let ids: Map<string, PartnerIdentity>;
let world: ProvisioningDocument;
const actor = { type: 'operator' as const, id: 'test' };

before(async () => {
  db = await createTestDb();
  cipher = await FieldCipher.open(db, kekFromBytes(randomBytes(32)), DATA_KEY_PURPOSES);
  const ca = await createCa({ commonName: 'test issuing CA' });
  ids = new Map();
  for (const code of ['barrier-north', 'barrier-south']) ids.set(code, await createPartnerIdentity(code, ca));
  world = standardWorld(ids);
});
after(() => db.close());

const count = async (table: string) =>
  (await db.one<{ n: number }>(sql`select count(*)::int as n from ${sql.ident(table)}`))!.n;

describe('apply', () => {
  test('provisions the whole world in one go and journals every change', async () => {
    const s = await applyDocument({ db, cipher }, world, actor);
    assert.ok(s.created > 10);
    assert.equal(s.updated, 0);
    assert.equal(await count('partners'), 2);
    assert.equal(await count('devices'), 4);
    assert.equal(await count('residents'), 2);
    assert.equal(await count('vehicles'), 2);
    assert.equal(await count('guest_passes'), 2);
    // 2 vehicles + 2 passes, one token each per barrier partner (2) and key version (1)
    assert.equal(await count('plate_tokens'), 8);
    const journaled = (await db.one<{ n: number }>(
      sql`select count(*)::int as n from journal where action like 'registry.%'`,
    ))!.n;
    assert.equal(journaled, s.created);
  });

  test('applying the same document again changes and journals nothing', async () => {
    const before = await count('journal');
    const s = await applyDocument({ db, cipher }, world, actor);
    assert.equal(s.created, 0);
    assert.equal(s.updated, 0);
    assert.equal(await count('journal'), before);
  });

  test('a changed field is an update with one journal entry; nested lists are authoritative', async () => {
    const changed = structuredClone(world);
    changed.residents![0]!.vehicles = ['Т777ТТ77'];
    const s = await applyDocument({ db, cipher }, changed, actor);
    assert.equal(s.updated, 1);
    const anna = await db.one<{ id: string }>(sql`select id from residents where ref = 'anna'`);
    const vehicles = await db.query(sql`select id from vehicles where resident_id = ${anna!.id}`);
    assert.equal(vehicles.length, 1);
    await applyDocument({ db, cipher }, world, actor);
  });

  test('a bad document names the path of the offending field', () => {
    const bad = structuredClone(world) as unknown as { residents: Array<Record<string, unknown>> };
    bad.residents[1]!['phone'] = '8-900-111';
    assert.throws(
      () => validateDocument(bad),
      (e: DocumentError) => e.path === '/residents/1/phone',
    );
    const extra = structuredClone(world) as unknown as { devices: Array<Record<string, unknown>> };
    extra.devices[0]!['colour'] = 'red';
    assert.throws(
      () => validateDocument(extra),
      (e: DocumentError) => e.path.startsWith('/devices/0'),
    );
    assert.throws(() => parseDocument('version: 1\ncomplexes: [\n'), DocumentError);
  });

  test('an error late in the document leaves nothing half-applied', async () => {
    const before = {
      journal: await count('journal'),
      complexes: await count('complexes'),
      residents: await count('residents'),
    };
    const doc = structuredClone(world);
    doc.complexes!.push({ code: 'east', name: 'ЖК Восточный', buildings: [] });
    doc.residents!.push({ ref: 'ghost', fullName: 'X', phone: '+79990000000', apartments: ['east/b9/e9/1'] });
    await assert.rejects(
      applyDocument({ db, cipher }, doc, actor),
      (e: DocumentError) => e.path === '/residents/2/apartments/0',
    );
    assert.deepEqual(
      {
        journal: await count('journal'),
        complexes: await count('complexes'),
        residents: await count('residents'),
      },
      before,
    );
  });

  test('a plate that is not a plate is refused with its path', async () => {
    const doc = structuredClone(world);
    doc.residents![0]!.vehicles = ['Ж123ЖЖ77'];
    await assert.rejects(
      applyDocument({ db, cipher }, doc, actor),
      (e: DocumentError) => e.path === '/residents/0/vehicles/0',
    );
  });

  test('a device outside its partner perimeter is refused', async () => {
    const doc = structuredClone(world);
    doc.devices!.push({
      partner: 'barrier-north',
      externalId: 'x',
      kind: 'barrier',
      name: 'X',
      complex: 'south',
    });
    await assert.rejects(
      applyDocument({ db, cipher }, doc, actor),
      (e: DocumentError) => e.path === '/devices/4/complex',
    );
  });

  test('one certificate cannot belong to two partners', async () => {
    const doc = structuredClone(world);
    doc.partners![1]!.certificates = [ids.get('barrier-north')!.thumbprint];
    await assert.rejects(
      applyDocument({ db, cipher }, doc, actor),
      (e: DocumentError) => e.path === '/partners/1/certificates/0',
    );
  });

  test('a kid cannot silently change its key', async () => {
    const doc = structuredClone(world);
    const other = ids.get('barrier-south')!.signing.publicJwk;
    doc.partners![0]!.signingKeys = [
      { ...(other as object), kid: ids.get('barrier-north')!.signing.kid } as never,
    ];
    await assert.rejects(applyDocument({ db, cipher }, doc, actor), /different key/);
  });

  test('progress is reported per resident and pass', async () => {
    const seen: string[] = [];
    await applyDocument({ db, cipher }, world, actor, {
      onProgress: (section, done, total) => seen.push(`${section} ${done}/${total}`),
    });
    assert.deepEqual(seen, ['residents 0/2', 'residents 1/2', 'guestPasses 0/2', 'guestPasses 1/2']);
  });

  test('a dry run checks everything and writes nothing', async () => {
    const before = await count('journal');
    const doc = structuredClone(world);
    doc.complexes!.push({ code: 'west', name: 'ЖК Западный', buildings: [] });
    const s = await applyDocument({ db, cipher }, doc, actor, { dryRun: true });
    assert.equal(s.created, 1);
    assert.equal(await count('journal'), before);
    assert.equal(await db.one(sql`select 1 from complexes where code = 'west'`), undefined);
  });
});

describe('encryption at rest', () => {
  const secrets = [
    'Анна Петрова',
    'Борис',
    '+79001112233',
    '79001112233',
    'А123ВС77',
    'A123BC77',
    'B456OP199',
    'X001XX99',
  ];

  test('no table holds a plaintext name, phone or plate', async () => {
    const tables = await db.query<{ table_name: string }>(
      sql`select table_name from information_schema.tables where table_schema = current_schema() and table_type = 'BASE TABLE'`,
    );
    assert.ok(tables.length > 10);
    for (const { table_name } of tables) {
      const rows = await db.query(sql`select row_to_json(t)::text as j from ${sql.ident(table_name)} t`);
      const text = rows.map((r) => String(r['j'])).join('\n');
      for (const s of secrets) assert.ok(!text.includes(s), `${table_name} holds "${s}" in the clear`);
    }
  });

  // pg_dump needs the real server: registered only in the PostgreSQL run of CI.
  if (isPostgres())
    test('and neither does a pg_dump of the database', async () => {
      const schema = (await db.one<{ s: string }>(sql`select current_schema() as s`))!.s;
      const dump = execFileSync('pg_dump', ['--schema', schema, process.env['DATABASE_URL']!], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      });
      assert.ok(dump.includes('full_name_enc'));
      for (const s of secrets) assert.ok(!dump.includes(s), `the dump holds "${s}"`);
    });
});
