import assert from 'node:assert/strict';
import { randomBytes, randomUUID, webcrypto } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { createTestDb } from '../../test/support/test-db.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { type FieldAad, FieldCipher, FieldCipherError } from './field-cipher.ts';
import { type Kek, KekError, kekFromBytes } from './kek.ts';

const PURPOSES = ['pii', 'plates', 'partner-secrets'];
const AAD: FieldAad = {
  table: 'residents',
  column: 'phone_enc',
  rowId: '0190a1b2-0000-7000-8000-000000000001',
};

const fieldError = (c: FieldCipherError['code']) => (e: unknown) =>
  e instanceof FieldCipherError && e.code === c;
const kekError = (c: KekError['code']) => (e: unknown) => e instanceof KekError && e.code === c;

interface KeyRow {
  [k: string]: unknown;
  id: string;
  purpose: string;
  version: number;
  kek_id: string;
  wrapped: Uint8Array;
}
const keyRows = (db: Db) =>
  db.query<KeyRow>(
    sql`select id, purpose, version, kek_id, wrapped from data_keys order by purpose, version`,
  );

/** The raw data key behind a key id, unwrapped straight from the table (for independent checks). */
async function rawDataKey(db: Db, kek: Kek, id: string): Promise<Buffer> {
  const row = await db.one<KeyRow>(sql`select wrapped from data_keys where id = ${id}`);
  return kek.unwrap(Buffer.from(row!.wrapped));
}

/** AES-256-GCM decryption of the stored form through WebCrypto: a second code path for the format. */
async function webcryptoDecrypt(rawKey: Buffer, aad: FieldAad, stored: string): Promise<string> {
  const blob = Buffer.from(stored.split('.')[2]!, 'base64url');
  const key = await webcrypto.subtle.importKey('raw', rawKey, 'AES-GCM', false, ['decrypt']);
  const plain = await webcrypto.subtle.decrypt(
    {
      name: 'AES-GCM',
      iv: blob.subarray(0, 12),
      additionalData: new TextEncoder().encode(`${aad.table}|${aad.column}|${aad.rowId}`),
      tagLength: 128,
    },
    key,
    blob.subarray(12),
  );
  return new TextDecoder().decode(plain);
}

