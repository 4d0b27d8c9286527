import assert from 'node:assert/strict';
import { test } from 'node:test';
import { base32Decode, base32Encode, hotp, matchTotp, otpauthUri, totpStep } from './totp.ts';

// RFC 6238 Appendix B (SHA-1 seed "12345678901234567890"), the last 6 of the 8 digits given there.
const SEED = Buffer.from('12345678901234567890');
const VECTORS: [number, string][] = [
  [59, '287082'],
  [1111111109, '081804'],
  [1111111111, '050471'],
  [1234567890, '005924'],
  [2000000000, '279037'],
  [20000000000, '353130'],
];

test('HOTP/TOTP match the RFC 6238 test vectors', () => {
  for (const [t, code] of VECTORS) assert.equal(hotp(SEED, totpStep(t * 1000)), code, String(t));
});

test('a code is accepted one step either side, not two', () => {
  const t = 1111111111 * 1000;
  const code = hotp(SEED, totpStep(t));
  assert.equal(matchTotp(SEED, code, t), totpStep(t));
  assert.equal(matchTotp(SEED, code, t + 30_000), totpStep(t));
  assert.equal(matchTotp(SEED, code, t - 30_000), totpStep(t));
  assert.equal(matchTotp(SEED, code, t + 60_000), undefined);
  assert.equal(matchTotp(SEED, '12345', t), undefined);
  assert.equal(matchTotp(SEED, 'abcdef', t), undefined);
});

test('base32 round-trips (RFC 4648 §10 vectors) and the otpauth URI carries the secret', () => {
  assert.equal(base32Encode(Buffer.from('foobar')), 'MZXW6YTBOI');
  assert.equal(base32Decode('MZXW6YTBOI').toString(), 'foobar');
  assert.throws(() => base32Decode('M1'), /base32/);
  const uri = new URL(otpauthUri('smart-home', 'duty.ops', SEED));
  assert.equal(uri.protocol, 'otpauth:');
  assert.equal(base32Decode(uri.searchParams.get('secret')!).toString(), SEED.toString());
  assert.equal(uri.searchParams.get('period'), '30');
});
