import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import Fastify, { type FastifyInstance } from 'fastify';
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  type JWK,
  jwtVerify,
} from 'jose';
import { Agent, request } from 'undici';
import {
  certThumbprintS256,
  createCa,
  issueClientCert,
  issueServerCert,
  type KeyPairPem,
} from '../../pki/certificates.ts';
import { createAccessTokenVerifier, TokenError } from './access-token.ts';
import {
  createPartnerAuthorizationServer,
  PARTNER_API_AUDIENCE,
  type PartnerAuthorizationServer,
  type PartnerClient,
} from './authorization-server.ts';

// The issuer is the partner listener's configured base URL; it need not be the test's ephemeral port.
const ISSUER = 'https://partner.smart-home.test:9443';

let serverCa: KeyPairPem;
let partnerCa: KeyPairPem;
let alice: KeyPairPem; // registered for partner-a
let aliceSpare: KeyPairPem; // also registered for partner-a (certificate rotation overlap)
let mallory: KeyPairPem; // same partner CA, registered for no client
let bob: KeyPairPem; // registered for partner-b only
let signingJwk: JWK;
let as: PartnerAuthorizationServer;
let app: FastifyInstance;
let base: string;
const registry = new Map<string, PartnerClient>();
const warnings: { obj: object; msg: string }[] = [];
const agents: Agent[] = [];

function agentFor(cert: KeyPairPem): Agent {
  const agent = new Agent({
    connect: { cert: cert.certPem, key: cert.keyPem, ca: serverCa.certPem, servername: 'localhost' },
  });
  agents.push(agent);
  return agent;
}

let clients: Record<'alice' | 'aliceSpare' | 'mallory' | 'bob', Agent>;

async function tokenRequest(agent: Agent, params: Record<string, string>) {
  const res = await request(`${base}/oauth/token`, {
    method: 'POST',
    dispatcher: agent,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(params).toString(),
  });
  return {
    status: res.statusCode,
    headers: res.headers,
    body: (await res.body.json()) as Record<string, unknown>,
  };
}

const contractRequest = (clientId: string, scope: string) => ({
  grant_type: 'client_credentials',
  client_id: clientId,
  scope,
  resource: PARTNER_API_AUDIENCE,
});