describe('field encryption', () => {
  let db: Db;
  const kek = kekFromBytes(randomBytes(32));
  let cipher: FieldCipher;
  before(async () => {
    db = await createTestDb();
    cipher = await FieldCipher.open(db, kek, PURPOSES);
  });
  after(() => db.close());

  test('open creates version 1 of each purpose, wrapped by the KEK', async () => {
    const rows = await keyRows(db);
    assert.deepEqual(rows.map((r) => [r.purpose, r.version, r.kek_id]).sort(), [
      ['partner-secrets', 1, kek.id],
      ['pii', 1, kek.id],
      ['plates', 1, kek.id],
    ]);
    for (const r of rows) assert.equal(Buffer.from(r.wrapped).length, 40, 'RFC 3394: 32 bytes + 8');
    assert.deepEqual(cipher.purposes, [...PURPOSES].sort());
    assert.equal(cipher.kekId, kek.id);
  });

  test('round trip; the stored form names its key and hides the value', async () => {
    const ct = cipher.encrypt('pii', AAD, '+79001112233');
    assert.match(ct, /^v1\.[0-9a-f-]{36}\.[A-Za-z0-9_-]+$/);
    assert.equal(ct.split('.')[1], cipher.currentKeyId('pii'));
    assert.ok(!ct.includes('79001112233'));
    assert.equal(Buffer.from(ct.split('.')[2]!, 'base64url').length, 12 + 12 + 16, 'iv ‖ ciphertext ‖ tag');
    assert.equal(cipher.decrypt(AAD, ct), '+79001112233');
    assert.notEqual(cipher.encrypt('pii', AAD, '+79001112233'), ct, 'a fresh IV every time');
    // WebCrypto reads it too: AES-256-GCM, 96-bit IV, AAD table|column|rowId, 128-bit tag.
    assert.equal(
      await webcryptoDecrypt(await rawDataKey(db, kek, cipher.currentKeyId('pii')), AAD, ct),
      '+79001112233',
    );
  });

  test('any text round-trips, in any place', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PURPOSES),
        fc.string({ unit: 'grapheme', maxLength: 200 }),
        fc.string({ minLength: 1, maxLength: 60 }),
        (purpose, text, rowId) => {
          const aad = { table: 'vehicles', column: 'plate_enc', rowId };
          assert.equal(cipher.decrypt(aad, cipher.encrypt(purpose, aad, text)), text);
        },
      ),
      { numRuns: 500 },
    );
    assert.equal(cipher.decrypt(AAD, cipher.encrypt('pii', AAD, '')), '');
  });

  test('IVs never repeat (also across refills of the IV pool)', () => {
    const ivs = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      ivs.add(
        Buffer.from(cipher.encrypt('pii', AAD, 'x').split('.')[2]!, 'base64url')
          .subarray(0, 12)
          .toString('hex'),
      );
    }
    assert.equal(ivs.size, 3000);
  });

  test('the ciphertext is bound to its table, column and row', () => {
    const ct = cipher.encrypt('pii', AAD, 'x');
    for (const other of [
      { ...AAD, rowId: '0190a1b2-0000-7000-8000-000000000002' },
      { ...AAD, column: 'full_name_enc' },
      { ...AAD, table: 'vehicles' },
      { ...AAD, rowId: `${AAD.rowId} ` },
      // Shifting the separator between parts must not give the same AAD.
      { table: 'residents', column: 'phone', rowId: `enc|${AAD.rowId}` },
    ]) {
      assert.throws(() => cipher.decrypt(other, ct), fieldError('ERR_DECRYPT'), JSON.stringify(other));
    }
  });

  test('any altered bit, a truncation, or another key id fails', () => {
    const ct = cipher.encrypt('pii', AAD, 'hello world');
    const [p, k, d] = ct.split('.') as [string, string, string];
    const blob = Buffer.from(d, 'base64url');
    for (let i = 0; i < blob.length * 8; i++) {
      const bad = Buffer.from(blob);
      bad[i >> 3]! ^= 1 << (i & 7);
      assert.throws(
        () => cipher.decrypt(AAD, `${p}.${k}.${bad.toString('base64url')}`),
        fieldError('ERR_DECRYPT'),
      );
    }
    for (const n of [0, 1, 27, blob.length - 1]) {
      assert.throws(
        () => cipher.decrypt(AAD, `${p}.${k}.${blob.subarray(0, n).toString('base64url')}`),
        (e: unknown) => fieldError('ERR_DECRYPT')(e),
      );
    }
    // The key id of another purpose: a real key, but the wrong one.
    assert.throws(
      () => cipher.decrypt(AAD, `${p}.${cipher.currentKeyId('plates')}.${d}`),
      fieldError('ERR_DECRYPT'),
    );
    assert.throws(() => cipher.decrypt(AAD, `${p}.${randomUUID()}.${d}`), fieldError('ERR_UNKNOWN_DATA_KEY'));
  });

  test('malformed stored values are ERR_DECRYPT, never a crash or a partial read', () => {
    const ct = cipher.encrypt('pii', AAD, 'hello');
    const [, k, d] = ct.split('.') as [string, string, string];
    for (const bad of [
      '',
      'hello',
      `v2.${k}.${d}`,
      `v1.${k}`,
      `v1.${k}.${d}.extra`,
      `v1..${d}`,
      `v1.${k}.`,
      `v1.${k}.${d.slice(0, 10)}*${d.slice(11)}`, // outside the alphabet (Node's decoder would skip it)
      `v1.${k}.${d.slice(0, 10)}+${d.slice(11)}`, // base64, not base64url
      `v1.${k}.${d}=`,
    ]) {
      assert.throws(() => cipher.decrypt(AAD, bad), fieldError('ERR_DECRYPT'), bad);
    }
    assert.throws(() => cipher.decrypt(AAD, null as unknown as string), fieldError('ERR_DECRYPT'));
  });

  test('bad arguments are programming errors with their own code', () => {
    assert.throws(() => cipher.encrypt('nope', AAD, 'x'), fieldError('ERR_UNKNOWN_PURPOSE'));
    assert.throws(() => cipher.currentKeyId('nope'), fieldError('ERR_UNKNOWN_PURPOSE'));
    assert.throws(() => cipher.blindIndex('nope', 'x'), fieldError('ERR_UNKNOWN_PURPOSE'));
    for (const aad of [
      { ...AAD, table: 'a|b' },
      { ...AAD, column: '' },
      { ...AAD, column: 'phone enc' },
      { ...AAD, rowId: '' },
      { table: 'residents', column: 'phone_enc' } as FieldAad,
    ]) {
      assert.throws(
        () => cipher.encrypt('pii', aad, 'x'),
        fieldError('ERR_FIELD_ARGUMENT'),
        JSON.stringify(aad),
      );
    }
    assert.throws(
      () => cipher.encrypt('pii', AAD, 42 as unknown as string),
      fieldError('ERR_FIELD_ARGUMENT'),
    );
  });

  test('blind indexes: keyed per purpose, equal for equal values, computed as documented', async () => {
    const phone = '+79001112233';
    assert.equal(cipher.blindIndex('pii', phone), cipher.blindIndex('pii', phone));
    assert.notEqual(cipher.blindIndex('pii', phone), cipher.blindIndex('plates', phone));
    assert.notEqual(cipher.blindIndex('pii', phone), cipher.blindIndex('pii', '+79001112234'));
    assert.match(cipher.blindIndex('pii', phone), /^[A-Za-z0-9_-]{43}$/);
    // Independently: HKDF-SHA256(first data key, salt empty, info "blind-index/v1|pii"), then HMAC.
    const [first] = (await keyRows(db)).filter((r) => r.purpose === 'pii');
    const raw = kek.unwrap(Buffer.from(first!.wrapped));
    const ikm = await webcrypto.subtle.importKey('raw', raw, 'HKDF', false, ['deriveBits']);
    const bits = await webcrypto.subtle.deriveBits(
      {
        name: 'HKDF',
        hash: 'SHA-256',
        salt: new Uint8Array(0),
        info: new TextEncoder().encode('blind-index/v1|pii'),
      },
      ikm,
      256,
    );
    const mac = await webcrypto.subtle.importKey('raw', bits, { name: 'HMAC', hash: 'SHA-256' }, false, [
      'sign',
    ]);
    const expected = Buffer.from(await webcrypto.subtle.sign('HMAC', mac, new TextEncoder().encode(phone)));
    assert.equal(cipher.blindIndex('pii', phone), expected.toString('base64url'));
  });
});

