import assert from 'node:assert/strict';
import { createSecretKey, webcrypto } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { createPartnerSecret, derivePartnerKeys, PARTNER_KEY_BYTES, pseudonym } from './partner-keys.ts';
import { plateToken } from './plate.ts';

const { subtle } = webcrypto;
const utf8 = (s: string) => new TextEncoder().encode(s);
const MASTER = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
const RESIDENT = '0190a1b2-0000-7000-8000-000000000001';

// A second code path (WebCrypto), with the labels written out here rather than imported, so a change
// to a label in the module is caught.
async function webHkdf(master: Uint8Array, info: string): Promise<Buffer> {
  const ikm = await subtle.importKey('raw', master, 'HKDF', false, ['deriveBits']);
  const bits = await subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: utf8(info) },
    ikm,
    256,
  );
  return Buffer.from(bits);
}
async function webHmac(key: Uint8Array, message: string): Promise<string> {
  const k = await subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return Buffer.from(await subtle.sign('HMAC', k, utf8(message))).toString('base64url');
}

describe('per-partner keys (DESIGN §5)', () => {
  test('vectors for master = bytes 0x00…0x1f (computed with WebCrypto)', async () => {
    const { plateKey, pseudonymKey } = derivePartnerKeys(MASTER);
    assert.equal(
      plateKey.toString('hex'),
      '1ff4b776124343589b788dbace1e887e4abce414ed9d63c05c376c01fbfbff9c',
    );
    assert.equal(
      pseudonymKey.toString('hex'),
      'd65ca2db4a9691347be621f2b56e1bbe95154d16936ec3074c7553e21540bff0',
    );
    assert.deepEqual(plateKey, await webHkdf(MASTER, 'smart-home/plate-key/v1'));
    assert.deepEqual(pseudonymKey, await webHkdf(MASTER, 'smart-home/pseudonym-key/v1'));
    assert.equal(pseudonym(pseudonymKey, RESIDENT), 'UAf2r6mPmYDlL-X0i7FZTF_RpxETBQIw64o2H8Ag2EE');
    assert.equal(plateToken(plateKey, 'A123BC77'), 'TidJV_hUVlwe7Tel1c6RPznjSCLnPiWX3TjkgRxgc30');
  });

  test('random masters: derivation and pseudonyms agree with WebCrypto', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.string({ minLength: 1, maxLength: 40 }),
        async (master, residentId) => {
          const { plateKey, pseudonymKey } = derivePartnerKeys(master);
          assert.deepEqual(plateKey, await webHkdf(master, 'smart-home/plate-key/v1'));
          assert.deepEqual(pseudonymKey, await webHkdf(master, 'smart-home/pseudonym-key/v1'));
          assert.equal(
            pseudonym(pseudonymKey, residentId),
            await webHmac(pseudonymKey, `subject/v1|${residentId}`),
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  test('deterministic, independent of each other, and of the master itself', () => {
    const m = createPartnerSecret();
    assert.equal(m.length, PARTNER_KEY_BYTES);
    assert.notDeepEqual(m, createPartnerSecret());
    const a = derivePartnerKeys(m);
    assert.deepEqual(a, derivePartnerKeys(Uint8Array.from(m)));
    assert.notDeepEqual(a.plateKey, a.pseudonymKey);
    assert.notDeepEqual(a.plateKey, m);
    assert.equal(a.plateKey.length, 32);
    assert.equal(a.pseudonymKey.length, 32);
  });

  test('two partners get different pseudonyms for the same resident; one partner, a stable one', () => {
    const a = derivePartnerKeys(createPartnerSecret());
    const b = derivePartnerKeys(createPartnerSecret());
    assert.notEqual(pseudonym(a.pseudonymKey, RESIDENT), pseudonym(b.pseudonymKey, RESIDENT));
    assert.equal(pseudonym(a.pseudonymKey, RESIDENT), pseudonym(Buffer.from(a.pseudonymKey), RESIDENT));
    assert.equal(pseudonym(a.pseudonymKey, RESIDENT), pseudonym(createSecretKey(a.pseudonymKey), RESIDENT));
    assert.notEqual(pseudonym(a.pseudonymKey, RESIDENT), pseudonym(a.pseudonymKey, `${RESIDENT}2`));
    // The plate key is not the pseudonym key: the same HMAC input under each differs.
    assert.notEqual(pseudonym(a.pseudonymKey, RESIDENT), pseudonym(a.plateKey, RESIDENT));
    assert.match(pseudonym(a.pseudonymKey, RESIDENT), /^[A-Za-z0-9_-]{43}$/);
  });

  test('wrong sizes and empty ids are refused', () => {
    for (const n of [0, 16, 31, 33, 64]) {
      assert.throws(() => derivePartnerKeys(Buffer.alloc(n)), { code: 'ERR_KEY_LENGTH' });
      assert.throws(() => pseudonym(Buffer.alloc(n), RESIDENT), { code: 'ERR_KEY_LENGTH' });
    }
    assert.throws(() => pseudonym(MASTER, ''), TypeError);
  });
});
