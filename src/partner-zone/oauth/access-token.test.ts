import assert from 'node:assert/strict';
import { hash, randomBytes, type webcrypto } from 'node:crypto';
import { before, describe, test } from 'node:test';
import {
  createLocalJWKSet,
  exportJWK,
  generateKeyPair,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
  SignJWT,
} from 'jose';
import { type AccessTokenVerifierOptions, createAccessTokenVerifier, TokenError } from './access-token.ts';

const ISSUER = 'https://partner.smart-home.test:9443';
const AUDIENCE = 'urn:smart-home:partner-api';
const thumbprintA = hash('sha256', 'certificate A', 'base64url');
const thumbprintB = hash('sha256', 'certificate B', 'base64url');
const T0 = 1_900_000_000; // a fixed "now", seconds

let asKey: webcrypto.CryptoKey;
let otherKey: webcrypto.CryptoKey;
let jwks: { keys: JWK[] };

before(async () => {
  const as = await generateKeyPair('ES256');
  asKey = as.privateKey;
  jwks = { keys: [{ ...(await exportJWK(as.publicKey)), kid: 'as-1', alg: 'ES256', use: 'sig' }] };
  otherKey = (await generateKeyPair('ES256')).privateKey;
});

const claims = (over: JWTPayload = {}): JWTPayload => ({
  iss: ISSUER,
  sub: 'partner-a',
  client_id: 'partner-a',
  aud: AUDIENCE,
  scope: 'barrier:decide events:write',
  iat: T0,
  exp: T0 + 600,
  jti: randomBytes(12).toString('base64url'),
  cnf: { 'x5t#S256': thumbprintA },
  ...over,
});

async function mint(
  over: JWTPayload = {},
  header: Partial<JWTHeaderParameters> = {},
  key: webcrypto.CryptoKey | Uint8Array = asKey,
): Promise<string> {
  return new SignJWT(claims(over))
    .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'as-1', ...header } as JWTHeaderParameters)
    .sign(key);
}

const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString('base64url');

function verifier(over: Partial<AccessTokenVerifierOptions> = {}) {
  const state = { now: T0 + 1, jwtVerifications: 0 };
  const v = createAccessTokenVerifier({
    issuer: ISSUER,
    audience: AUDIENCE,
    jwks,
    now: () => state.now,
    onJwtVerify: () => {
      state.jwtVerifications++;
    },
    ...over,
  });
  return { v, state };
}

async function rejectsWith(p: Promise<unknown>, code: TokenError['code']) {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof TokenError, String(e));
    assert.equal(e.code, code, e.reason);
    return true;
  });
}