describe('data-key rotation', () => {
  let db: Db;
  const kek = kekFromBytes(randomBytes(32));
  before(async () => {
    db = await createTestDb();
  });
  after(() => db.close());

  test('new values use the new key; old ones still decrypt; blind indexes do not change', async () => {
    const a = await FieldCipher.open(db, kek, PURPOSES);
    const v1 = a.currentKeyId('pii');
    const old = a.encrypt('pii', AAD, 'old');
    const index = a.blindIndex('pii', 'x');
    const v2 = await a.rotate('pii');
    assert.notEqual(v2, v1);
    assert.equal(a.currentKeyId('pii'), v2);
    const fresh = a.encrypt('pii', AAD, 'new');
    assert.equal(fresh.split('.')[1], v2);
    assert.equal(a.decrypt(AAD, old), 'old');
    assert.equal(a.decrypt(AAD, fresh), 'new');
    assert.equal(a.blindIndex('pii', 'x'), index);
    assert.equal(
      a.currentKeyId('plates'),
      (await keyRows(db)).find((r) => r.purpose === 'plates')!.id,
      'others untouched',
    );
    const versions = (await keyRows(db)).filter((r) => r.purpose === 'pii').map((r) => [r.version, r.id]);
    assert.deepEqual(versions, [
      [1, v1],
      [2, v2],
    ]);
  });

  test('another instance: reads both after open; picks a later rotation up on refresh()', async () => {
    const a = await FieldCipher.open(db, kek, PURPOSES);
    const b = await FieldCipher.open(db, kek, PURPOSES);
    assert.equal(b.currentKeyId('pii'), a.currentKeyId('pii'));
    const v3 = await a.rotate('pii');
    const ct = a.encrypt('pii', AAD, 'after rotation');
    assert.throws(() => b.decrypt(AAD, ct), fieldError('ERR_UNKNOWN_DATA_KEY'));
    await b.refresh();
    assert.equal(b.decrypt(AAD, ct), 'after rotation');
    assert.equal(b.currentKeyId('pii'), v3);
    assert.equal(b.blindIndex('pii', 'x'), a.blindIndex('pii', 'x'));
  });

  test('concurrent rotations by two instances get consecutive versions', async () => {
    const a = await FieldCipher.open(db, kek, PURPOSES);
    const b = await FieldCipher.open(db, kek, PURPOSES);
    const before = (await keyRows(db)).filter((r) => r.purpose === 'plates').length;
    const ids = await Promise.all([a.rotate('plates'), b.rotate('plates'), a.rotate('plates')]);
    const rows = (await keyRows(db)).filter((r) => r.purpose === 'plates');
    assert.deepEqual(
      rows.map((r) => r.version),
      Array.from({ length: before + 3 }, (_, i) => i + 1),
    );
    assert.equal(new Set(ids).size, 3);
    await a.refresh();
    await b.refresh();
    assert.equal(a.currentKeyId('plates'), b.currentKeyId('plates'));
  });

  test('a purpose not listed at open is created by rotate', async () => {
    const a = await FieldCipher.open(db, kek, PURPOSES);
    const id = await a.rotate('embeddings');
    assert.equal(a.currentKeyId('embeddings'), id);
    assert.equal(a.decrypt(AAD, a.encrypt('embeddings', AAD, 'e')), 'e');
    await assert.rejects(a.rotate('Not A Purpose'), fieldError('ERR_FIELD_ARGUMENT'));
  });
});

