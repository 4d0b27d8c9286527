// The public API's access-token check over real TLS on loopback: a probe app with the apiAuth hook on
// /api/v1 (resident) and /admin/v1 (operator), tokens of the embedded authorization server minted with
// jose (same header and claims as src/identity issues), and the JWT and DPoP attacks of issue 3.
import assert from 'node:assert/strict';
import { createPublicKey, hash, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import {
  base64url,
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JWK,
  SignJWT,
} from 'jose';
import { Agent, request } from 'undici';
import { type ApiTokenVerifier, createApiTokenVerifier } from '../../src/api-auth/access-token.ts';
import { DpopNonces } from '../../src/api-auth/dpop.ts';
import { apiAuth, requireScope } from '../../src/api-auth/hook.ts';
import { API_AUDIENCE } from '../../src/api-auth/principal.ts';
import type { Db } from '../../src/db/db.ts';
import { sql } from '../../src/db/sql.ts';
import { installProblemHandlers } from '../../src/http/problem-handler.ts';
import { MemoryReplayCache } from '../../src/http-signatures/replay-cache.ts';
import { createLogger } from '../../src/logger.ts';
import { createCa, issueServerCert, type KeyPairPem } from '../../src/pki/certificates.ts';
import { createTestDb } from '../support/test-db.ts';

const ISSUER = 'https://smart-home.test/oauth';
/** The URL clients address (behind the L7 scrubber); DPoP `htu` names it, not the loopback port. */
const PUBLIC_URL = 'https://smart-home.test';
const now = () => Math.floor(Date.now() / 1000);

type Signer = { privateKey: CryptoKey; publicJwk: JWK };
async function es256(kid: string): Promise<Signer> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

let db: Db;
let ca: KeyPairPem;
let serverTls: KeyPairPem;
let asKey: Signer;
let residentId: string;
let removedResidentId: string;
const operatorId = randomUUID();
const disabledOperatorId = randomUUID();
const logLines: string[] = [];
const replayCache = new MemoryReplayCache();
let dispatcher: Agent;

async function insertResident(): Promise<string> {
  const id = randomUUID();
  // Ciphertext columns hold placeholders: the check reads only ids.
  await db.query(sql`insert into residents (id, ref, full_name_enc, phone_enc, phone_index)
    values (${id}, ${`r-${id}`}, 'v1.x.placeholder', 'v1.x.placeholder', ${`idx-${id}`})`);
  return id;
}

async function startProbeApp(verifier: ApiTokenVerifier): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({
    https: { cert: serverTls.certPem, key: serverTls.keyPem },
    loggerInstance: createLogger({
      level: 'info',
      destination: { write: (s: string) => void logLines.push(s) },
    }),
  }) as unknown as FastifyInstance;
  installProblemHandlers(app);
  const show = (req: { principal?: import('../../src/api-auth/principal.ts').Principal }) => {
    const p = req.principal!;
    return { ...p, scopes: [...p.scopes] };
  };
  await app.register(
    async (api) => {
      await apiAuth({ verifier, requiredRole: 'resident' })(api);
      api.get('/me', async (req) => show(req));
      api.post('/doors/:id/open', { preHandler: requireScope('doors:open') }, async (req) => show(req));
      api.post('/vehicles', { preHandler: requireScope('vehicles:write') }, async (req) => show(req));
    },
    { prefix: '/api/v1' },
  );
  await app.register(
    async (admin) => {
      await apiAuth({ verifier, requiredRole: 'operator' })(admin);
      admin.get('/residents', async (req) => show(req));
    },
    { prefix: '/admin/v1' },
  );
  app.get('/healthz', async () => ({ ok: true }));
  const address = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url: address };
}

