/**
 * The shared security suite (STYLE.md, after unkey): every partner route is run through every way a
 * request can be illegitimate, and must fail the same way. A new partner route is added to ROUTES and
 * inherits all of it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importJWK, type JWK, SignJWT } from 'jose';
import { createPartnerIdentity, journalSigner, type PartnerIdentity } from '../../simulator/identity.ts';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { createCa, issueClientCert } from '../../src/pki/certificates.ts';
import { leafHash, rootOfLeafHashes } from '../../src/tlog/merkle.ts';
import { formatCheckpoint, signNote } from '../../src/tlog/note.ts';
import { formatAddCheckpoint } from '../../src/tlog/witness.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { type Harness, startHarness } from '../support/harness.ts';
import { PLATES, standardWorld } from '../support/world.ts';

interface PartnerRoute {
  name: string;
  method: 'POST' | 'GET';
  scope: string;
  /** A request of north's that succeeds. */
  path: string;
  body: (c: PartnerClient) => unknown;
  /** The same operation on a device north may not reach (another partner's, outside its perimeter). */
  foreignPath: string;
  /** A body with one unknown field, when the route takes a body. */
  withUnknownField?: (c: PartnerClient) => unknown;
  okStatus: number;
  /** A body sent as it is (text) with this content type, instead of JSON. */
  rawContentType?: string;
  /** The body of the foreign request, when the body (not the path) names what north may not reach. */
  foreignBody?: (c: PartnerClient) => unknown;
  /** A scope north holds that is not this route's (default `audit:exchange`). */
  otherScope?: string;
  /**
   * What the foreign request answers (default 404). 200 for a route whose answers only ever hold the
   * caller's own entries: what another partner has is left out, never named.
   */
  foreignStatus?: number;
  /** Bytes of a body over the route's limit (default 300,000). */
  oversizedBytes?: number;
}

const decisionBody = (c: PartnerClient) => ({
  eventId: uuidv7(),
  capturedAt: new Date().toISOString(),
  direction: 'entry',
  candidates: [{ ...c.plateCandidate(PLATES.anna), confidence: 0.9 }],
});

// Contract §8.4: the caller's own set over one hour; an empty set's first Negentropy message (ASCII bytes).
const reconWindow = `from=${new Date(Date.now() - 3_600_000).toISOString()}&to=${new Date(Date.now() + 60_000).toISOString()}`;
const reconFirstMessage = Buffer.from([0x61, 0x00, 0x00, 0x02, 0x00]).toString('latin1');