describe('opening', () => {
  test('concurrent opens on an empty database agree on one key per purpose', async () => {
    const db = await createTestDb();
    try {
      const kek = kekFromBytes(randomBytes(32));
      const ciphers = await Promise.all(Array.from({ length: 5 }, () => FieldCipher.open(db, kek, PURPOSES)));
      const rows = await keyRows(db);
      assert.equal(rows.length, PURPOSES.length);
      for (const p of PURPOSES) assert.equal(new Set(ciphers.map((c) => c.currentKeyId(p))).size, 1);
      const ct = ciphers[0]!.encrypt('pii', AAD, 'shared');
      for (const c of ciphers) assert.equal(c.decrypt(AAD, ct), 'shared');
    } finally {
      await db.close();
    }
  });

  test('a wrong KEK is a clear error at open, naming both KEKs; an altered key is named as such', async () => {
    const db = await createTestDb();
    try {
      const right = kekFromBytes(randomBytes(32));
      const wrong = kekFromBytes(randomBytes(32));
      await FieldCipher.open(db, right, PURPOSES);
      await assert.rejects(
        FieldCipher.open(db, wrong, PURPOSES),
        (e: unknown) =>
          kekError('ERR_KEK_UNWRAP')(e) &&
          (e as Error).message.includes(right.id) &&
          (e as Error).message.includes(wrong.id),
      );
      const row = (await keyRows(db))[0]!;
      const altered = Buffer.from(row.wrapped);
      altered[5]! ^= 1;
      await db.query(sql`update data_keys set wrapped = ${altered} where id = ${row.id}`);
      await assert.rejects(
        FieldCipher.open(db, right, PURPOSES),
        (e: unknown) => kekError('ERR_KEK_UNWRAP')(e) && /altered/.test((e as Error).message),
      );
    } finally {
      await db.close();
    }
  });

  test('a malformed purpose is refused', async () => {
    const db = await createTestDb();
    try {
      await assert.rejects(
        FieldCipher.open(db, kekFromBytes(randomBytes(32)), ['ok', 'not|ok']),
        fieldError('ERR_FIELD_ARGUMENT'),
      );
    } finally {
      await db.close();
    }
  });
});