function embeddedVerifier(extra: Partial<Parameters<typeof createApiTokenVerifier>[0]> = {}) {
  return createApiTokenVerifier({
    issuer: ISSUER,
    audience: API_AUDIENCE,
    jwks: { keys: [asKey.publicJwk] },
    db,
    dpop: { algorithms: ['ES256', 'EdDSA'], maxAgeSeconds: 60, replayCache, publicUrl: PUBLIC_URL },
    operatorActive: async (id) => id === operatorId,
    ...extra,
  });
}

/** An access token as the embedded AS issues it (RFC 9068), with `over` replacing or removing claims. */
async function mint(
  over: Record<string, unknown> = {},
  opts: { key?: Signer; header?: Record<string, unknown> } = {},
): Promise<string> {
  const key = opts.key ?? asKey;
  const claims: Record<string, unknown> = {
    iss: ISSUER,
    aud: API_AUDIENCE,
    sub: residentId,
    role: 'resident',
    scope: 'doors:open profile:read',
    client_id: 'resident-app',
    iat: now(),
    exp: now() + 600,
    jti: randomUUID(),
    ...over,
  };
  for (const [k, v] of Object.entries(claims)) if (v === undefined) delete claims[k];
  const header = { alg: 'ES256', typ: 'at+jwt', kid: key.publicJwk.kid, ...opts.header };
  for (const [k, v] of Object.entries(header))
    if (v === undefined) delete (header as Record<string, unknown>)[k];
  return new SignJWT(claims).setProtectedHeader(header as { alg: string }).sign(key.privateKey);
}

type Answer = {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
};
async function call(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method: 'GET' | 'POST' = 'GET',
): Promise<Answer> {
  const res = await request(`${base}${path}`, { method, headers, dispatcher });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body: text ? JSON.parse(text) : {} };
}

async function dpopProof(
  key: Signer,
  p: { htm: string; htu: string; token?: string; ath?: string; iat?: number; jti?: string; nonce?: string },
  header: Record<string, unknown> = {},
): Promise<string> {
  const claims: Record<string, unknown> = {
    htm: p.htm,
    htu: p.htu,
    iat: p.iat ?? now(),
    jti: p.jti ?? randomUUID(),
    ath: p.ath ?? (p.token ? hash('sha256', p.token, 'base64url') : undefined),
    ...(p.nonce ? { nonce: p.nonce } : {}),
  };
  const { kid: _kid, alg: _alg, use: _use, ...jwk } = key.publicJwk;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk, ...header } as { alg: string })
    .sign(key.privateKey);
}

const thumbprint = (key: Signer) => {
  const { kid: _k, alg: _a, use: _u, ...jwk } = key.publicJwk;
  return calculateJwkThumbprint(jwk, 'sha256');
};

function assertRefused(a: Answer, status: number, code: string, wwwError?: string) {
  assert.equal(a.status, status, JSON.stringify(a.body));
  assert.equal(a.body['type'], `urn:smart-home:problem:${code}`);
  assert.equal(a.headers['content-type'], 'application/problem+json; charset=utf-8');
  const www = String(a.headers['www-authenticate'] ?? '');
  assert.match(www, /^(Bearer|DPoP) realm="smart-home"/);
  if (wwwError) assert.ok(www.includes(`error="${wwwError}"`), www);
  else assert.ok(!www.includes('error='), www);
  assert.equal(a.headers['cache-control'], 'no-store');
}

before(async () => {
  db = await createTestDb();
  ca = await createCa({ commonName: 'api-auth test CA' });
  serverTls = await issueServerCert(ca, { commonName: 'public listener', ipAddresses: ['127.0.0.1'] });
  dispatcher = new Agent({ connect: { ca: ca.certPem } });
  asKey = await es256('as-2026-1');
  residentId = await insertResident();
  removedResidentId = await insertResident();
});
after(async () => {
  await dispatcher.close();
  await db.close();
});

