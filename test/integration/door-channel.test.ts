import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import {
  type IntercomSimulator,
  intercomPartnerEntry,
  smartHomeTrust,
  startIntercomSimulator,
} from '../../simulator/intercom.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import { pseudonym } from '../../src/crypto/partner-keys.ts';
import { sql } from '../../src/db/sql.ts';
import { contentDigest } from '../../src/http-signatures/content-digest.ts';
import { REQUEST_COMPONENTS_WITH_BODY, signRequest } from '../../src/http-signatures/rfc9421.ts';
import { loadSigningKey, type SigningKey } from '../../src/keys/service-keys.ts';
import { Outbound, type OutboundOptions } from '../../src/outbound/outbound.ts';
import type { ProvisioningDocument } from '../../src/registry/document.ts';
import { loadPartnerKeys } from '../../src/registry/partner-secrets.ts';
import { isUuidV7, uuidv7 } from '../../src/util/uuid.ts';
import { createTestDb } from '../support/test-db.ts';

let h: LocalStack;
/** The intercom partner of North, registered with its own server CA pinned. */
let sim: IntercomSimulator;
/** A partner whose server presents a certificate from another CA than the one registered for it. */
let rogue: IntercomSimulator;
let serviceClient: { cert: string; key: string };
let signingKey: SigningKey;
let partnerId: string;
let residentId: string;
const extra: Outbound[] = [];

const DOORS = ['door-ok', 'door-reject', 'door-offline', 'door-500', 'door-slow', 'door-drop', 'door-misc'];

function intercomWorld(
  ids: LocalStack['identities'],
  main: IntercomSimulator,
  other: IntercomSimulator,
): ProvisioningDocument {
  const partner = (code: string, baseUrl: string, serverCaPem: string, clientId: string) =>
    intercomPartnerEntry({ url: baseUrl, serverCaPem, clientId }, ids.get(code)!, {
      complexes: ['north'],
      networks: ['127.0.0.1/32'],
    });
  return {
    version: 1,
    complexes: [
      {
        code: 'north',
        name: 'ЖК Северный',
        buildings: [
          { code: 'b1', name: 'Корпус 1', entrances: [{ code: 'e1', name: 'Подъезд 1', apartments: ['1'] }] },
        ],
      },
    ],
    partners: [
      partner('intercom-north', main.url, main.serverCaPem, main.clientId),
      // Pinned: the main simulator's CA; its server's certificate comes from its own, other CA.
      partner('intercom-rogue', other.url, main.serverCaPem, other.clientId),
    ],
    devices: [
      ...DOORS.map((externalId) => ({
        partner: 'intercom-north',
        externalId,
        kind: 'door' as const,
        name: `Door ${externalId}`,
        complex: 'north',
        building: 'b1',
        entrance: 'e1',
      })),
      {
        partner: 'intercom-rogue',
        externalId: 'door-r',
        kind: 'door',
        name: 'Rogue door',
        complex: 'north',
      },
    ],
    residents: [
      { ref: 'anna', fullName: 'Анна Петрова', phone: '+79001112233', apartments: ['north/b1/e1/1'] },
    ],
  };
}

before(async () => {
  h = await startLocalStack({
    partners: [{ code: 'intercom-north' }, { code: 'intercom-rogue' }],
    db: await createTestDb(),
    document: async (ids, dataDir) => {
      // What the vendor got at onboarding: our service CA, client-certificate thumbprint, public key.
      const trust = await smartHomeTrust(dataDir);
      sim = await startIntercomSimulator({
        identity: ids.get('intercom-north')!,
        ...trust,
        clientId: 'smart-home-at-north',
        doors: DOORS,
      });
      rogue = await startIntercomSimulator({
        identity: ids.get('intercom-rogue')!,
        ...trust,
        clientId: 'smart-home-at-rogue',
        doors: ['door-r'],
      });
      return intercomWorld(ids, sim, rogue);
    },
  });
  serviceClient = {
    cert: await readFile(path.join(h.dataDir, 'pki', 'service-client.crt'), 'utf8'),
    key: await readFile(path.join(h.dataDir, 'pki', 'service-client.key'), 'utf8'),
  };
  signingKey = await loadSigningKey(path.join(h.dataDir, 'keys', 'response-signing.jwk'), 'Ed25519');
  partnerId = (await h.runtime.db.one<{ id: string }>(
    sql`select id from partners where code = 'intercom-north'`,
  ))!.id;
  residentId = (await h.runtime.db.one<{ id: string }>(sql`select id from residents where ref = 'anna'`))!.id;
});
after(async () => {
  await Promise.allSettled(extra.map((o) => o.close()));
  await h?.close();
  await sim?.stop();
  await rogue?.stop();
});