const ROUTES: PartnerRoute[] = [
  {
    name: 'POST /partner/v1/barriers/{id}/decisions',
    method: 'POST',
    scope: 'barrier:decide',
    path: '/partner/v1/barriers/gate-1/decisions',
    body: decisionBody,
    foreignPath: '/partner/v1/barriers/gate-s/decisions',
    withUnknownField: (c) => ({ ...decisionBody(c), plate: 'A123BC77' }),
    okStatus: 200,
  },
  {
    // Contract §8.2: north's own log, at the size we already cosigned (200 every time: idempotent).
    name: 'POST /partner/v1/journal/witness/add-checkpoint',
    method: 'POST',
    scope: 'audit:exchange',
    path: '/partner/v1/journal/witness/add-checkpoint',
    body: () => formatAddCheckpoint({ oldSize: 3, proof: [], note: northCheckpoint() }),
    foreignPath: '/partner/v1/journal/witness/add-checkpoint',
    // South's log, signed by south's real key: north can only submit its own.
    foreignBody: () => formatAddCheckpoint({ oldSize: 0, proof: [], note: southCheckpoint() }),
    rawContentType: 'text/plain; charset=utf-8',
    otherScope: 'barrier:decide',
    okStatus: 200,
  },
  {
    // Contract §8.4: the set reconciled is always the caller's own; south's entries never enter it.
    name: 'POST /partner/v1/journal/reconcile',
    method: 'POST',
    scope: 'audit:exchange',
    path: `/partner/v1/journal/reconcile?${reconWindow}`,
    body: () => reconFirstMessage,
    foreignPath: `/partner/v1/journal/reconcile?${reconWindow}`,
    foreignStatus: 200,
    rawContentType: 'application/octet-stream',
    otherScope: 'barrier:decide',
    oversizedBytes: 4 * 1024 * 1024 + 1,
    okStatus: 200,
  },
  {
    // Contract §8.4: an element of south's is left out of north's answer (200, nothing about it).
    name: 'POST /partner/v1/journal/projections',
    method: 'POST',
    scope: 'audit:exchange',
    path: '/partner/v1/journal/projections',
    body: () => ({ elements: ['00'.repeat(32)] }),
    foreignPath: '/partner/v1/journal/projections',
    foreignStatus: 200,
    withUnknownField: () => ({ elements: ['00'.repeat(32)], plate: 'A123BC77' }),
    otherScope: 'barrier:decide',
    okStatus: 200,
  },
  {
    // Contract §9: one new event of north's barrier each time (seq +1 per request that gets through).
    name: 'POST /partner/v1/events',
    method: 'POST',
    scope: 'events:write',
    path: '/partner/v1/events',
    body: () => ({ events: [partnerEvent('gate-1')] }),
    foreignPath: '/partner/v1/events',
    // South's barrier: the whole batch is 404, nothing about the device is revealed.
    foreignBody: () => ({ events: [partnerEvent('gate-s')] }),
    withUnknownField: () => ({ events: [{ ...partnerEvent('gate-1'), plate: 'A123BC77' }] }),
    okStatus: 200,
  },
];

let eventSeq = 0;
function partnerEvent(device: string) {
  return {
    eventId: uuidv7(),
    seq: ++eventSeq,
    type: 'access.granted',
    occurredAt: new Date().toISOString(),
    device,
    method: 'plate',
    subject: null,
    status: null,
  };
}

const partnerLogCheckpoint = (code: string) => {
  const leaves = [0, 1, 2].map((i) => leafHash(Buffer.from(`${code} entry ${i}`)));
  const signer = journalSigner(h.identities.get(code)!);
  return signNote(formatCheckpoint({ origin: signer.name, size: 3, root: rootOfLeafHashes(leaves) }), [
    signer,
  ]);
};
const northCheckpoint = () => partnerLogCheckpoint('barrier-north');
const southCheckpoint = () => partnerLogCheckpoint('barrier-south');

let h: Harness;
let north: PartnerClient;
let tokenKey: JWK;
let northSecondCert: PartnerIdentity;

const problemType = (res: { body: unknown }) => (res.body as { type?: string }).type;

before(async () => {
  h = await startHarness({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => {
      const w = standardWorld(ids);
      for (const p of w.partners ?? []) {
        p.logKey = journalSigner(ids.get(p.code)!).verifierKey;
        p.scopes = [...p.scopes, 'events:write'];
      }
      return w;
    },
    env: { SMART_HOME_TRUSTED_PROXIES: '127.0.0.4/32' },
  });
  north = await h.client('barrier-north');
  tokenKey = JSON.parse(await readFile(path.join(h.dataDir, 'keys', 'token-signing.jwk'), 'utf8')) as JWK;
  // North registers a second client certificate (rotation overlap): tokens stay bound to one of them.
  const first = h.identities.get('barrier-north')!;
  const second = await createPartnerIdentity('barrier-north', h.issuingCa);
  northSecondCert = {
    ...first,
    certPem: second.certPem,
    keyPem: second.keyPem,
    thumbprint: second.thumbprint,
  };
  const world = withLogKeys(standardWorld(h.identities));
  world.partners![0]!.certificates = [first.thumbprint, second.thumbprint];
  await h.apply(world);
  // The witness route's baseline re-submits north's checkpoint at the size we hold: have it held.
  const first3 = await north.send('POST', '/partner/v1/journal/witness/add-checkpoint', {
    scope: 'audit:exchange',
    rawBody: Buffer.from(formatAddCheckpoint({ oldSize: 0, proof: [], note: northCheckpoint() })),
    headers: { 'content-type': 'text/plain; charset=utf-8' },
  });
  assert.equal(first3.status, 200);
});