describe('the embedded issuer: bearer tokens', () => {
  let base: string;
  let app: FastifyInstance;
  before(async () => {
    ({ app, url: base } = await startProbeApp(embeddedVerifier()));
  });
  after(() => app.close());

  test('a valid resident token reaches the route with the resident as principal', async () => {
    const a = await call(base, '/api/v1/me', { authorization: `Bearer ${await mint()}` });
    assert.equal(a.status, 200);
    assert.equal(a.body['kind'], 'resident');
    assert.equal(a.body['residentId'], residentId);
    assert.equal(a.body['clientId'], 'resident-app');
    assert.deepEqual(a.body['scopes'], ['doors:open', 'profile:read']);
  });

  test('a valid operator token reaches /admin/v1 as that operator', async () => {
    const t = await mint({ sub: operatorId, role: 'operator', scope: 'registry:write' });
    const a = await call(base, '/admin/v1/residents', { authorization: `Bearer ${t}` });
    assert.equal(a.status, 200);
    assert.equal(a.body['kind'], 'operator');
    assert.equal(a.body['operatorId'], operatorId);
  });

  test('no token: 401 with challenges for both schemes and no error code (RFC 6750 §3.1)', async () => {
    const a = await call(base, '/api/v1/me');
    assertRefused(a, 401, 'invalid-token');
    const www = String(a.headers['www-authenticate']);
    assert.match(www, /Bearer realm="smart-home"/);
    assert.match(www, /DPoP realm="smart-home", algs="ES256 EdDSA"/);
    // Routes outside the zones are untouched.
    assert.equal((await call(base, '/healthz')).status, 200);
  });

  test('a malformed Authorization header or an unknown scheme is refused', async () => {
    for (const h of ['Bearer', 'Basic dXNlcjpwYXNz', `Bearer ${await mint()} extra`, 'Bearer a"b']) {
      assertRefused(
        await call(base, '/api/v1/me', { authorization: h }),
        401,
        'invalid-token',
        'invalid_token',
      );
    }
  });

  test('alg none is refused', async () => {
    const enc = (o: object) => base64url.encode(JSON.stringify(o));
    const claims = {
      iss: ISSUER,
      aud: API_AUDIENCE,
      sub: residentId,
      role: 'resident',
      client_id: 'x',
      iat: now(),
      exp: now() + 600,
      jti: 'n',
    };
    for (const alg of ['none', 'None', 'NONE']) {
      const t = `${enc({ alg, typ: 'at+jwt', kid: asKey.publicJwk.kid })}.${enc(claims)}.`;
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `Bearer ${t}` }),
        401,
        'invalid-token',
        'invalid_token',
      );
    }
  });

  test('HS256 signed with the public key (PEM, DER and JWK bytes) is refused', async () => {
    const pub = createPublicKey({ key: asKey.publicJwk as never, format: 'jwk' });
    const secrets = [
      new TextEncoder().encode(await exportSPKI(pub)),
      pub.export({ type: 'spki', format: 'der' }),
      new TextEncoder().encode(JSON.stringify(asKey.publicJwk)),
    ];
    for (const secret of secrets) {
      const t = await new SignJWT({
        iss: ISSUER,
        aud: API_AUDIENCE,
        sub: residentId,
        role: 'resident',
        client_id: 'x',
        jti: randomUUID(),
      })
        .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: asKey.publicJwk.kid })
        .setIssuedAt()
        .setExpirationTime('10m')
        .sign(secret);
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `Bearer ${t}` }),
        401,
        'invalid-token',
        'invalid_token',
      );
    }
  });

  test('ES256 by a key outside the JWKS (even under the published kid) is refused', async () => {
    const rogue = await es256(asKey.publicJwk.kid!);
    for (const key of [rogue, await es256('unknown-kid')]) {
      const a = await call(base, '/api/v1/me', { authorization: `Bearer ${await mint({}, { key })}` });
      assertRefused(a, 401, 'invalid-token', 'invalid_token');
    }
  });

  test('a key named by the token itself (embedded jwk, jku, x5u) is never used', async () => {
    const rogue = await es256('rogue');
    const { kid: _k, alg: _a, use: _u, ...rogueJwk } = rogue.publicJwk;
    for (const header of [
      { jwk: rogueJwk, kid: undefined },
      { jku: 'https://evil.example/jwks', kid: 'rogue' },
      { x5u: 'https://evil.example/cert.pem', kid: 'rogue' },
    ]) {
      const a = await call(base, '/api/v1/me', {
        authorization: `Bearer ${await mint({}, { key: rogue, header })}`,
      });
      assertRefused(a, 401, 'invalid-token', 'invalid_token');
    }
  });

  test('wrong aud, wrong iss, or a missing required claim is refused', async () => {
    for (const over of [
      { aud: 'urn:smart-home:partner-api' },
      { aud: 'resident-app' },
      { iss: 'https://evil.example/oauth' },
      { iss: `${ISSUER}/` },
      { jti: undefined },
      { sub: undefined },
      { exp: undefined },
      { iat: undefined },
      { client_id: undefined },
      { role: undefined },
      { role: 'admin' },
    ]) {
      const a = await call(base, '/api/v1/me', { authorization: `Bearer ${await mint(over)}` });
      assertRefused(a, 401, 'invalid-token', 'invalid_token');
    }
  });

  test('an ID token is refused as an access token', async () => {
    // As OIDC Core issues it: typ JWT, aud = client id, nonce and at_hash.
    const idToken = await mint(
      { aud: 'resident-app', nonce: 'n-1', at_hash: 'x', role: undefined, scope: undefined },
      { header: { typ: 'JWT' } },
    );
    assertRefused(
      await call(base, '/api/v1/me', { authorization: `Bearer ${idToken}` }),
      401,
      'invalid-token',
      'invalid_token',
    );
    // Even dressed up with our typ and audience, its claims betray it.
    for (const c of ['nonce', 'at_hash', 'c_hash']) {
      const t = await mint({ [c]: 'x' });
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `Bearer ${t}` }),
        401,
        'invalid-token',
        'invalid_token',
      );
    }
  });

  test('expired, nbf in the future, or issued in the future is refused; within the leeway is accepted', async () => {
    for (const over of [{ exp: now() - 11, iat: now() - 700 }, { nbf: now() + 60 }, { iat: now() + 120 }]) {
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `Bearer ${await mint(over)}` }),
        401,
        'invalid-token',
        'invalid_token',
      );
    }
    const expired = await call(base, '/api/v1/me', {
      authorization: `Bearer ${await mint({ exp: now() - 30 })}`,
    });
    assert.equal(expired.body['detail'], 'the access token has expired');
    // 10 s of clock skew is tolerated (the default leeway).
    assert.equal(
      (await call(base, '/api/v1/me', { authorization: `Bearer ${await mint({ exp: now() - 5 })}` })).status,
      200,
    );
    assert.equal(
      (await call(base, '/api/v1/me', { authorization: `Bearer ${await mint({ nbf: now() + 5 })}` })).status,
      200,
    );
  });

  test('typ missing or other than at+jwt is refused; application/at+jwt is the same typ', async () => {
    for (const typ of [undefined, 'JWT', 'jwt', 'dpop+jwt', 'at+jwt+x', 'logout+jwt']) {
      const a = await call(base, '/api/v1/me', {
        authorization: `Bearer ${await mint({}, { header: { typ } })}`,
      });
      assertRefused(a, 401, 'invalid-token', 'invalid_token');
    }
    const ok = await mint({}, { header: { typ: 'application/at+jwt' } });
    assert.equal((await call(base, '/api/v1/me', { authorization: `Bearer ${ok}` })).status, 200);
  });

  test('a token bound to a certificate (cnf.x5t#S256) cannot be used as a bearer token here', async () => {
    const t = await mint({ cnf: { 'x5t#S256': 'A'.repeat(43) } });
    assertRefused(
      await call(base, '/api/v1/me', { authorization: `Bearer ${t}` }),
      401,
      'invalid-token',
      'invalid_token',
    );
  });

  test('a resident token on the operator prefix is 403, an operator token on the resident prefix too', async () => {
    const r = await call(base, '/admin/v1/residents', { authorization: `Bearer ${await mint()}` });
    assertRefused(r, 403, 'wrong-role', 'insufficient_scope');
    const o = await mint({ sub: operatorId, role: 'operator' });
    assertRefused(
      await call(base, '/api/v1/me', { authorization: `Bearer ${o}` }),
      403,
      'wrong-role',
      'insufficient_scope',
    );
  });

  test('a resident removed from the registry, or a subject that was never one, is 401 at once', async () => {
    const t = await mint({ sub: removedResidentId });
    assert.equal((await call(base, '/api/v1/me', { authorization: `Bearer ${t}` })).status, 200);
    await db.query(sql`delete from residents where id = ${removedResidentId}`);
    assertRefused(
      await call(base, '/api/v1/me', { authorization: `Bearer ${t}` }),
      401,
      'invalid-token',
      'invalid_token',
    );
    for (const sub of [randomUUID(), 'not-a-uuid', "' or 1=1 --"]) {
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `Bearer ${await mint({ sub })}` }),
        401,
        'invalid-token',
        'invalid_token',
      );
    }
  });

  test('an operator who is no longer active is 401', async () => {
    const t = await mint({ sub: disabledOperatorId, role: 'operator' });
    assertRefused(
      await call(base, '/admin/v1/residents', { authorization: `Bearer ${t}` }),
      401,
      'invalid-token',
      'invalid_token',
    );
  });

  test('requireScope: a missing scope is 403 insufficient_scope naming the scope', async () => {
    const t = await mint();
    assert.equal(
      (await call(base, '/api/v1/doors/d1/open', { authorization: `Bearer ${t}` }, 'POST')).status,
      200,
    );
    const a = await call(base, '/api/v1/vehicles', { authorization: `Bearer ${t}` }, 'POST');
    assertRefused(a, 403, 'insufficient-scope', 'insufficient_scope');
    assert.match(
      String(a.headers['www-authenticate']),
      /^Bearer realm="smart-home", error="insufficient_scope", .*scope="vehicles:write"/,
    );
  });
});