describe('KEK rotation (rewrap)', () => {
  let db: Db;
  const kek1 = kekFromBytes(randomBytes(32));
  const kek2 = kekFromBytes(randomBytes(32));
  before(async () => {
    db = await createTestDb();
  });
  after(() => db.close());

  test('every data key is rewrapped, data is not touched, everything stays readable', async () => {
    const a = await FieldCipher.open(db, kek1, PURPOSES);
    const old = a.encrypt('pii', AAD, 'before the rotation');
    await a.rotate('pii');
    const newer = a.encrypt('pii', AAD, 'after a data-key rotation');
    const plate = a.encrypt('plates', { table: 'vehicles', column: 'plate_enc', rowId: 'v1' }, 'A123BC77');
    const index = a.blindIndex('pii', '+7900');
    const stale = await FieldCipher.open(db, kek1, PURPOSES);
    const before = await keyRows(db);

    const n = await a.rewrap(kek2);
    assert.equal(n, before.length);
    const afterRows = await keyRows(db);
    assert.deepEqual(
      afterRows.map((r) => r.kek_id),
      before.map(() => kek2.id),
    );
    for (const [i, r] of afterRows.entries()) {
      assert.equal(r.id, before[i]!.id, 'same ids: ciphertexts keep naming their keys');
      assert.notDeepEqual(Buffer.from(r.wrapped), Buffer.from(before[i]!.wrapped));
      assert.deepEqual(kek2.unwrap(Buffer.from(r.wrapped)), kek1.unwrap(Buffer.from(before[i]!.wrapped)));
    }
    assert.equal(a.kekId, kek2.id);
    assert.equal(a.decrypt(AAD, old), 'before the rotation');

    const reopened = await FieldCipher.open(db, kek2, PURPOSES);
    assert.equal(reopened.decrypt(AAD, old), 'before the rotation');
    assert.equal(reopened.decrypt(AAD, newer), 'after a data-key rotation');
    assert.equal(
      reopened.decrypt({ table: 'vehicles', column: 'plate_enc', rowId: 'v1' }, plate),
      'A123BC77',
    );
    assert.equal(reopened.blindIndex('pii', '+7900'), index);
    await assert.rejects(FieldCipher.open(db, kek1, PURPOSES), kekError('ERR_KEK_UNWRAP'));

    // An instance still on the old KEK keeps reading, but may not add keys the new KEK cannot open.
    assert.equal(stale.decrypt(AAD, newer), 'after a data-key rotation');
    await assert.rejects(stale.rotate('pii'), fieldError('ERR_KEK_CHANGED'));
    // After a rotation under the new KEK, a rewrap back works the same way.
    await a.rotate('plates');
    assert.equal(await a.rewrap(kek1), before.length + 1);
    assert.equal((await FieldCipher.open(db, kek1, PURPOSES)).decrypt(AAD, old), 'before the rotation');
  });

  test('a rewrap that fails half-way changes nothing', async () => {
    const current = kekFromBytes(randomBytes(32));
    const c = await FieldCipher.open(db, kek1, PURPOSES);
    await c.rewrap(current);
    const before = await keyRows(db);
    let calls = 0;
    const broken: Kek = {
      id: 'broken',
      wrap: (k) => {
        if (++calls === 3) throw new Error('KMS unavailable');
        return kek2.wrap(k);
      },
      unwrap: (w) => kek2.unwrap(w),
    };
    await assert.rejects(c.rewrap(broken), /KMS unavailable/);
    assert.deepEqual(await keyRows(db), before);
    assert.equal(c.kekId, current.id);
    // A KEK that does not give back what it wrapped is caught before anything is written.
    const lossy: Kek = { id: 'lossy', wrap: (k) => kek2.wrap(k), unwrap: () => Buffer.alloc(32) };
    await assert.rejects(c.rewrap(lossy), kekError('ERR_KEK_WRAP'));
    assert.deepEqual(await keyRows(db), before);
    const ct = c.encrypt('pii', AAD, 'still fine');
    assert.equal((await FieldCipher.open(db, current, PURPOSES)).decrypt(AAD, ct), 'still fine');
  });
});