/** Contract §8.2: each partner's journal log key registered (the simulator identity's). */
function withLogKeys(world: ReturnType<typeof standardWorld>) {
  for (const p of world.partners ?? []) {
    p.logKey = journalSigner(h.identities.get(p.code)!).verifierKey;
    p.scopes = [...p.scopes, 'events:write'];
  }
  return world;
}
after(() => h.close());

async function forgeToken(
  claims: Record<string, unknown>,
  header: Record<string, unknown> = {},
  key?: JWK | Uint8Array,
) {
  const now = Math.floor(Date.now() / 1000);
  // Exactly what our authorization server issues, with `claims` and `header` overriding.
  const payload = {
    iss: 'https://localhost:9443',
    sub: 'barrier-north',
    aud: 'urn:smart-home:partner-api',
    iat: now,
    exp: now + 600,
    scope: 'barrier:decide',
    client_id: 'barrier-north',
    jti: uuidv7(),
    cnf: { 'x5t#S256': h.identities.get('barrier-north')!.thumbprint },
    ...claims,
  };
  const signer = new SignJWT(payload).setProtectedHeader({
    alg: 'ES256',
    typ: 'at+jwt',
    kid: tokenKey.kid,
    ...header,
  } as never);
  if (key instanceof Uint8Array) return signer.sign(key);
  return signer.sign(await importJWK(key ?? tokenKey, 'ES256'));
}