before(async () => {
  serverCa = await createCa({ commonName: 'test server CA' });
  partnerCa = await createCa({ commonName: 'test partner issuing CA' });
  const serverCert = await issueServerCert(serverCa, {
    commonName: 'localhost',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  [alice, aliceSpare, mallory, bob] = (await Promise.all(
    ['alice', 'alice-spare', 'mallory', 'bob'].map((commonName) =>
      issueClientCert(partnerCa, { commonName }),
    ),
  )) as [KeyPairPem, KeyPairPem, KeyPairPem, KeyPairPem];

  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  signingJwk = { ...(await exportJWK(privateKey)), kid: 'as-test-1' };

  registry.set('partner-a', {
    clientId: 'partner-a',
    scopes: ['barrier:decide', 'events:write'],
    certThumbprints: [certThumbprintS256(alice.certPem), certThumbprintS256(aliceSpare.certPem)],
    enabled: true,
  });
  registry.set('partner-b', {
    clientId: 'partner-b',
    scopes: ['face:decide'],
    certThumbprints: [certThumbprintS256(bob.certPem)],
    enabled: true,
  });
  registry.set('partner-off', {
    clientId: 'partner-off',
    scopes: ['barrier:decide'],
    certThumbprints: [certThumbprintS256(mallory.certPem)],
    enabled: false,
  });

  as = createPartnerAuthorizationServer({
    issuer: ISSUER,
    signingKey: signingJwk,
    findClient: async (id) => registry.get(id),
    logger: { warn: (obj, msg) => warnings.push({ obj, msg }) },
  });

  app = Fastify({
    https: {
      key: serverCert.keyPem,
      cert: serverCert.certPem,
      ca: partnerCa.certPem,
      requestCert: true,
      rejectUnauthorized: true,
    },
  });
  await as.mount(app);

  // A protected route as the partner zone will have it: token bound to this connection's certificate.
  const verifier = createAccessTokenVerifier({
    issuer: ISSUER,
    audience: PARTNER_API_AUDIENCE,
    jwks: as.jwks,
  });
  app.get('/whoami', async (req, reply) => {
    const cert = (req.raw.socket as TLSSocket).getPeerX509Certificate();
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    try {
      const t = await verifier.verify(token, cert ? certThumbprintS256(cert.raw) : '');
      return { clientId: t.clientId, scopes: [...t.scopes] };
    } catch (err) {
      return reply.code(401).send({ code: (err as TokenError).code });
    }
  });

  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as { port: number };
  base = `https://127.0.0.1:${port}`;
  clients = {
    alice: agentFor(alice),
    aliceSpare: agentFor(aliceSpare),
    mallory: agentFor(mallory),
    bob: agentFor(bob),
  };
});

after(async () => {
  await Promise.all(agents.map((a) => a.close()));
  await app.close();
});

describe('POST /oauth/token (contract §2, RFC 6749 §4.4 + RFC 8705)', () => {
  test('a registered partner with its certificate gets a certificate-bound RFC 9068 access token', async () => {
    const before = Math.floor(Date.now() / 1000);
    const res = await tokenRequest(
      clients.alice,
      contractRequest('partner-a', 'barrier:decide events:write'),
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.headers['cache-control'], 'no-store'); // RFC 6749 §5.1
    assert.deepEqual(Object.keys(res.body).sort(), ['access_token', 'expires_in', 'scope', 'token_type']);
    assert.equal(res.body['token_type'], 'Bearer');
    assert.equal(res.body['expires_in'], 600);
    assert.equal(res.body['scope'], 'barrier:decide events:write');

    const token = res.body['access_token'] as string;
    const header = decodeProtectedHeader(token);
    assert.deepEqual(header, { typ: 'at+jwt', alg: 'ES256', kid: 'as-test-1' });
    const { payload } = await jwtVerify(token, createLocalJWKSet(as.jwks), { algorithms: ['ES256'] });
    assert.equal(payload.iss, ISSUER);
    assert.equal(payload.sub, 'partner-a');
    assert.equal(payload['client_id'], 'partner-a');
    assert.equal(payload.aud, PARTNER_API_AUDIENCE);
    assert.equal(payload['scope'], 'barrier:decide events:write');
    assert.ok(typeof payload.iat === 'number' && payload.iat >= before - 1 && payload.iat <= before + 5);
    assert.equal(payload.exp, payload.iat + 600);
    assert.ok(typeof payload.jti === 'string' && payload.jti.length >= 16);
    assert.deepEqual(payload['cnf'], { 'x5t#S256': certThumbprintS256(alice.certPem) });
  });

  test('each token has its own jti', async () => {
    const a = await tokenRequest(clients.alice, contractRequest('partner-a', 'barrier:decide'));
    const b = await tokenRequest(clients.alice, contractRequest('partner-a', 'barrier:decide'));
    assert.notEqual(
      decodeJwt(a.body['access_token'] as string).jti,
      decodeJwt(b.body['access_token'] as string).jti,
    );
  });

  test('the token is bound to the certificate actually presented, among those registered', async () => {
    const res = await tokenRequest(clients.aliceSpare, contractRequest('partner-a', 'events:write'));
    assert.equal(res.status, 200);
    const payload = decodeJwt(res.body['access_token'] as string);
    assert.deepEqual(payload['cnf'], { 'x5t#S256': certThumbprintS256(aliceSpare.certPem) });
  });

  test('the token carries exactly the requested scopes when they are all granted', async () => {
    const res = await tokenRequest(clients.alice, contractRequest('partner-a', 'events:write'));
    assert.equal(res.status, 200);
    assert.equal(res.body['scope'], 'events:write');
    assert.equal(decodeJwt(res.body['access_token'] as string)['scope'], 'events:write');
  });

  test('without a resource the only resource there is applies', async () => {
    const res = await tokenRequest(clients.bob, {
      grant_type: 'client_credentials',
      client_id: 'partner-b',
      scope: 'face:decide',
    });
    assert.equal(res.status, 200);
    assert.equal(decodeJwt(res.body['access_token'] as string).aud, PARTNER_API_AUDIENCE);
  });

  test('an unknown client_id is invalid_client (401)', async () => {
    const res = await tokenRequest(clients.alice, contractRequest('partner-zzz', 'barrier:decide'));
    assert.equal(res.status, 401);
    assert.equal(res.body['error'], 'invalid_client');
    assert.ok(warnings.some((w) => (w.obj as { detail?: string }).detail === 'client not found'));
  });

  test('a certificate of the same CA not registered for the client is invalid_client (401)', async () => {
    const res = await tokenRequest(clients.mallory, contractRequest('partner-a', 'barrier:decide'));
    assert.equal(res.status, 401);
    assert.equal(res.body['error'], 'invalid_client');
  });

  test("another partner's registered certificate is invalid_client (401)", async () => {
    const res = await tokenRequest(clients.bob, contractRequest('partner-a', 'barrier:decide'));
    assert.equal(res.status, 401);
    assert.equal(res.body['error'], 'invalid_client');
  });

  test('a disabled client is invalid_client (401), even with its own certificate', async () => {
    const res = await tokenRequest(clients.mallory, contractRequest('partner-off', 'barrier:decide'));
    assert.equal(res.status, 401);
    assert.equal(res.body['error'], 'invalid_client');
  });

  test('a scope not granted to the partner is refused with invalid_scope, not reduced', async () => {
    for (const scope of ['barrier:decide face:decide', 'face:decide', 'doors:open', 'openid']) {
      const res = await tokenRequest(clients.alice, contractRequest('partner-a', scope));
      assert.equal(res.status, 400, scope);
      assert.equal(res.body['error'], 'invalid_scope', scope);
    }
  });

  test('a request without scope is invalid_scope', async () => {
    const res = await tokenRequest(clients.alice, {
      grant_type: 'client_credentials',
      client_id: 'partner-a',
      resource: PARTNER_API_AUDIENCE,
    });
    assert.equal(res.status, 400);
    assert.equal(res.body['error'], 'invalid_scope');
  });

  test('another resource is invalid_target (RFC 8707 §2)', async () => {
    const res = await tokenRequest(clients.alice, {
      ...contractRequest('partner-a', 'barrier:decide'),
      resource: 'https://elsewhere.example/api',
    });
    assert.equal(res.status, 400);
    assert.equal(res.body['error'], 'invalid_target');
  });

  test('other grant types are refused', async () => {
    const res = await tokenRequest(clients.alice, {
      grant_type: 'authorization_code',
      client_id: 'partner-a',
      code: 'x',
      redirect_uri: 'https://a.example/cb',
    });
    assert.equal(res.status, 400);
    assert.ok(['unauthorized_client', 'unsupported_grant_type'].includes(res.body['error'] as string));
  });

  test('a partner added to the registry, or given a new certificate, is served without a restart', async () => {
    const res1 = await tokenRequest(clients.mallory, contractRequest('partner-new', 'audit:exchange'));
    assert.equal(res1.body['error'], 'invalid_client');
    registry.set('partner-new', {
      clientId: 'partner-new',
      scopes: ['audit:exchange'],
      certThumbprints: [certThumbprintS256(mallory.certPem)],
      enabled: true,
    });
    try {
      const res2 = await tokenRequest(clients.mallory, contractRequest('partner-new', 'audit:exchange'));
      assert.equal(res2.status, 200);
      registry.set('partner-new', {
        ...registry.get('partner-new')!,
        certThumbprints: [certThumbprintS256(bob.certPem)],
      });
      const res3 = await tokenRequest(clients.mallory, contractRequest('partner-new', 'audit:exchange'));
      assert.equal(res3.status, 401);
      assert.equal(res3.body['error'], 'invalid_client');
    } finally {
      registry.delete('partner-new');
    }
  });

  test('errors are RFC 6749 §5.2 JSON, not problem+json', async () => {
    const res = await request(`${base}/oauth/token`, {
      method: 'POST',
      dispatcher: clients.alice,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(contractRequest('nobody', 'barrier:decide')).toString(),
    });
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const body = (await res.body.json()) as Record<string, unknown>;
    assert.equal(body['error'], 'invalid_client');
    assert.equal(typeof body['error_description'], 'string');
  });
});

describe('GET /oauth/jwks', () => {
  test('serves the public signing key only', async () => {
    const res = await request(`${base}/oauth/jwks`, { dispatcher: clients.alice });
    assert.equal(res.statusCode, 200);
    const body = (await res.body.json()) as { keys: JWK[] };
    assert.equal(body.keys.length, 1);
    const [key] = body.keys;
    assert.equal(key?.kid, 'as-test-1');
    assert.equal(key?.kty, 'EC');
    assert.equal(key?.crv, 'P-256');
    assert.equal(key?.d, undefined);
    assert.equal(key?.x, signingJwk.x);
    assert.deepEqual(
      as.jwks.keys.map((k) => k.d),
      [undefined],
    );
  });

  test('nothing else of the provider is reachable', async () => {
    for (const path of [
      '/oauth/.well-known/openid-configuration',
      '/.well-known/openid-configuration',
      '/oauth/auth',
      '/oauth/reg',
      '/oauth/me',
      '/oauth/request',
      '/oauth/token/introspection',
      '/oauth/session/end',
      '/oauth/tokenx',
    ]) {
      const res = await request(`${base}${path}`, { dispatcher: clients.alice });
      await res.body.dump();
      assert.equal(res.statusCode, 404, path);
    }
  });
});

describe('the issued token at a protected route (RFC 8705 §3)', () => {
  const call = async (agent: Agent, token: string) => {
    const res = await request(`${base}/whoami`, {
      dispatcher: agent,
      headers: { authorization: `Bearer ${token}` },
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };

  test('is accepted on a connection with the certificate it was issued to', async () => {
    const { body } = await tokenRequest(clients.alice, contractRequest('partner-a', 'barrier:decide'));
    const res = await call(clients.alice, body['access_token'] as string);
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { clientId: 'partner-a', scopes: ['barrier:decide'] });
  });

  test('is refused on a connection with another certificate, even one of the same partner', async () => {
    const { body } = await tokenRequest(clients.alice, contractRequest('partner-a', 'barrier:decide'));
    const token = body['access_token'] as string;
    assert.equal((await call(clients.alice, token)).status, 200); // now cached
    for (const agent of [clients.mallory, clients.aliceSpare]) {
      const res = await call(agent, token);
      assert.equal(res.status, 401);
      assert.equal(res.body['code'], 'ERR_TOKEN_CERT_MISMATCH');
    }
  });

  test('verifier: accepts with the right thumbprint, rejects with another certificate', async () => {
    const verifier = createAccessTokenVerifier({
      issuer: ISSUER,
      audience: PARTNER_API_AUDIENCE,
      jwks: as.jwks,
    });
    const { body } = await tokenRequest(clients.bob, contractRequest('partner-b', 'face:decide'));
    const token = body['access_token'] as string;
    const t = await verifier.verify(token, certThumbprintS256(bob.certPem));
    assert.equal(t.clientId, 'partner-b');
    assert.deepEqual([...t.scopes], ['face:decide']);
    assert.equal(t.jti, decodeJwt(token).jti);
    await assert.rejects(
      verifier.verify(token, certThumbprintS256(alice.certPem)),
      (e: unknown) => e instanceof TokenError && e.code === 'ERR_TOKEN_CERT_MISMATCH',
    );
  });
});

describe('on a listener that does not itself reject unverified certificates', () => {
  let lax: FastifyInstance;
  let laxBase: string;
  let rogue: KeyPairPem; // from a CA the listener does not trust

  before(async () => {
    const rogueCa = await createCa({ commonName: 'rogue CA' });
    rogue = await issueClientCert(rogueCa, { commonName: 'rogue' });
    registry.set('partner-rogue', {
      clientId: 'partner-rogue',
      scopes: ['barrier:decide'],
      certThumbprints: [certThumbprintS256(rogue.certPem)],
      enabled: true,
    });
    const serverCert = await issueServerCert(serverCa, {
      commonName: 'localhost',
      ipAddresses: ['127.0.0.1'],
    });
    lax = Fastify({
      https: {
        key: serverCert.keyPem,
        cert: serverCert.certPem,
        ca: partnerCa.certPem,
        requestCert: true,
        rejectUnauthorized: false,
      },
    });
    await as.mount(lax);
    await lax.listen({ host: '127.0.0.1', port: 0 });
    laxBase = `https://127.0.0.1:${(lax.server.address() as { port: number }).port}`;
  });
  after(async () => {
    registry.delete('partner-rogue');
    await lax.close();
  });

  const post = async (agent: Agent, params: Record<string, string>) => {
    const res = await request(`${laxBase}/oauth/token`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params).toString(),
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };

  test('a pinned certificate that does not chain to a trusted CA is still invalid_client', async () => {
    const res = await post(agentFor(rogue), contractRequest('partner-rogue', 'barrier:decide'));
    assert.equal(res.status, 401);
    assert.equal(res.body['error'], 'invalid_client');
    assert.deepEqual(warnings.at(-1)?.obj, {
      error: 'invalid_client',
      detail: 'client certificate was not verified',
      clientId: 'partner-rogue',
    });
  });

  test('no client certificate is invalid_client', async () => {
    const agent = new Agent({ connect: { ca: serverCa.certPem, servername: 'localhost' } });
    agents.push(agent);
    const res = await post(agent, contractRequest('partner-a', 'barrier:decide'));
    assert.equal(res.status, 401);
    assert.equal(res.body['error'], 'invalid_client');
    assert.equal(
      (warnings.at(-1)?.obj as { detail?: string } | undefined)?.detail,
      'client certificate was not provided',
    );
  });

  test('the same AS still serves a well-authenticated partner there', async () => {
    const res = await post(clients.alice, contractRequest('partner-a', 'barrier:decide'));
    assert.equal(res.status, 200);
  });
});
