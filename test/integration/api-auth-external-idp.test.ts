// External identity provider mode over real TLS: a second, independent oidc-provider on loopback
// (test/support/external-idp.ts: its own issuer, CA and RSA key) issues the access tokens; the public
// API's check, built from configuration exactly as the service builds it, accepts and maps them, and
// refuses the embedded issuer's tokens (and the embedded check refuses the IdP's).
import assert from 'node:assert/strict';
import { hash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { type CryptoKey, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { Agent, request } from 'undici';
import { type ApiTokenVerifier, createApiTokenVerifier } from '../../src/api-auth/access-token.ts';
import { discoverExternalIdp, fetchTrusting } from '../../src/api-auth/external-idp.ts';
import { createPublicApiVerifier } from '../../src/api-auth/from-config.ts';
import { apiAuth } from '../../src/api-auth/hook.ts';
import { API_AUDIENCE, type Principal } from '../../src/api-auth/principal.ts';
import { loadConfig } from '../../src/config/config.ts';
import { FieldCipher } from '../../src/crypto/field-cipher.ts';
import { kekFromBytes } from '../../src/crypto/kek.ts';
import type { Db } from '../../src/db/db.ts';
import { sql } from '../../src/db/sql.ts';
import { installProblemHandlers } from '../../src/http/problem-handler.ts';
import { MemoryReplayCache } from '../../src/http-signatures/replay-cache.ts';
import { createCa, issueServerCert, type KeyPairPem } from '../../src/pki/certificates.ts';
import { applyDocument } from '../../src/registry/apply.ts';
import { DATA_KEY_PURPOSES } from '../../src/registry/data-key-purposes.ts';
import { DocumentError, type ProvisioningDocument } from '../../src/registry/document.ts';
import { type ExternalIdp, startExternalIdp } from '../support/external-idp.ts';
import { createTestDb } from '../support/test-db.ts';

const PUBLIC_URL = 'https://smart-home.test';
const EMBEDDED_ISSUER = 'https://smart-home.test/oauth';
const now = () => Math.floor(Date.now() / 1000);

let db: Db;
let idp: ExternalIdp;
let serverTls: KeyPairPem;
let dispatcher: Agent;
let aliceId: string;
let embeddedKey: { privateKey: CryptoKey; publicJwk: JWK };
let cipher: FieldCipher;
const replayCache = new MemoryReplayCache();

function document(externalSubject: string, other?: string): ProvisioningDocument {
  return {
    version: 1,
    complexes: [
      {
        code: 'c1',
        name: 'Complex',
        buildings: [
          { code: 'b1', name: 'B', entrances: [{ code: 'e1', name: 'E', apartments: ['1', '2'] }] },
        ],
      },
    ],
    residents: [
      { ref: 'alice', fullName: 'Alice', phone: '+79000000001', apartments: ['c1/b1/e1/1'], externalSubject },
      {
        ref: 'bob',
        fullName: 'Bob',
        phone: '+79000000002',
        apartments: ['c1/b1/e1/2'],
        ...(other ? { externalSubject: other } : {}),
      },
    ],
  };
}

async function startProbeApp(verifier: ApiTokenVerifier): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({
    https: { cert: serverTls.certPem, key: serverTls.keyPem },
  }) as unknown as FastifyInstance;
  installProblemHandlers(app);
  const show = (req: { principal?: Principal }) => ({
    ...req.principal!,
    scopes: [...req.principal!.scopes],
  });
  await app.register(
    async (api) => {
      await apiAuth({ verifier, requiredRole: 'resident' })(api);
      api.get('/me', async (req) => show(req));
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
  return { app, url: await app.listen({ port: 0, host: '127.0.0.1' }) };
}

async function call(base: string, p: string, headers: Record<string, string>) {
  const res = await request(`${base}${p}`, { headers, dispatcher });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    www: String(res.headers['www-authenticate'] ?? ''),
    body: (text ? JSON.parse(text) : {}) as Record<string, unknown>,
  };
}

function externalConfig(issuer: string, caFile: string) {
  return loadConfig({
    NODE_ENV: 'test',
    SMART_HOME_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'api-auth-')),
    SMART_HOME_EXTERNAL_IDP_ISSUER: issuer,
    SMART_HOME_EXTERNAL_IDP_CA_FILE: caFile,
    SMART_HOME_EXTERNAL_IDP_TIMEOUT_MS: '2000',
  });
}