for (const route of ROUTES) {
  describe(`partner security suite: ${route.name}`, () => {
    /** The body as the route takes it: JSON, or text sent as it is. */
    const wire = (body: unknown): Partial<Parameters<PartnerClient['send']>[2]> =>
      route.rawContentType
        ? { rawBody: Buffer.from(String(body)), headers: { 'content-type': route.rawContentType } }
        : { body };
    const send = (c: PartnerClient, opts: Parameters<PartnerClient['send']>[2] = { scope: route.scope }) => {
      const { body, ...rest } = opts;
      const w = wire(body ?? route.body(north));
      return c.send(route.method, route.path, {
        ...w,
        ...rest,
        headers: { ...(w.headers ?? {}), ...(rest.headers ?? {}) },
        scope: route.scope,
      });
    };

    test('a legitimate request succeeds (the baseline every case below departs from)', async () => {
      const res = await send(north);
      assert.equal(res.status, route.okStatus);
      assert.equal(res.signatureValid, true);
    });

    test('no client certificate: the TLS handshake fails', async () => {
      const c = await h.client('barrier-north', {
        identity: { ...h.identities.get('barrier-north')!, certPem: '', keyPem: '' },
      });
      await assert.rejects(send(c));
    });

    test('a certificate from another CA: the TLS handshake fails', async () => {
      const rogueCa = await createCa({ commonName: 'rogue CA' });
      const rogue = await issueClientCert(rogueCa, { commonName: 'barrier-north' });
      const c = await h.client('barrier-north', {
        identity: { ...h.identities.get('barrier-north')!, certPem: rogue.certPem, keyPem: rogue.keyPem },
      });
      await assert.rejects(send(c));
    });

    test('a valid certificate that no partner registered is refused', async () => {
      const stranger = await createPartnerIdentity('stranger', h.issuingCa);
      const c = await h.client('barrier-north', {
        identity: {
          ...h.identities.get('barrier-north')!,
          certPem: stranger.certPem,
          keyPem: stranger.keyPem,
        },
      });
      await assert.rejects(c.token(route.scope));
      const res = await send(c, { scope: route.scope, token: 'x' });
      assert.equal(res.status, 401);
    });

    test('an address in no allowlist: the connection is closed before TLS', async () => {
      const c = await h.client('barrier-north', { localAddress: '127.0.0.2' });
      await assert.rejects(send(c), (err: Error & { code?: string; cause?: { code?: string } }) => {
        const code = err.code ?? err.cause?.code ?? '';
        return (
          /ECONNRESET|UND_ERR_SOCKET|EPIPE|ECONNREFUSED/.test(code) ||
          /socket|other side closed/i.test(err.message)
        );
      });
    });

    test("an address of another partner's list: 403 ip-not-allowed", async () => {
      const c = await h.client('barrier-north', { localAddress: '127.0.0.3' });
      const token = await north.token(route.scope);
      const res = await send(c, { scope: route.scope, token });
      assert.equal(res.status, 403);
      assert.equal(problemType(res), 'urn:smart-home:problem:ip-not-allowed');
    });

    test('X-Forwarded-For from an untrusted peer is ignored', async () => {
      const south = await h.client('barrier-south', {
        localAddress: '127.0.0.1',
        extraHeaders: { 'x-forwarded-for': '127.0.0.3' },
      });
      await assert.rejects(
        south.token(route.scope),
        /token request failed: 403/,
        'the token endpoint checks the address too',
      );
      const res = await send(south, { scope: route.scope, token: 'irrelevant' });
      assert.equal(res.status, 403);
      assert.equal(problemType(res), 'urn:smart-home:problem:ip-not-allowed');
    });

    test('X-Forwarded-For from a trusted proxy is honoured, and only its right-most untrusted hop counts', async () => {
      const viaProxy = await h.client('barrier-north', {
        localAddress: '127.0.0.4',
        extraHeaders: { 'x-forwarded-for': '127.0.0.1' },
      });
      assert.equal((await send(viaProxy)).status, route.okStatus);
      const spoofed = await h.client('barrier-north', {
        localAddress: '127.0.0.4',
        extraHeaders: { 'x-forwarded-for': '127.0.0.1, 192.0.2.66' },
      });
      const token = await north.token(route.scope);
      const res = await send(spoofed, { scope: route.scope, token });
      assert.equal(res.status, 403);
    });

    test('no token: 401 invalid-token', async () => {
      const res = await send(north, { scope: route.scope, headers: { authorization: '' } });
      assert.equal(res.status, 401);
      assert.equal(problemType(res), 'urn:smart-home:problem:invalid-token');
    });

    test('an expired token (beyond the 10 s leeway): 401', async () => {
      const now = Math.floor(Date.now() / 1000);
      const token = await forgeToken({ iat: now - 700, exp: now - 11, scope: route.scope });
      const res = await send(north, { scope: route.scope, token });
      assert.equal(res.status, 401);
      const fresh = await forgeToken({ scope: route.scope });
      assert.equal(
        (await send(north, { scope: route.scope, token: fresh })).status,
        route.okStatus,
        'the forge itself is sound',
      );
    });

    test('a token bound to another certificate of the same partner: 401', async () => {
      const other = await h.client('barrier-north', { identity: northSecondCert });
      const token = await other.token(route.scope);
      assert.equal((await send(other, { scope: route.scope, token })).status, route.okStatus);
      const res = await send(north, { scope: route.scope, token });
      assert.equal(res.status, 401);
    });

    test("another partner's token: 401", async () => {
      const south = await h.client('barrier-south', { localAddress: '127.0.0.3' });
      const token = await south.token(route.scope);
      const res = await send(north, { scope: route.scope, token });
      assert.equal(res.status, 401);
    });

    test('alg other than ES256 (HS256 with a guessable key, none): 401', async () => {
      const hs = await forgeToken(
        { scope: route.scope },
        { alg: 'HS256' },
        new TextEncoder().encode(JSON.stringify(h.smartHomeKey)),
      );
      assert.equal((await send(north, { scope: route.scope, token: hs })).status, 401);
      const [, payload] = (await forgeToken({ scope: route.scope })).split('.');
      const none = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${payload}.`;
      assert.equal((await send(north, { scope: route.scope, token: none })).status, 401);
    });

    test('a token of the wrong type or audience: 401', async () => {
      const typ = await forgeToken({ scope: route.scope }, { typ: 'JWT' });
      assert.equal((await send(north, { scope: route.scope, token: typ })).status, 401);
      const aud = await forgeToken({ aud: 'urn:smart-home:api', scope: route.scope });
      assert.equal((await send(north, { scope: route.scope, token: aud })).status, 401);
    });

    test('a token without the route scope: 403 insufficient-scope', async () => {
      const token = await north.token(route.otherScope ?? 'audit:exchange');
      const res = await send(north, { scope: route.scope, token });
      assert.equal(res.status, 403);
      assert.equal(problemType(res), 'urn:smart-home:problem:insufficient-scope');
    });

    test('a device of another partner or outside the perimeter: 404', async () => {
      const res = await north.send(route.method, route.foreignPath, {
        scope: route.scope,
        ...wire((route.foreignBody ?? route.body)(north)),
      });
      assert.equal(res.status, route.foreignStatus ?? 404);
    });

    test('a missing signature: 401 invalid-signature', async () => {
      const res = await send(north, { scope: route.scope, sign: false });
      assert.equal(res.status, 401);
      assert.equal(problemType(res), 'urn:smart-home:problem:invalid-signature');
    });

    test('a corrupted signature: 401 invalid-signature', async () => {
      const res = await send(north, {
        scope: route.scope,
        tamper: ({ headers }) => {
          headers['signature'] = `sig1=:${randomBytes(64).toString('base64')}:`;
        },
      });
      assert.equal(res.status, 401);
    });

    test('a replayed nonce: the second request is refused', async () => {
      const nonce = randomBytes(16).toString('base64url');
      const body = route.body(north);
      assert.equal((await send(north, { scope: route.scope, nonce, body })).status, route.okStatus);
      const res = await send(north, { scope: route.scope, nonce, body });
      assert.equal(res.status, 401);
      assert.equal(problemType(res), 'urn:smart-home:problem:invalid-signature');
    });

    test('a signature created more than 60 s ago: 401', async () => {
      const res = await send(north, { scope: route.scope, created: Math.floor(Date.now() / 1000) - 61 });
      assert.equal(res.status, 401);
    });

    test('a body that does not match its digest: 401', async () => {
      const res = await send(north, {
        scope: route.scope,
        tamper: ({ body }) => ({
          body: route.rawContentType
            ? Buffer.concat([body ?? Buffer.alloc(0), Buffer.from('\n')])
            : Buffer.from(JSON.stringify({ ...JSON.parse(String(body)), direction: 'exit' })),
        }),
      });
      assert.equal(res.status, 401);
    });

    if (route.withUnknownField) {
      const withUnknown = route.withUnknownField;
      test('an unknown body field: 400 invalid-request naming the field, not its value', async () => {
        const res = await send(north, { scope: route.scope, body: withUnknown(north) });
        assert.equal(res.status, 400);
        assert.equal(problemType(res), 'urn:smart-home:problem:invalid-request');
        const detail = String((res.body as { detail?: string }).detail);
        assert.match(detail, /unknown field "plate"/);
        assert.ok(!detail.includes('A123BC77'));
      });
    }

    test('an oversized body: 413 payload-too-large', async () => {
      const padding = 'x'.repeat(route.oversizedBytes ?? 300_000);
      const res = await send(north, {
        scope: route.scope,
        body: route.rawContentType ? padding : { padding },
      });
      assert.equal(res.status, 413);
      assert.equal(problemType(res), 'urn:smart-home:problem:payload-too-large');
    });

    test('every answer, errors included, is signed by smart-home', async () => {
      const res = await send(north, { scope: route.scope, sign: false });
      assert.equal(res.status, 401);
      assert.equal(res.signatureValid, true);
    });
  });
}