/** A separate outbound channel with its own options (and therefore its own token cache). */
function outboundWith(options: Partial<OutboundOptions>, tokenClock?: () => number): Outbound {
  const o = new Outbound({
    db: h.runtime.db,
    cipher: h.runtime.cipher,
    directory: () => h.runtime.app.directory(),
    clientTls: serviceClient,
    signingKey,
    options: {
      connectTimeoutMs: 2000,
      timeoutMs: 5000,
      connections: 4,
      tokenRefreshMarginSeconds: 60,
      retryDelayMs: 50,
      doorCommandTtlMs: 10_000,
      ...options,
    },
    ...(tokenClock ? { tokenClock } : {}),
  });
  extra.push(o);
  return o;
}

const open = (doorExternalId: string, outbound = h.runtime.outbound, now?: Date) =>
  outbound.openDoor({ partner: partnerId, doorExternalId, residentId, ...(now ? { now } : {}) });

const openedCommands = () => sim.openings.map((o) => o.commandId);

describe('door open over mTLS against the intercom simulator (contract §7)', () => {
  test('the registry holds the outbound registration, with the default token endpoint', async () => {
    const p = h.runtime.app.directory().byId.get(partnerId)!;
    assert.equal(p.outbound?.baseUrl, sim.url);
    assert.equal(p.outbound?.tokenEndpoint, `${sim.url}/oauth/token`);
    assert.equal(p.outbound?.clientId, 'smart-home-at-north');
    assert.equal(p.outbound?.serverCa.trim(), sim.serverCaPem.trim());
  });

  test('opened: the door opens once, the partner sees only the pseudonym', async () => {
    const r = await open('door-ok');
    assert.equal(r.status, 'opened');
    assert.equal(r.attempts, 1);
    assert.ok(r.at && !Number.isNaN(Date.parse(r.at)), "the partner's `at` is returned");
    assert.ok(isUuidV7(r.command.commandId));
    assert.equal(Date.parse(r.command.expiresAt) - Date.parse(r.command.requestedAt), 10_000);
    const opening = sim.openings.find((o) => o.commandId === r.command.commandId);
    assert.ok(opening, 'the simulator recorded the opening');
    assert.equal(opening.doorId, 'door-ok');
    // Contract §7: subject = base64url(HMAC-SHA256(pseudonymKey[partner], "subject/v1|" + residentId)).
    const [current] = (await loadPartnerKeys(h.runtime.db, h.runtime.cipher, partnerId)).filter(
      (k) => !k.retired,
    );
    assert.equal(opening.subject, pseudonym(current!.pseudonymKey, residentId));
    assert.notEqual(opening.subject, residentId);
  });

  test('rejected and device_offline are passed on with the partner time', async () => {
    sim.setDoor('door-reject', { mode: 'reject' });
    sim.setDoor('door-offline', { mode: 'offline' });
    const before = sim.openings.length;
    const rejected = await open('door-reject');
    const offline = await open('door-offline');
    assert.deepEqual([rejected.status, offline.status], ['rejected', 'device_offline']);
    assert.ok(rejected.at && offline.at);
    assert.equal(sim.openings.length, before, 'nothing was opened');
  });

  test('expired: a partner whose clock is past expiresAt answers expired and does nothing', async () => {
    sim.setClockSkew(30_000);
    try {
      const before = sim.openings.length;
      const r = await open('door-ok');
      assert.equal(r.status, 'expired');
      assert.equal(r.attempts, 1);
      assert.equal(sim.openings.length, before);
    } finally {
      sim.setClockSkew(0);
    }
  });

  test('timeout: a partner slower than our total timeout', async () => {
    sim.setDoor('door-slow', { mode: 'slow', slowMs: 20_000 });
    const r = await open('door-slow', outboundWith({ timeoutMs: 500 }));
    assert.equal(r.status, 'timeout');
    assert.equal(r.attempts, 1, 'a timed-out command is not sent again');
  });

  test('partner_error: an HTTP 500', async () => {
    sim.setDoor('door-500', { mode: 'error' });
    const r = await open('door-500');
    assert.equal(r.status, 'partner_error');
    assert.equal(r.reason, 'http_status');
    assert.equal(r.httpStatus, 500);
  });

  test('partner_error: an unsigned answer, a wrongly signed one, one about another command', async () => {
    const before = sim.openings.length;
    sim.setDoor('door-misc', { mode: 'unsigned' });
    const unsigned = await open('door-misc');
    sim.setDoor('door-misc', { mode: 'bad-signature' });
    const badSig = await open('door-misc');
    sim.setDoor('door-misc', { mode: 'wrong-command-id' });
    const mismatch = await open('door-misc');
    sim.setDoor('door-misc', { mode: 'normal' });
    assert.deepEqual(
      [unsigned, badSig, mismatch].map((r) => [r.status, r.reason]),
      [
        ['partner_error', 'signature'],
        ['partner_error', 'signature'],
        ['partner_error', 'command_mismatch'],
      ],
    );
    // The partner did open (its answer simply could not be trusted): we report what we can prove.
    assert.equal(sim.openings.length, before + 3);
  });

  test('a connection lost before the answer is retried with the same commandId, acted on once', async () => {
    sim.setDoor('door-drop', { dropAnswers: 1 });
    const r = await open('door-drop', outboundWith({}));
    assert.equal(r.status, 'opened');
    assert.equal(r.attempts, 2);
    assert.equal(openedCommands().filter((c) => c === r.command.commandId).length, 1);
    assert.equal(sim.openings.filter((o) => o.doorId === 'door-drop').length, 1);
  });

  test('an unreachable partner is tried retryAttempts times with backoff, never past expiresAt: timeout', async () => {
    const closed = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as { port: number };
        srv.close(() => resolve(port));
      });
    });
    const real = h.runtime.app.directory().byId.get(partnerId)!;
    const down = {
      ...real,
      outbound: {
        ...real.outbound!,
        baseUrl: `https://127.0.0.1:${closed}`,
        tokenEndpoint: `https://127.0.0.1:${closed}/oauth/token`,
      },
    };
    // A long command and a short backoff: the retry budget, not expiresAt, ends it.
    const o = outboundWith({ doorCommandTtlMs: 10_000, retryDelayMs: 20, retryAttempts: 3 });
    const r = await o.openDoor({ partner: down, doorExternalId: 'door-ok', residentId });
    assert.equal(r.status, 'timeout');
    assert.equal(r.reason, 'connect');
    assert.equal(r.attempts, 0, 'no command reached anyone: even the token endpoint was down');
    assert.ok(Date.now() < Date.parse(r.command.expiresAt), 'it gave up when the budget was spent');
    // A budget larger than the command's life: it stops at expiresAt.
    const short = outboundWith({ doorCommandTtlMs: 600, retryDelayMs: 400, retryAttempts: 10 });
    const late = await short.openDoor({ partner: down, doorExternalId: 'door-ok', residentId });
    assert.equal(late.status, 'timeout');
    assert.ok(late.reason === 'connect' || late.reason === 'timeout', `reason ${late.reason}`);
    assert.ok(Date.now() < Date.parse(late.command.expiresAt) + 1000, 'never waits long past expiresAt');
  });

  test('nothing is sent when the command is already past its expiresAt', async () => {
    const requests = sim.doorRequests;
    const tokens = sim.tokensIssued;
    const r = await open('door-ok', outboundWith({}), new Date(Date.now() - 11_000));
    assert.equal(r.status, 'expired');
    assert.equal(r.reason, 'expired_before_send');
    assert.equal(r.attempts, 0);
    assert.equal(sim.doorRequests, requests, 'no request reached the partner');
    assert.equal(sim.tokensIssued, tokens, 'not even a token request');
  });

  test('one token for many commands, concurrent ones included', async () => {
    const o = outboundWith({});
    const tokens = sim.tokensIssued;
    const concurrent = await Promise.all(Array.from({ length: 6 }, () => open('door-ok', o)));
    for (let i = 0; i < 4; i++) assert.equal((await open('door-ok', o)).status, 'opened');
    assert.ok(concurrent.every((r) => r.status === 'opened'));
    assert.equal(sim.tokensIssued - tokens, 1);
  });

  test('the token is fetched again shortly before it expires (refresh margin)', async () => {
    let offset = 0;
    const o = outboundWith({ tokenRefreshMarginSeconds: 60 }, () => Date.now() + offset);
    const tokens = sim.tokensIssued;
    await open('door-ok', o);
    offset = 530_000; // 600 s token: still 70 s left, more than the margin
    await open('door-ok', o);
    assert.equal(sim.tokensIssued - tokens, 1);
    offset = 545_000; // 55 s left: inside the 60 s margin
    assert.equal((await open('door-ok', o)).status, 'opened');
    assert.equal(sim.tokensIssued - tokens, 2);
  });

  test('a token the partner stopped accepting is replaced once, for the same command', async () => {
    const o = outboundWith({});
    await open('door-ok', o);
    const tokens = sim.tokensIssued;
    sim.revokeTokens();
    const r = await open('door-ok', o);
    assert.equal(r.status, 'opened');
    assert.equal(sim.tokensIssued - tokens, 1);
  });

  test('a partner server with a certificate from another CA is refused before anything is sent', async () => {
    const rogueId = (await h.runtime.db.one<{ id: string }>(
      sql`select id from partners where code = 'intercom-rogue'`,
    ))!.id;
    const r = await h.runtime.outbound.openDoor({ partner: rogueId, doorExternalId: 'door-r', residentId });
    assert.equal(r.status, 'partner_error');
    assert.equal(r.reason, 'tls');
    assert.equal(rogue.tokensIssued, 0);
    assert.equal(rogue.doorRequests, 0);
  });

  test('a resident has another subject at each partner', async () => {
    const rogueId = (await h.runtime.db.one<{ id: string }>(
      sql`select id from partners where code = 'intercom-rogue'`,
    ))!.id;
    const a = await h.runtime.outbound.subject(partnerId, residentId);
    const b = await h.runtime.outbound.subject(rogueId, residentId);
    assert.notEqual(a, b);
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
  });
});

