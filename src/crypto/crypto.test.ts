import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync, randomBytes, webcrypto } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CompactEncrypt, calculateJwkThumbprint, importJWK, type JWK } from 'jose';
import { createTestDb } from '../../test/support/test-db.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { FieldCipher, type FieldCipherError } from './field-cipher.ts';
import { createKekFile, type KekError, kekFromBytes, loadKekFromFile } from './kek.ts';
import { exportPartnerKeysAsJwe, importPartnerKeysFromJwe } from './key-export.ts';
import { createPartnerSecret, derivePartnerKeys, pseudonym } from './partner-keys.ts';

describe('key-encryption key', () => {
  test('RFC 3394 §4.6: 256-bit key data with a 256-bit KEK', () => {
    const kek = kekFromBytes(
      Buffer.from('000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F', 'hex'),
    );
    const data = Buffer.from('00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F', 'hex');
    const wrapped = kek.wrap(data);
    assert.equal(
      wrapped.toString('hex').toUpperCase(),
      '28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21',
    );
    assert.deepEqual(kek.unwrap(wrapped), data);
    assert.throws(
      () => kekFromBytes(randomBytes(32)).unwrap(wrapped),
      (e: KekError) => e.code === 'ERR_KEK_UNWRAP',
    );
  });

  test('a KEK file is created 0600, loaded, and never overwritten', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kek-'));
    const file = path.join(dir, 'keys', 'kek.key');
    await createKekFile(file);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const a = await loadKekFromFile(file);
    assert.deepEqual(a.unwrap(a.wrap(Buffer.alloc(32, 1))), Buffer.alloc(32, 1));
    await assert.rejects(createKekFile(file), /refusing to overwrite/);
    await rm(dir, { recursive: true });
  });
});

describe('field encryption', () => {
  let db: Db;
  const kek = kekFromBytes(randomBytes(32));
  let fc: FieldCipher;
  const aad = { table: 'residents', column: 'phone_enc', rowId: 'r1' };
  before(async () => {
    db = await createTestDb();
    fc = await FieldCipher.open(db, kek, ['pii', 'plates']);
  });
  after(() => db.close());

  test('round trip; the ciphertext names its key and hides the value', () => {
    const ct = fc.encrypt('pii', aad, '+79001112233');
    assert.match(ct, /^v1\.[0-9a-f-]{36}\.[A-Za-z0-9_-]+$/);
    assert.ok(!ct.includes('79001112233'));
    assert.equal(fc.decrypt(aad, ct), '+79001112233');
    assert.notEqual(fc.encrypt('pii', aad, '+79001112233'), ct, 'a fresh IV every time');
  });

  test('the ciphertext is bound to its table, column and row', () => {
    const ct = fc.encrypt('pii', aad, 'x');
    for (const other of [
      { ...aad, rowId: 'r2' },
      { ...aad, column: 'full_name_enc' },
      { ...aad, table: 'vehicles' },
    ]) {
      assert.throws(
        () => fc.decrypt(other, ct),
        (e: FieldCipherError) => e.code === 'ERR_DECRYPT',
      );
    }
  });

  test('an altered ciphertext does not decrypt', () => {
    const ct = fc.encrypt('pii', aad, 'hello');
    const [p, k, d] = ct.split('.');
    const buf = Buffer.from(d!, 'base64url');
    buf[14] = (buf[14] ?? 0) ^ 1;
    assert.throws(
      () => fc.decrypt(aad, `${p}.${k}.${buf.toString('base64url')}`),
      (e: FieldCipherError) => e.code === 'ERR_DECRYPT',
    );
  });

  test('rotation: new values use the new key, old ones still decrypt; a second instance reads both', async () => {
    const old = fc.encrypt('pii', aad, 'old');
    const newId = await fc.rotate('pii');
    const fresh = fc.encrypt('pii', aad, 'new');
    assert.equal(fresh.split('.')[1], newId);
    assert.equal(fc.decrypt(aad, old), 'old');
    const other = await FieldCipher.open(db, kek, ['pii', 'plates']);
    assert.equal(other.decrypt(aad, old), 'old');
    assert.equal(other.decrypt(aad, fresh), 'new');
    assert.equal(
      other.blindIndex('pii', '+7900'),
      fc.blindIndex('pii', '+7900'),
      'blind indexes survive rotation',
    );
  });

  test('rewrap under a new KEK keeps everything readable; the wrong KEK fails at open', async () => {
    const ct = fc.encrypt('plates', { table: 'vehicles', column: 'plate_enc', rowId: 'v' }, 'A123BC77');
    const kek2 = kekFromBytes(randomBytes(32));
    const n = await fc.rewrap(kek2);
    assert.ok(n >= 3);
    const ids = await db.query<{ kek_id: string }>(sql`select distinct kek_id from data_keys`);
    assert.deepEqual(
      ids.map((r) => r.kek_id),
      [kek2.id],
    );
    const reopened = await FieldCipher.open(db, kek2, ['pii', 'plates']);
    assert.equal(reopened.decrypt({ table: 'vehicles', column: 'plate_enc', rowId: 'v' }, ct), 'A123BC77');
    await assert.rejects(FieldCipher.open(db, kek, ['pii']), (e: KekError) => e.code === 'ERR_KEK_UNWRAP');
  });

  test('blind indexes are keyed: equal inputs agree, and they are not a bare hash', () => {
    assert.equal(fc.blindIndex('pii', '+79001112233'), fc.blindIndex('pii', '+79001112233'));
    assert.notEqual(fc.blindIndex('pii', '+79001112233'), fc.blindIndex('plates', '+79001112233'));
    assert.notEqual(fc.blindIndex('pii', 'x'), createHmac('sha256', '').update('x').digest('base64url'));
  });
});