before(async () => {
  db = await createTestDb();
  const ca = await createCa({ commonName: 'public listener test CA' });
  serverTls = await issueServerCert(ca, { commonName: 'public', ipAddresses: ['127.0.0.1'] });
  dispatcher = new Agent({ connect: { ca: ca.certPem } });
  idp = await startExternalIdp([
    {
      clientId: 'resident-alice',
      secret: randomBytes(24).toString('base64url'),
      roles: ['smart-home-resident'],
    },
    {
      clientId: 'operator-olga',
      secret: randomBytes(24).toString('base64url'),
      roles: ['smart-home-operator'],
    },
    { clientId: 'stranger', secret: randomBytes(24).toString('base64url'), roles: ['smart-home-resident'] },
    { clientId: 'no-role', secret: randomBytes(24).toString('base64url'), roles: ['uma_authorization'] },
  ]);
  cipher = await FieldCipher.open(db, kekFromBytes(randomBytes(32)), DATA_KEY_PURPOSES);
  // Residents are linked by the IdP's subject through the provisioning document.
  await applyDocument({ db, cipher }, document('resident-alice'), { type: 'operator', id: 'test' });
  aliceId = (await db.one<{ id: string }>(sql`select id from residents where ref = 'alice'`))!.id;
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  embeddedKey = { privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid: 'as-1', alg: 'ES256' } };
});
after(async () => {
  await idp.close();
  await dispatcher.close();
  await db.close();
});

describe('external IdP mode, built from configuration', () => {
  let base: string;
  let app: FastifyInstance;
  let verifier: ApiTokenVerifier;
  before(async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'idp-ca-'));
    writeFileSync(path.join(dir, 'ca.pem'), idp.caPem);
    const config = externalConfig(idp.issuer, path.join(dir, 'ca.pem'));
    assert.equal(config.apiAuth.external.rolesClaim, 'realm_access.roles');
    verifier = createPublicApiVerifier({
      config,
      db,
      replayCache,
      publicUrl: PUBLIC_URL,
      // Configured, but an external IdP takes precedence: only one issuer is trusted.
      embedded: { issuer: EMBEDDED_ISSUER, jwks: { keys: [embeddedKey.publicJwk] } },
    });
    assert.equal(verifier.kind, 'external');
    ({ app, url: base } = await startProbeApp(verifier));
  });
  after(() => app.close());

  test('its resident token is accepted and mapped to the linked resident; keys are fetched once', async () => {
    const token = await idp.token('resident-alice');
    for (let i = 0; i < 3; i++) {
      const a = await call(base, '/api/v1/me', { authorization: `Bearer ${token}` });
      assert.equal(a.status, 200, JSON.stringify(a.body));
      assert.equal(a.body['kind'], 'resident');
      assert.equal(a.body['residentId'], aliceId);
      assert.equal(a.body['subject'], 'resident-alice');
      assert.deepEqual(a.body['scopes'], ['doors:open']);
    }
    assert.deepEqual(idp.fetched, { discovery: 1, jwks: 1 });
  });

  test('its operator token maps to an operator on /admin/v1 and is 403 on /api/v1', async () => {
    const token = await idp.token('operator-olga');
    const a = await call(base, '/admin/v1/residents', { authorization: `Bearer ${token}` });
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(a.body['operatorId'], 'operator-olga');
    assert.equal((await call(base, '/api/v1/me', { authorization: `Bearer ${token}` })).status, 403);
    const resident = await idp.token('resident-alice');
    assert.equal(
      (await call(base, '/admin/v1/residents', { authorization: `Bearer ${resident}` })).status,
      403,
    );
  });

  test('a subject linked to no resident, or a token with no role of ours, is 401', async () => {
    for (const client of ['stranger', 'no-role']) {
      const a = await call(base, '/api/v1/me', { authorization: `Bearer ${await idp.token(client)}` });
      assert.equal(a.status, 401);
      assert.match(a.www, /error="invalid_token"/);
    }
  });

  test('a token of the embedded issuer is refused while the external IdP is configured', async () => {
    const embedded = await new SignJWT({
      sub: aliceId,
      role: 'resident',
      client_id: 'app',
      scope: 'doors:open',
      jti: randomUUID(),
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: 'as-1' })
      .setIssuer(EMBEDDED_ISSUER)
      .setAudience(API_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(embeddedKey.privateKey);
    const a = await call(base, '/api/v1/me', { authorization: `Bearer ${embedded}` });
    assert.equal(a.status, 401);
    assert.match(a.www, /error="invalid_token"/);
  });

  test('a DPoP-bound token of the IdP needs a proof by the same key at the resource server', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = await exportJWK(publicKey);
    const proof = (htm: string, htu: string, extra: Record<string, unknown> = {}) =>
      new SignJWT({ htm, htu, iat: now(), jti: randomUUID(), ...extra })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
        .sign(privateKey);
    const token = await idp.token('resident-alice', { dpopProof: await proof('POST', idp.tokenEndpoint) });
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
      cnf?: { jkt?: string };
    };
    assert.equal(claims.cnf?.jkt, await calculateJwkThumbprint(jwk));
    const ath = hash('sha256', token, 'base64url');
    const ok = await call(base, '/api/v1/me', {
      authorization: `DPoP ${token}`,
      dpop: await proof('GET', `${PUBLIC_URL}/api/v1/me`, { ath }),
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body['residentId'], aliceId);
    const bearer = await call(base, '/api/v1/me', { authorization: `Bearer ${token}` });
    assert.equal(bearer.status, 401);
    assert.match(bearer.www, /error="invalid_token"/);
  });
});