describe('the generic signed call (PartnerChannel.send)', () => {
  const command = async () => {
    const requestedAt = new Date();
    return {
      commandId: uuidv7(requestedAt.getTime()),
      subject: await h.runtime.outbound.subject(partnerId, residentId),
      requestedAt: requestedAt.toISOString(),
      expiresAt: new Date(requestedAt.getTime() + 5000).toISOString(),
    };
  };

  test('a JSON body with a doors:open token: the verified answer, status, headers and raw bytes', async () => {
    const o = outboundWith({});
    const body = await command();
    const a = await o.send(partnerId, 'POST', '/v1/doors/door-ok/open', { scope: 'doors:open', body });
    assert.equal(a.status, 200);
    assert.match(String(a.headers['content-digest']), /^sha-256=:/);
    assert.equal(a.headers['content-digest'], contentDigest(a.body), 'digest over the raw bytes returned');
    const answer = JSON.parse(a.body.toString('utf8')) as { commandId: string; status: string };
    assert.deepEqual([answer.commandId, answer.status], [body.commandId, 'opened']);
    assert.ok(sim.openings.some((x) => x.commandId === body.commandId));
  });

  test('bytes are sent as they are, under the given content type', async () => {
    const o = outboundWith({});
    const body = await command();
    // Keys in another order and spaces: the partner must get (and the digest cover) these bytes.
    const text = `{ "expiresAt": "${body.expiresAt}", "requestedAt": "${body.requestedAt}", "subject": "${body.subject}", "commandId": "${body.commandId}" }`;
    const a = await o.send(partnerId, 'POST', '/v1/doors/door-ok/open', {
      scope: 'doors:open',
      body: Buffer.from(text),
      contentType: 'application/json',
    });
    assert.equal(a.status, 200);
    assert.ok(sim.openings.some((x) => x.commandId === body.commandId));
  });

  test('one token per scope, each cached: an audit:exchange token does not open doors', async () => {
    const o = outboundWith({});
    const channel = o.channel(partnerId);
    const tokens = sim.tokensIssued;
    const door = await o.send(partnerId, 'POST', '/v1/doors/door-ok/open', {
      scope: 'doors:open',
      body: await command(),
    });
    assert.equal(door.status, 200);
    const before = sim.openings.length;
    // The simulator grants audit:exchange, but its door route needs doors:open: 401, retried once
    // with a fresh audit token, and the second 401 is handed back (signed).
    const audit = await o.send(partnerId, 'POST', '/v1/doors/door-ok/open', {
      scope: 'audit:exchange',
      body: await command(),
    });
    assert.equal(audit.status, 401);
    assert.equal(sim.openings.length, before, 'nothing opened with the audit token');
    assert.equal(sim.tokensIssued - tokens, 3, 'door token, audit token, fresh audit token after the 401');
    // The door token survived the audit 401s.
    assert.equal(
      (
        await o.send(partnerId, 'POST', '/v1/doors/door-ok/open', {
          scope: 'doors:open',
          body: await command(),
        })
      ).status,
      200,
    );
    assert.equal(sim.tokensIssued - tokens, 3);
    assert.equal(channel.tokenRequests, 3);
    const noRetry = await o.send(partnerId, 'POST', '/v1/doors/door-ok/open', {
      scope: 'audit:exchange',
      body: await command(),
      retryOn401: false,
    });
    assert.equal(noRetry.status, 401);
    // The last refused token was dropped: one new audit token, and no second one without the retry.
    assert.equal(sim.tokensIssued - tokens, 4);
  });

  test('a scope the partner does not grant is a token error; nothing else is sent', async () => {
    const o = outboundWith({});
    const requests = sim.doorRequests;
    await assert.rejects(
      o.send(partnerId, 'POST', '/v1/doors/door-ok/open', { scope: 'barrier:decide', body: await command() }),
      { name: 'OutboundError', code: 'ERR_OUTBOUND_TOKEN' },
    );
    assert.equal(sim.doorRequests, requests);
    await assert.rejects(
      o.send(partnerId, 'GET', '/v1/x', { scope: 'doors:open audit:exchange' }),
      TypeError,
    );
  });

  test('a GET without a body, signed without content-digest: the partner checks it and answers signed', async () => {
    const o = outboundWith({});
    const refusals = sim.refusals.length;
    const a = await o.send(partnerId, 'GET', '/v1/journal/checkpoint', {
      scope: 'audit:exchange',
      accept: 'text/plain',
    });
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'text/plain; charset=utf-8');
    // The partner's own checkpoint, signed with its journal key (contract §8.1).
    assert.equal(a.body.toString('utf8'), sim.journal.checkpoint().note);
    assert.equal(sim.refusals.length, refusals);
  });

  test('an unsigned answer is never handed back (a GET without a body to an unknown path)', async () => {
    const o = outboundWith({});
    await assert.rejects(o.send(partnerId, 'GET', '/v1/no-such-route?x=1', { scope: 'audit:exchange' }), {
      name: 'OutboundError',
      code: 'ERR_OUTBOUND_SIGNATURE',
    });
  });

  test('an answer larger than the caller allows is refused', async () => {
    const o = outboundWith({});
    await assert.rejects(
      o.send(partnerId, 'POST', '/v1/doors/door-ok/open', {
        scope: 'doors:open',
        body: await command(),
        maxResponseBytes: 10,
      }),
      { name: 'OutboundError', code: 'ERR_OUTBOUND_RESPONSE' },
    );
  });

  test('a deadline already passed sends nothing', async () => {
    const o = outboundWith({});
    const tokens = sim.tokensIssued;
    await assert.rejects(
      o.send(partnerId, 'GET', '/v1/doors', { scope: 'doors:open', deadline: Date.now() - 1 }),
      { name: 'OutboundError', code: 'ERR_OUTBOUND_TIMEOUT' },
    );
    assert.equal(sim.tokensIssued, tokens);
  });
});