describe('the embedded issuer: DPoP-bound tokens (RFC 9449 §7)', () => {
  let base: string;
  let app: FastifyInstance;
  let client: Signer;
  let jkt: string;
  const htu = `${PUBLIC_URL}/api/v1/me`;
  before(async () => {
    ({ app, url: base } = await startProbeApp(embeddedVerifier()));
    client = await es256('client');
    jkt = await thumbprint(client);
  });
  after(() => app.close());

  test('a DPoP-bound token with a valid proof is accepted (query string ignored in htu)', async () => {
    const token = await mint({ cnf: { jkt } });
    const proof = await dpopProof(client, { htm: 'GET', htu, token });
    const a = await call(base, '/api/v1/me?x=1', { authorization: `DPoP ${token}`, dpop: proof });
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(a.body['residentId'], residentId);
  });

  test('a DPoP-bound token sent as Bearer is 401 invalid_token', async () => {
    const token = await mint({ cnf: { jkt } });
    const proof = await dpopProof(client, { htm: 'GET', htu, token });
    const attempts: Record<string, string>[] = [
      { authorization: `Bearer ${token}` },
      { authorization: `Bearer ${token}`, dpop: proof },
    ];
    for (const headers of attempts) {
      const a = await call(base, '/api/v1/me', headers);
      assertRefused(a, 401, 'invalid-token', 'invalid_token');
      assert.match(
        String(a.headers['www-authenticate']),
        /^Bearer realm="smart-home", error="invalid_token"/,
      );
    }
  });

  test('an unbound token under the DPoP scheme, or a DPoP token without a proof, is refused', async () => {
    const unbound = await mint();
    const proof = await dpopProof(client, { htm: 'GET', htu, token: unbound });
    assertRefused(
      await call(base, '/api/v1/me', { authorization: `DPoP ${unbound}`, dpop: proof }),
      401,
      'invalid-token',
      'invalid_token',
    );
    const bound = await mint({ cnf: { jkt } });
    const a = await call(base, '/api/v1/me', { authorization: `DPoP ${bound}` });
    assertRefused(a, 401, 'invalid-dpop-proof', 'invalid_dpop_proof');
    assert.match(
      String(a.headers['www-authenticate']),
      /DPoP realm="smart-home", error="invalid_dpop_proof", .*algs="ES256 EdDSA"/,
    );
  });

  test('a proof for another method or another URL is refused', async () => {
    const token = await mint({ cnf: { jkt } });
    for (const p of [
      { htm: 'POST', htu },
      { htm: 'get', htu },
      { htm: 'GET', htu: `${PUBLIC_URL}/api/v1/vehicles` },
      { htm: 'GET', htu: `https://evil.example/api/v1/me` },
      { htm: 'GET', htu: `http://smart-home.test/api/v1/me` },
      { htm: 'GET', htu: `${base}/api/v1/me` },
    ]) {
      const proof = await dpopProof(client, { ...p, token });
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: proof }),
        401,
        'invalid-dpop-proof',
        'invalid_dpop_proof',
      );
    }
  });

  test('a proof with a wrong or missing ath is refused', async () => {
    const token = await mint({ cnf: { jkt } });
    const other = await mint({ cnf: { jkt } });
    for (const ath of [hash('sha256', other, 'base64url'), hash('sha256', token, 'hex'), '']) {
      const proof = await dpopProof(client, { htm: 'GET', htu, ath });
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: proof }),
        401,
        'invalid-dpop-proof',
        'invalid_dpop_proof',
      );
    }
  });

  test('a replayed proof (same jti) is refused the second time', async () => {
    const token = await mint({ cnf: { jkt } });
    const proof = await dpopProof(client, { htm: 'GET', htu, token });
    const headers = { authorization: `DPoP ${token}`, dpop: proof };
    assert.equal((await call(base, '/api/v1/me', headers)).status, 200);
    const again = await call(base, '/api/v1/me', headers);
    assertRefused(again, 401, 'invalid-dpop-proof', 'invalid_dpop_proof');
    assert.equal(again.body['detail'], 'the DPoP proof was already used');
  });

  test('a stale or future iat is refused', async () => {
    const token = await mint({ cnf: { jkt } });
    for (const iat of [now() - 120, now() + 120]) {
      const proof = await dpopProof(client, { htm: 'GET', htu, token, iat });
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: proof }),
        401,
        'invalid-dpop-proof',
        'invalid_dpop_proof',
      );
    }
  });

  test('a proof signed by a key whose thumbprint differs from cnf.jkt is refused', async () => {
    const token = await mint({ cnf: { jkt } });
    const thief = await es256('thief');
    const proof = await dpopProof(thief, { htm: 'GET', htu, token });
    const a = await call(base, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: proof });
    assertRefused(a, 401, 'invalid-dpop-proof', 'invalid_dpop_proof');
  });

  test('a proof with the wrong typ, a private key in jwk, an HMAC alg or two DPoP headers is refused', async () => {
    const token = await mint({ cnf: { jkt } });
    const wrongTyp = await dpopProof(client, { htm: 'GET', htu, token }, { typ: 'JWT' });
    const priv = await exportJWK(client.privateKey);
    const withPrivate = await dpopProof(client, { htm: 'GET', htu, token }, { jwk: priv });
    const hmac = await new SignJWT({
      htm: 'GET',
      htu,
      iat: now(),
      jti: randomUUID(),
      ath: hash('sha256', token, 'base64url'),
    })
      .setProtectedHeader({ alg: 'HS256', typ: 'dpop+jwt', jwk: { kty: 'oct', k: 'AAAA' } } as never)
      .sign(new Uint8Array(32));
    for (const proof of [wrongTyp, withPrivate, hmac, 'not.a.jwt']) {
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: proof }),
        401,
        'invalid-dpop-proof',
        'invalid_dpop_proof',
      );
    }
    const p1 = await dpopProof(client, { htm: 'GET', htu, token });
    const p2 = await dpopProof(client, { htm: 'GET', htu, token });
    const res = await request(`${base}/api/v1/me`, {
      headers: ['authorization', `DPoP ${token}`, 'dpop', p1, 'dpop', p2],
      dispatcher,
    });
    await res.body.text();
    assert.equal(res.statusCode, 401);
  });

  test('requireDpop refuses bearer tokens altogether', async () => {
    const { app: strict, url } = await startProbeApp(embeddedVerifier({ requireDpop: true }));
    try {
      const a = await call(url, '/api/v1/me', { authorization: `Bearer ${await mint()}` });
      assertRefused(a, 401, 'invalid-token', 'invalid_token');
      // Only the DPoP challenge is offered.
      assert.match(String(a.headers['www-authenticate']), /^DPoP realm="smart-home"/);
      assert.ok(!String(a.headers['www-authenticate']).includes('Bearer'));
      const token = await mint({ cnf: { jkt } });
      const proof = await dpopProof(client, { htm: 'GET', htu, token });
      assert.equal(
        (await call(url, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: proof })).status,
        200,
      );
    } finally {
      await strict.close();
    }
  });

  test('without a nonce secret, a proof carrying a nonce is judged by its iat alone', async () => {
    const token = await mint({ cnf: { jkt } });
    const fresh = await dpopProof(client, { htm: 'GET', htu, token, nonce: 'learnt-from-the-as' });
    assert.equal(
      (await call(base, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: fresh })).status,
      200,
    );
    const stale = await dpopProof(client, {
      htm: 'GET',
      htu,
      token,
      nonce: 'learnt-from-the-as',
      iat: now() - 300,
    });
    assertRefused(
      await call(base, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: stale }),
      401,
      'invalid-dpop-proof',
      'invalid_dpop_proof',
    );
  });

  test('server nonces (RFC 9449 §9): use_dpop_nonce with DPoP-Nonce, then the nonce is accepted', async () => {
    const nonces = new DpopNonces(new Uint8Array(32).fill(7));
    const verifier = embeddedVerifier({
      dpop: {
        algorithms: ['ES256'],
        maxAgeSeconds: 60,
        replayCache,
        publicUrl: PUBLIC_URL,
        nonces,
        requireNonce: true,
      },
    });
    const { app: withNonce, url } = await startProbeApp(verifier);
    try {
      const token = await mint({ cnf: { jkt } });
      const first = await call(url, '/api/v1/me', {
        authorization: `DPoP ${token}`,
        dpop: await dpopProof(client, { htm: 'GET', htu, token }),
      });
      assertRefused(first, 401, 'use-dpop-nonce', 'use_dpop_nonce');
      const nonce = String(first.headers['dpop-nonce']);
      assert.equal(nonce, nonces.next());
      const forged = await dpopProof(client, { htm: 'GET', htu, token, nonce: 'A'.repeat(43) });
      assertRefused(
        await call(url, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: forged }),
        401,
        'use-dpop-nonce',
        'use_dpop_nonce',
      );
      const ok = await dpopProof(client, { htm: 'GET', htu, token, nonce });
      assert.equal((await call(url, '/api/v1/me', { authorization: `DPoP ${token}`, dpop: ok })).status, 200);
    } finally {
      await withNonce.close();
    }
  });
});