describe('createAccessTokenVerifier (contract §2, RFC 9068, RFC 8705 §3)', () => {
  test('accepts a valid certificate-bound token presented with its certificate', async () => {
    const { v } = verifier();
    const token = await mint();
    const t = await v.verify(token, thumbprintA);
    assert.equal(t.clientId, 'partner-a');
    assert.deepEqual([...t.scopes], ['barrier:decide', 'events:write']);
    assert.equal(t.exp, T0 + 600);
    assert.equal(typeof t.jti, 'string');
  });

  test('accepts typ application/at+jwt (RFC 9068 §4) and a jose key getter', async () => {
    const { v } = verifier({ jwks: createLocalJWKSet(jwks) });
    await v.verify(await mint({}, { typ: 'application/at+jwt' }), thumbprintA);
  });

  test('refuses a token presented with another certificate', async () => {
    const { v } = verifier();
    await rejectsWith(v.verify(await mint(), thumbprintB), 'ERR_TOKEN_CERT_MISMATCH');
    await rejectsWith(v.verify(await mint(), ''), 'ERR_TOKEN_CERT_MISMATCH');
    await rejectsWith(v.verify(await mint(), thumbprintA.slice(0, 42)), 'ERR_TOKEN_CERT_MISMATCH');
  });

  test('refuses a missing token', async () => {
    const { v } = verifier();
    await rejectsWith(v.verify('', thumbprintA), 'ERR_TOKEN_MISSING');
  });

  test('refuses HS256, even "signed" with the public key material as secret', async () => {
    const { v } = verifier();
    await rejectsWith(
      v.verify(await mint({}, { alg: 'HS256' }, randomBytes(32)), thumbprintA),
      'ERR_TOKEN_INVALID',
    );
    const confusion = new TextEncoder().encode(JSON.stringify(jwks.keys[0]));
    await rejectsWith(
      v.verify(await mint({}, { alg: 'HS256' }, confusion), thumbprintA),
      'ERR_TOKEN_INVALID',
    );
  });

  test('refuses alg none', async () => {
    const { v } = verifier();
    const unsecured = `${b64({ alg: 'none', typ: 'at+jwt', kid: 'as-1' })}.${b64(claims())}.`;
    await rejectsWith(v.verify(unsecured, thumbprintA), 'ERR_TOKEN_INVALID');
  });

  test('refuses a wrong or missing typ (an ID token or plain JWT is not an access token)', async () => {
    const { v } = verifier();
    await rejectsWith(v.verify(await mint({}, { typ: 'JWT' }), thumbprintA), 'ERR_TOKEN_INVALID');
    await rejectsWith(v.verify(await mint({}, { typ: undefined }), thumbprintA), 'ERR_TOKEN_INVALID');
  });

  test('refuses another issuer or audience', async () => {
    const { v } = verifier();
    await rejectsWith(
      v.verify(await mint({ iss: 'https://evil.example' }), thumbprintA),
      'ERR_TOKEN_INVALID',
    );
    await rejectsWith(
      v.verify(await mint({ aud: 'urn:smart-home:other' }), thumbprintA),
      'ERR_TOKEN_INVALID',
    );
  });

  test('refuses a token signed by another ES256 key, with our kid or another', async () => {
    const { v } = verifier();
    await rejectsWith(v.verify(await mint({}, {}, otherKey), thumbprintA), 'ERR_TOKEN_INVALID');
    await rejectsWith(v.verify(await mint({}, { kid: 'as-2' }, otherKey), thumbprintA), 'ERR_TOKEN_INVALID');
  });

  test('allows 10 s of clock skew on exp, not more', async () => {
    const token = await mint();
    const within = verifier();
    within.state.now = T0 + 600 + 9;
    await within.v.verify(token, thumbprintA);
    const beyond = verifier();
    beyond.state.now = T0 + 600 + 11;
    await rejectsWith(beyond.v.verify(token, thumbprintA), 'ERR_TOKEN_EXPIRED');
  });

  test('refuses a token without the cnf binding, jti or sub, or whose client_id is not its sub', async () => {
    const { v } = verifier();
    for (const over of [
      { cnf: undefined },
      { cnf: { jkt: thumbprintA } },
      { jti: undefined },
      { sub: undefined },
      { client_id: 'partner-b' },
    ]) {
      await rejectsWith(v.verify(await mint(over), thumbprintA), 'ERR_TOKEN_INVALID');
    }
  });

  test('never puts the token in an error', async () => {
    const { v } = verifier();
    for (const token of [await mint({ iss: 'https://evil.example' }), await mint()]) {
      try {
        await v.verify(token, thumbprintB);
        assert.fail('should have thrown');
      } catch (e) {
        const seen = `${String(e)} ${JSON.stringify(e)} ${(e as Error).stack}`;
        assert.ok(!seen.includes(token) && !seen.includes(token.split('.')[1]!));
      }
    }
  });
});

describe('verified-token cache', () => {
  test('a second verify of the same token skips JWT verification but still checks the binding', async () => {
    const { v, state } = verifier();
    const token = await mint();
    const first = await v.verify(token, thumbprintA);
    assert.equal(state.jwtVerifications, 1);
    const second = await v.verify(token, thumbprintA);
    assert.equal(state.jwtVerifications, 1);
    assert.equal(second, first);
    await rejectsWith(v.verify(token, thumbprintB), 'ERR_TOKEN_CERT_MISMATCH');
    assert.equal(state.jwtVerifications, 1);
  });

  test('a cached token is refused once expired, and dropped', async () => {
    const { v, state } = verifier();
    const token = await mint();
    await v.verify(token, thumbprintA);
    state.now = T0 + 600 + 10;
    await rejectsWith(v.verify(token, thumbprintA), 'ERR_TOKEN_EXPIRED');
    assert.equal(state.jwtVerifications, 1); // answered from the cache entry
    await rejectsWith(v.verify(token, thumbprintA), 'ERR_TOKEN_EXPIRED');
    assert.equal(state.jwtVerifications, 2); // the entry is gone: full verification again
  });

  test('is bounded: the oldest entry goes first', async () => {
    const { v, state } = verifier({ cacheMaxEntries: 2 });
    const [a, b, c] = await Promise.all([mint(), mint(), mint()]);
    for (const t of [a!, b!, c!]) await v.verify(t, thumbprintA);
    assert.equal(state.jwtVerifications, 3);
    await v.verify(c!, thumbprintA);
    await v.verify(b!, thumbprintA);
    assert.equal(state.jwtVerifications, 3);
    await v.verify(a!, thumbprintA);
    assert.equal(state.jwtVerifications, 4);
  });

  test('refused tokens are not cached as valid', async () => {
    const { v, state } = verifier();
    const token = await mint({ aud: 'urn:smart-home:other' });
    await rejectsWith(v.verify(token, thumbprintA), 'ERR_TOKEN_INVALID');
    await rejectsWith(v.verify(token, thumbprintA), 'ERR_TOKEN_INVALID');
    assert.equal(state.jwtVerifications, 2);
  });
});