describe('the simulator checks what smart-home sends', () => {
  let agent: Agent;
  let token: string;
  before(async () => {
    agent = new Agent({ connect: { ca: sim.serverCaPem, cert: serviceClient.cert, key: serviceClient.key } });
    const res = await request(`${sim.url}/oauth/token`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&client_id=smart-home-at-north&scope=doors%3Aopen',
    });
    assert.equal(res.statusCode, 200);
    token = ((await res.body.json()) as { access_token: string }).access_token;
  });
  after(() => agent.close());

  const command = () => {
    const now = Date.now();
    return {
      commandId: uuidv7(now),
      subject: 'A'.repeat(43),
      requestedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + 10_000).toISOString(),
    };
  };

  /** A request as smart-home signs it; `sentBody` replaces the body after signing (tampering). */
  function signed(body: Buffer, opts: { sign?: boolean; token?: string | null } = {}) {
    const url = `${sim.url}/v1/doors/door-ok/open`;
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'content-digest': contentDigest(body),
    };
    if (opts.token !== null) headers['authorization'] = `Bearer ${opts.token ?? token}`;
    if (opts.sign !== false) {
      Object.assign(
        headers,
        signRequest({
          method: 'POST',
          targetUri: url,
          headers,
          components: REQUEST_COMPONENTS_WITH_BODY,
          privateKey: signingKey.privateKey,
          keyid: signingKey.kid,
        }),
      );
    }
    return { url, headers };
  }

  const post = async (url: string, headers: Record<string, string>, body: Buffer) => {
    const res = await request(url, { method: 'POST', dispatcher: agent, headers, body });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };

  test('a correctly signed command is accepted; the same request replayed is refused', async () => {
    const body = Buffer.from(JSON.stringify(command()));
    const { url, headers } = signed(body);
    const first = await post(url, headers, body);
    assert.equal(first.status, 200);
    assert.equal(first.body['status'], 'opened');
    const again = await post(url, headers, body);
    assert.equal(again.status, 401);
    assert.equal(again.body['type'], 'urn:smart-home:problem:invalid-signature');
    assert.equal(sim.refusals.at(-1)?.signatureCode, 'ERR_SIG_REPLAY');
  });

  test('the same commandId twice is one command: acted on once, the same answer both times', async () => {
    const body = Buffer.from(JSON.stringify(command()));
    const first = signed(body);
    const a = await post(first.url, first.headers, body);
    const second = signed(body); // a new signature (new nonce) over the same command
    const b = await post(second.url, second.headers, body);
    assert.deepEqual([a.status, b.status], [200, 200]);
    assert.deepEqual(b.body, a.body);
    const id = JSON.parse(body.toString())['commandId'];
    assert.equal(sim.openings.filter((o) => o.commandId === id).length, 1);
  });

  test('a command past its expiresAt answers expired and opens nothing', async () => {
    const before = sim.openings.length;
    const now = Date.now();
    const late = {
      ...command(),
      requestedAt: new Date(now - 20_000).toISOString(),
      expiresAt: new Date(now - 10_000).toISOString(),
    };
    const body = Buffer.from(JSON.stringify(late));
    const { url, headers } = signed(body);
    const res = await post(url, headers, body);
    assert.equal(res.status, 200);
    assert.equal(res.body['status'], 'expired');
    assert.equal(sim.openings.length, before);
  });

  test('a command valid for more than 10 s is refused', async () => {
    const now = Date.now();
    const long = { ...command(), expiresAt: new Date(now + 60_000).toISOString() };
    const body = Buffer.from(JSON.stringify(long));
    const { url, headers } = signed(body);
    assert.equal((await post(url, headers, body)).status, 400);
  });

  test('an unsigned command is refused and nothing opens', async () => {
    const before = sim.openings.length;
    const body = Buffer.from(JSON.stringify(command()));
    const { url, headers } = signed(body, { sign: false });
    const res = await post(url, headers, body);
    assert.equal(res.status, 401);
    assert.equal(sim.refusals.at(-1)?.signatureCode, 'ERR_SIG_MISSING');
    assert.equal(sim.openings.length, before);
  });

  test('a body that does not match its signed digest is refused', async () => {
    const before = sim.openings.length;
    const body = Buffer.from(JSON.stringify(command()));
    const { url, headers } = signed(body);
    const other = Buffer.from(JSON.stringify(command()));
    const res = await post(url, headers, other);
    assert.equal(res.status, 401);
    assert.equal(sim.refusals.at(-1)?.signatureCode, 'ERR_SIG_DIGEST');
    assert.equal(sim.openings.length, before);
  });

  test('a missing or unknown token is refused', async () => {
    const body = Buffer.from(JSON.stringify(command()));
    const none = signed(body, { token: null, sign: false });
    assert.equal(
      (await post(none.url, none.headers, body)).body['type'],
      'urn:smart-home:problem:invalid-token',
    );
    const wrong = signed(body, { token: 'not-a-token' });
    assert.equal(
      (await post(wrong.url, wrong.headers, body)).body['type'],
      'urn:smart-home:problem:invalid-token',
    );
  });

  test('the token endpoint refuses another client id, and a connection without a client certificate', async () => {
    const res = await request(`${sim.url}/oauth/token`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&client_id=someone-else&scope=doors%3Aopen',
    });
    assert.equal(res.statusCode, 401);
    await res.body.dump();
    const anonymous = new Agent({ connect: { ca: sim.serverCaPem } });
    try {
      await assert.rejects(
        request(`${sim.url}/oauth/token`, {
          method: 'POST',
          dispatcher: anonymous,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'grant_type=client_credentials&client_id=smart-home-at-north',
        }),
      );
    } finally {
      await anonymous.close();
    }
  });
});