describe('the embedded issuer refuses the external IdP’s tokens', () => {
  test('an IdP token (its issuer, its keys) is 401 on the embedded check', async () => {
    const embedded = createApiTokenVerifier({
      issuer: EMBEDDED_ISSUER,
      jwks: { keys: [embeddedKey.publicJwk] },
      db,
    });
    const { app, url } = await startProbeApp(embedded);
    try {
      const a = await call(url, '/api/v1/me', {
        authorization: `Bearer ${await idp.token('resident-alice')}`,
      });
      assert.equal(a.status, 401);
      assert.match(a.www, /error="invalid_token"/);
    } finally {
      await app.close();
    }
  });
});

describe('createApiTokenVerifier with remote keys', () => {
  test('keys fetched from a jwks_uri verify the IdP’s tokens; the issuer is still pinned', async () => {
    const remote = { jwksUri: `${idp.issuer}/jwks`, timeoutMs: 2000, fetch: fetchTrusting(idp.caPem) };
    const claims = {
      subjectClaim: 'sub',
      rolesClaim: 'realm_access.roles',
      operatorRole: 'smart-home-operator',
      residentRole: 'smart-home-resident',
    };
    const good = createApiTokenVerifier({
      kind: 'external',
      issuer: idp.issuer,
      remote,
      algorithms: ['RS256'],
      claims,
      db,
    });
    const token = await idp.token('resident-alice');
    const t = await good.verifyAccessToken(token);
    assert.equal(t.subject, 'resident-alice');
    assert.equal(t.role, 'resident');
    // Same keys, but ES256 only: the RS256 token no longer verifies (algorithms are pinned).
    const es256Only = createApiTokenVerifier({ kind: 'external', issuer: idp.issuer, remote, claims, db });
    await assert.rejects(es256Only.verifyAccessToken(token), { code: 'invalid_token' });
    const otherIssuer = createApiTokenVerifier({
      kind: 'external',
      issuer: 'https://127.0.0.1/realms/other',
      remote,
      algorithms: ['RS256'],
      claims,
      db,
    });
    await assert.rejects(otherIssuer.verifyAccessToken(token), { code: 'invalid_token' });
  });
});

describe('discovery', () => {
  test('the document must name the configured issuer exactly (OIDC Discovery §4.3)', async () => {
    const f = fetchTrusting(idp.caPem);
    const meta = await discoverExternalIdp({ issuer: idp.issuer, timeoutMs: 2000, fetch: f });
    assert.equal(meta.jwksUri, `${idp.issuer}/jwks`);
    await assert.rejects(discoverExternalIdp({ issuer: `${idp.issuer}/`, timeoutMs: 2000, fetch: f }), {
      code: 'ERR_EXTERNAL_IDP',
    });
    await assert.rejects(
      discoverExternalIdp({ issuer: 'http://127.0.0.1/realms/x', timeoutMs: 2000, fetch: f }),
      {
        code: 'ERR_EXTERNAL_IDP',
      },
    );
  });

  test('without the IdP’s CA, or with the IdP unreachable, tokens are refused with 401 (never 500)', async () => {
    const token = await idp.token('resident-alice');
    const dir = mkdtempSync(path.join(tmpdir(), 'idp-ca-'));
    const wrongCa = (await createCa({ commonName: 'unrelated CA' })).certPem;
    writeFileSync(path.join(dir, 'wrong.pem'), wrongCa);
    for (const issuer of [idp.issuer, 'https://127.0.0.1:1/realms/test']) {
      const verifier = createPublicApiVerifier({
        config: externalConfig(issuer, path.join(dir, 'wrong.pem')),
        db,
        replayCache,
        publicUrl: PUBLIC_URL,
      });
      await assert.rejects(verifier.verifyAccessToken(token), { code: 'invalid_token' });
    }
  });
});

describe('the provisioning document', () => {
  test('an absent externalSubject leaves a resident unlinked; one subject names one resident', async () => {
    const bob = await db.one<{ external_subject: string | null }>(
      sql`select external_subject from residents where ref = 'bob'`,
    );
    assert.equal(bob?.external_subject, null);
    const actor = { type: 'operator' as const, id: 'test' };
    await assert.rejects(
      applyDocument({ db, cipher }, document('resident-alice', 'resident-alice'), actor),
      (err: unknown) => err instanceof DocumentError && err.path === '/residents/1/externalSubject',
    );
    // Re-applying the original document changes nothing.
    const s = await applyDocument({ db, cipher }, document('resident-alice'), actor);
    assert.equal(s.updated, 0);
  });
});