describe('per-partner keys', () => {
  test('derived keys are independent, pseudonyms differ per partner (contract §7 formula)', async () => {
    const a = derivePartnerKeys(createPartnerSecret());
    const b = derivePartnerKeys(createPartnerSecret());
    assert.notDeepEqual(a.plateKey, a.pseudonymKey);
    const resident = '0190a1b2-0000-7000-8000-000000000001';
    assert.notEqual(pseudonym(a.pseudonymKey, resident), pseudonym(b.pseudonymKey, resident));
    // Independent code path: WebCrypto HMAC over the same message.
    const key = await webcrypto.subtle.importKey(
      'raw',
      a.pseudonymKey,
      { name: 'HMAC', hash: 'SHA-256' },
      false,
      ['sign'],
    );
    const mac = await webcrypto.subtle.sign('HMAC', key, new TextEncoder().encode(`subject/v1|${resident}`));
    assert.equal(pseudonym(a.pseudonymKey, resident), Buffer.from(mac).toString('base64url'));
  });

  test('HKDF derivation is deterministic for one master secret', () => {
    const m = createPartnerSecret();
    assert.deepEqual(derivePartnerKeys(m), derivePartnerKeys(Buffer.from(m)));
  });
});

describe('key ceremony (JWE)', () => {
  const pair = () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const priv = privateKey.export({ format: 'jwk' }) as JWK;
    const { d: _d, ...pub } = priv;
    return { priv, pub: { ...pub, kid: 'enc-1' } as JWK };
  };
  const plate = { kid: 'p-v1', key: randomBytes(32) };

  test('round trip to the partner key, with RFC 7638 thumbprints to read back', async () => {
    const r = pair();
    const out = await exportPartnerKeysAsJwe({ plateKeys: [plate], recipient: r.pub, partnerId: 'p' });
    assert.equal(out.jwe.split('.').length, 5);
    const header = JSON.parse(Buffer.from(out.jwe.split('.')[0]!, 'base64url').toString());
    assert.deepEqual([header.alg, header.enc, header.kid], ['ECDH-ES+A256KW', 'A256GCM', 'enc-1']);
    assert.equal(out.recipientThumbprint, await calculateJwkThumbprint(r.pub, 'sha256'));
    assert.equal(
      out.keyThumbprints[0]!.thumbprint,
      await calculateJwkThumbprint({ kty: 'oct', k: plate.key.toString('base64url') }, 'sha256'),
    );
    const back = await importPartnerKeysFromJwe(out.jwe, r.priv);
    assert.deepEqual(Buffer.from(back.plateKeys[0]!.key), plate.key);
    assert.equal(back.plateKeys[0]!.kid, 'p-v1');
  });

  test('another recipient cannot open it', async () => {
    const out = await exportPartnerKeysAsJwe({ plateKeys: [plate], recipient: pair().pub, partnerId: 'p' });
    await assert.rejects(importPartnerKeysFromJwe(out.jwe, pair().priv), /does not decrypt/);
  });

  test('a JWE with an algorithm outside the allowlist is refused', async () => {
    const r = pair();
    const jwe = await new CompactEncrypt(new TextEncoder().encode('{}'))
      .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM' })
      .encrypt(await importJWK(r.pub, 'ECDH-ES'));
    await assert.rejects(importPartnerKeysFromJwe(jwe, r.priv), /does not decrypt/);
  });

  test('a private key is never accepted as the recipient', async () => {
    await assert.rejects(
      exportPartnerKeysAsJwe({ plateKeys: [plate], recipient: pair().priv, partnerId: 'p' }),
      /public P-256/,
    );
  });
});
