import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createKekFile, KekError, kekFromBase64, kekFromBytes, kekIdOf, loadKekFromFile } from './kek.ts';

const code = (c: KekError['code']) => (e: unknown) => e instanceof KekError && e.code === c;

describe('RFC 3394 key wrap', () => {
  // RFC 3394 §4.6: wrap 256 bits of key data with a 256-bit KEK.
  const KEK = Buffer.from('000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F', 'hex');
  const DATA = Buffer.from('00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F', 'hex');
  const WRAPPED = Buffer.from(
    '28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21',
    'hex',
  );

  test('§4.6 vector: 256-bit key data with a 256-bit KEK', () => {
    const kek = kekFromBytes(KEK);
    assert.deepEqual(kek.wrap(DATA), WRAPPED);
    assert.deepEqual(kek.unwrap(WRAPPED), DATA);
  });

  test('§4.5 vector (192-bit key data) and §4.3 (128-bit): shorter key data wraps too', () => {
    const kek = kekFromBytes(KEK);
    const data192 = Buffer.from('00112233445566778899AABBCCDDEEFF0001020304050607', 'hex');
    assert.equal(
      kek.wrap(data192).toString('hex').toUpperCase(),
      'A8F9BC1612C68B3FF6E6F4FBE30E71E4769C8B80A32CB8958CD5D17D6B254DA1',
    );
    const data128 = Buffer.from('00112233445566778899AABBCCDDEEFF', 'hex');
    assert.equal(
      kek.wrap(data128).toString('hex').toUpperCase(),
      '64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7',
    );
  });

  test('the integrity check refuses another KEK and altered bytes', () => {
    const kek = kekFromBytes(KEK);
    assert.throws(() => kekFromBytes(randomBytes(32)).unwrap(WRAPPED), code('ERR_KEK_UNWRAP'));
    for (let i = 0; i < WRAPPED.length; i++) {
      const bad = Buffer.from(WRAPPED);
      bad[i]! ^= 0x01;
      assert.throws(() => kek.unwrap(bad), code('ERR_KEK_UNWRAP'), `byte ${i}`);
    }
    assert.throws(() => kek.unwrap(WRAPPED.subarray(0, 32)), code('ERR_KEK_UNWRAP'));
    assert.throws(() => kek.unwrap(Buffer.alloc(0)), code('ERR_KEK_UNWRAP'));
    assert.throws(() => kek.unwrap(WRAPPED.subarray(0, 39)), code('ERR_KEK_UNWRAP'));
  });

  test('only whole 64-bit blocks, at least two, are wrapped', () => {
    const kek = kekFromBytes(KEK);
    for (const n of [0, 8, 15, 17, 33])
      assert.throws(() => kek.wrap(Buffer.alloc(n)), code('ERR_KEK_WRAP'), `${n}`);
  });

  test('the id is the first 8 bytes of SHA-256 of the key, in hex; or the one given', () => {
    const kek = kekFromBytes(KEK);
    assert.equal(kek.id, createHash('sha256').update(KEK).digest('hex').slice(0, 16));
    assert.equal(kek.id, kekIdOf(KEK));
    assert.match(kek.id, /^[0-9a-f]{16}$/);
    assert.notEqual(kekFromBytes(randomBytes(32)).id, kek.id);
    assert.equal(kekFromBytes(KEK, 'kms:prod-1').id, 'kms:prod-1');
    assert.throws(() => kekFromBytes(KEK, ''), code('ERR_KEK'));
    assert.throws(() => kekFromBytes(KEK, 'has space'), code('ERR_KEK'));
  });

  test('a KEK is exactly 32 bytes; later changes to the caller’s array do not affect it', () => {
    for (const n of [0, 16, 24, 31, 33, 64])
      assert.throws(() => kekFromBytes(Buffer.alloc(n)), code('ERR_KEK'));
    const bytes = Buffer.from(KEK);
    const kek = kekFromBytes(bytes);
    bytes.fill(0);
    assert.deepEqual(kek.wrap(DATA), WRAPPED);
  });
});

describe('KEK text form', () => {
  const bytes = randomBytes(32);
  const expectedId = kekIdOf(bytes);

  test('standard or URL-safe base64, padded or not, with surrounding white space', () => {
    const std = bytes.toString('base64');
    for (const text of [
      std,
      std.replace(/=$/, ''),
      bytes.toString('base64url'),
      `  ${std}\n`,
      `${std}\r\n`,
    ]) {
      assert.equal(kekFromBase64(text).id, expectedId, JSON.stringify(text));
    }
  });

  test('anything else is refused without showing the value', () => {
    const std = bytes.toString('base64');
    const bad = [
      '',
      randomBytes(31).toString('base64'),
      randomBytes(33).toString('base64'),
      `${std.slice(0, 20)}!${std.slice(21)}`, // a character outside the alphabet (Node would skip it)
      `${std.slice(0, 20)} ${std.slice(20)}`,
      `${'A'.repeat(41)}+_`, // both alphabets at once
      std.repeat(2),
      bytes.toString('hex'),
    ];
    for (const text of bad) {
      assert.throws(
        () => kekFromBase64(text),
        (e: unknown) =>
          code('ERR_KEK')(e) && (text.length < 8 || !(e as Error).message.includes(text.trim().slice(0, 8))),
        JSON.stringify(text),
      );
    }
  });
});

describe('KEK files', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kek-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('created 0600 in a new 0700 directory, base64 of 32 bytes, loadable', async () => {
    const file = path.join(dir, 'keys', 'kek.key');
    await createKekFile(file);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(file))).mode & 0o777, 0o700);
    const text = await readFile(file, 'utf8');
    assert.match(text, /^[A-Za-z0-9+/]{43}=\n$/);
    const kek = await loadKekFromFile(file);
    assert.equal(kek.id, kekIdOf(Buffer.from(text, 'base64')));
    assert.deepEqual(kek.unwrap(kek.wrap(Buffer.alloc(32, 1))), Buffer.alloc(32, 1));
    assert.deepEqual(await readdir(path.dirname(file)), ['kek.key'], 'no temporary file is left behind');
  });

  test('an existing file is never overwritten', async () => {
    const file = path.join(dir, 'existing.key');
    await writeFile(file, 'do not touch\n');
    await assert.rejects(
      createKekFile(file),
      (e: unknown) => code('ERR_KEK_EXISTS')(e) && /refusing to overwrite/.test((e as Error).message),
    );
    assert.equal(await readFile(file, 'utf8'), 'do not touch\n');
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes('existing')),
      ['existing.key'],
    );
  });

  test('concurrent creations: exactly one wins and the file is whole', async () => {
    const file = path.join(dir, 'race.key');
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => createKekFile(file)));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(code('ERR_KEK_EXISTS')(r.reason));
    await loadKekFromFile(file);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.includes('race')),
      ['race.key'],
    );
  });

  test('a missing or malformed file is a clear ERR_KEK that does not show the content', async () => {
    await assert.rejects(
      loadKekFromFile(path.join(dir, 'missing.key')),
      (e: unknown) => code('ERR_KEK')(e) && /ENOENT/.test((e as Error).message),
    );
    const file = path.join(dir, 'short.key');
    const secret = randomBytes(16).toString('base64');
    await writeFile(file, secret);
    await assert.rejects(
      loadKekFromFile(file),
      (e: unknown) => code('ERR_KEK')(e) && !(e as Error).message.includes(secret),
    );
  });
});