describe('external-IdP rules on a local key set', () => {
  let base: string;
  let app: FastifyInstance;
  let idpKey: Signer;
  const subject = 'f:realm:alice';
  const mapping = {
    subjectClaim: 'sub',
    rolesClaim: 'realm_access.roles',
    operatorRole: 'smart-home-operator',
    residentRole: 'smart-home-resident',
  };
  before(async () => {
    idpKey = await es256('kc-1');
    await db.query(sql`update residents set external_subject = ${subject} where id = ${residentId}`);
    const verifier = createApiTokenVerifier({
      kind: 'external',
      issuer: 'https://kc.example/realms/homes',
      jwks: { keys: [idpKey.publicJwk] },
      algorithms: ['ES256', 'RS256'],
      acceptJwtTyp: true,
      claims: mapping,
      db,
    });
    ({ app, url: base } = await startProbeApp(verifier));
  });
  after(async () => {
    await app.close();
    await db.query(sql`update residents set external_subject = null where id = ${residentId}`);
  });

  const kc = (over: Record<string, unknown> = {}, typ = 'JWT') =>
    mint(
      {
        iss: 'https://kc.example/realms/homes',
        sub: subject,
        role: undefined,
        client_id: undefined,
        azp: 'resident-app',
        typ: 'Bearer',
        realm_access: { roles: ['offline_access', 'smart-home-resident'] },
        ...over,
      },
      { key: idpKey, header: { typ } },
    );

  test('a Keycloak-shaped token (typ JWT, azp, realm roles) maps to the linked resident', async () => {
    const a = await call(base, '/api/v1/me', { authorization: `Bearer ${await kc()}` });
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(a.body['residentId'], residentId);
    assert.equal(a.body['subject'], subject);
    assert.equal(a.body['clientId'], 'resident-app');
  });

  test('the operator role maps to an operator; no known role, or an unlinked subject, is refused', async () => {
    const op = await kc({ sub: 'ops-1', realm_access: { roles: ['smart-home-operator'] } });
    const a = await call(base, '/admin/v1/residents', { authorization: `Bearer ${op}` });
    assert.equal(a.status, 200);
    assert.equal(a.body['operatorId'], 'ops-1');
    const noRole = await kc({ realm_access: { roles: ['offline_access'] } });
    assertRefused(
      await call(base, '/api/v1/me', { authorization: `Bearer ${noRole}` }),
      401,
      'invalid-token',
      'invalid_token',
    );
    const unlinked = await kc({ sub: 'someone-else' });
    assertRefused(
      await call(base, '/api/v1/me', { authorization: `Bearer ${unlinked}` }),
      401,
      'invalid-token',
      'invalid_token',
    );
  });

  test('a Keycloak ID token (typ claim ID, nonce, at_hash) is refused although typ JWT is accepted', async () => {
    for (const over of [{ typ: 'ID' }, { nonce: 'n' }, { at_hash: 'h' }, { typ: 'Refresh' }]) {
      assertRefused(
        await call(base, '/api/v1/me', { authorization: `Bearer ${await kc(over)}` }),
        401,
        'invalid-token',
        'invalid_token',
      );
    }
  });

  test('acceptJwtTyp is refused for the embedded issuer, and none/HS* never make an allowlist', () => {
    assert.throws(() => embeddedVerifier({ acceptJwtTyp: true }), /external/);
    for (const algorithms of [['none'], ['HS256'], ['ES256', 'HS512'], []]) {
      assert.throws(() => embeddedVerifier({ algorithms }), TypeError);
    }
  });
});

describe('logs', () => {
  test('no token or proof ever reaches the log', () => {
    const out = logLines.join('\n');
    assert.ok(out.includes('API access refused'), 'refusals are logged');
    assert.ok(!/eyJ[A-Za-z0-9_-]{10,}/.test(out), 'a JWT reached the log');
  });
});
