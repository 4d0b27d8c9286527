/**
 * The partner simulator's side of contract §8 over real TLS, driven by smart-home's own outbound
 * channel (mTLS, a client-credentials token of scope audit:exchange at the partner, RFC 9421 both
 * ways): its journal log's checkpoint and tiles, its witnessing of smart-home's log, and its
 * reconciliation and projections endpoints against an in-process Negentropy initiator holding the
 * untouched set.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import { journalVerifierKey, witnessVerifierKey } from '../../simulator/identity.ts';
import { type IntercomSimulator, smartHomeTrust, startIntercomSimulator } from '../../simulator/intercom.ts';
import { journalEntryBytes } from '../../simulator/journal.ts';
import { rootFromTiles } from '../../simulator/journal-client.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import { sql } from '../../src/db/sql.ts';
import { contentDigest } from '../../src/http-signatures/content-digest.ts';
import {
  REQUEST_COMPONENTS_WITH_BODY,
  REQUEST_COMPONENTS_WITHOUT_BODY,
  signRequest,
} from '../../src/http-signatures/rfc9421.ts';
import { appendJournal } from '../../src/journal/journal.ts';
import { consistencyFor } from '../../src/journal/log/proofs.ts';
import { decodeBundle } from '../../src/journal/log/read-api.ts';
import { integrateAll, latestCheckpoint } from '../../src/journal/log/sequencer.ts';
import { loadSigningKey, type SigningKey } from '../../src/keys/service-keys.ts';
import { Negentropy } from '../../src/reconcile/negentropy.ts';
import {
  differingFields,
  doorOpenProjection,
  elementHex,
  indexProjections,
  type Projection,
  type ProjectionRecord,
} from '../../src/reconcile/projection.ts';
import { leafHash, rootOfLeafHashes } from '../../src/tlog/merkle.ts';
import {
  noteSigner,
  openNote,
  parseCheckpoint,
  parseNote,
  signNote,
  verifierFromKeyString,
} from '../../src/tlog/note.ts';
import { tilePath } from '../../src/tlog/tiles.ts';
import { formatAddCheckpoint } from '../../src/tlog/witness.ts';
import { uuidv7 } from '../../src/util/uuid.ts';
import { createTestDb } from '../support/test-db.ts';
import { intercomWorld } from '../support/world.ts';

let h: LocalStack;
let sim: IntercomSimulator;
let partnerId: string;
let residentId: string;
const DOORS = ['door-1', 'door-2'];
const DAY = Date.UTC(2026, 10, 30);

before(async () => {
  h = await startLocalStack({
    partners: [{ code: 'intercom-north' }],
    db: await createTestDb(),
    document: async (ids, dataDir) => {
      sim = await startIntercomSimulator({
        identity: ids.get('intercom-north')!,
        ...(await smartHomeTrust(dataDir)),
        clientId: 'smart-home-at-north',
        doors: DOORS,
      });
      return intercomWorld(ids, sim, DOORS);
    },
  });
  // At setup the partner is given smart-home's journal verifier key: the log it witnesses.
  sim.witness.trust(h.runtime.journalLog.signer.verifierKey);
  const one = async (q: ReturnType<typeof sql>) => (await h.runtime.db.one<{ id: string }>(q))!.id;
  partnerId = await one(sql`select id from partners where code = 'intercom-north'`);
  residentId = await one(sql`select id from residents where ref = 'anna'`);
});
after(async () => {
  await h?.close();
  await sim?.stop();
});

/** smart-home's real outbound call to the simulator's journal API. */
const call = (
  method: 'GET' | 'POST',
  path: string,
  opts: { body?: Buffer | unknown; contentType?: string; scope?: string; maxResponseBytes?: number } = {},
) =>
  h.runtime.outbound.send(partnerId, method, path, {
    scope: opts.scope ?? 'audit:exchange',
    accept: '*/*',
    retryOn401: false,
    ...(opts.body !== undefined ? { body: opts.body } : {}),
    ...(opts.contentType ? { contentType: opts.contentType } : {}),
    ...(opts.maxResponseBytes ? { maxResponseBytes: opts.maxResponseBytes } : {}),
  });

describe('the simulator journal log over HTTPS (§8.1)', () => {
  test('door opens are journaled at the partner; its checkpoint verifies with its key and its tiles rebuild the root', async () => {
    const before = sim.journal.size;
    const opened = await h.runtime.outbound.openDoor({
      partner: partnerId,
      doorExternalId: 'door-1',
      residentId,
    });
    assert.equal(opened.status, 'opened');
    const rec = sim.journal.records.at(-1)!;
    assert.equal(sim.journal.size, before + 1);
    assert.deepEqual(
      {
        eventId: rec.eventId,
        action: rec.action,
        device: rec.device,
        subject: rec.subject,
        result: rec.result,
        initiator: rec.initiator,
      },
      doorOpenProjection({
        commandId: opened.command.commandId,
        doorId: 'door-1',
        subject: opened.command.subject,
        status: 'opened',
      }),
    );
    // Enough entries for a full tile and a level-1 tile.
    for (let i = 0; i < 300; i++)
      sim.journal.record(
        doorOpenProjection({
          commandId: uuidv7(DAY + i * 997),
          doorId: DOORS[i % 2]!,
          subject: `s${i}`,
          status: 'opened',
        }),
        DAY + i * 997 + 40,
      );

    const cpAnswer = await call('GET', '/v1/journal/checkpoint');
    assert.equal(cpAnswer.status, 200);
    assert.match(String(cpAnswer.headers['content-type']), /^text\/plain/);
    const { text } = openNote(cpAnswer.body.toString('utf8'), [
      verifierFromKeyString(journalVerifierKey(h.identities.get('intercom-north')!)),
    ]);
    const cp = parseCheckpoint(text);
    assert.equal(cp.origin, 'intercom-north.partner.test/journal');
    assert.equal(cp.size, sim.journal.size);

    const fetched: string[] = [];
    const root = await rootFromTiles(cp.size, async (level, index, width) => {
      const path = `/v1/journal/${tilePath(level, index, width)}`;
      fetched.push(path);
      const a = await call('GET', path);
      assert.equal(a.status, 200, path);
      return a.body;
    });
    assert.deepEqual(root, cp.root, 'the tiles served rebuild the signed root');
    assert.ok(
      fetched.some((p) => p.includes('/tile/1/')),
      'a level-1 tile was needed',
    );

    // The entry bundles hash to the log's leaves; every entry is the partner's own, served in full.
    const leaves: Buffer[] = [];
    for (let n = 0; n * 256 < cp.size; n++) {
      const width = Math.min(256, cp.size - n * 256);
      const a = await call('GET', `/v1/journal/${tilePath('entries', n, width)}`);
      assert.equal(a.status, 200);
      leaves.push(...decodeBundle(a.body).map(leafHash));
    }
    assert.deepEqual(rootOfLeafHashes(leaves), cp.root);
    assert.deepEqual(leafHash(journalEntryBytes(sim.journal.records[before]!)), leaves[before]);

    const beyond = await call('GET', `/v1/journal/${tilePath(0, 5)}`);
    assert.equal(beyond.status, 404);
  });

  test('the partner entry registers its journal log key and witness key at smart-home', async () => {
    const row = await h.runtime.db.one<{ log_key: string; log_origin: string; witness_key: string }>(
      sql`select log_key, log_origin, witness_key from partners where id = ${partnerId}::uuid`,
    );
    const id = h.identities.get('intercom-north')!;
    assert.deepEqual(row, {
      log_key: journalVerifierKey(id),
      log_origin: 'intercom-north.partner.test/journal',
      witness_key: witnessVerifierKey(id),
    });
  });

  test('a token without audit:exchange is refused (401), the answer signed all the same', async () => {
    const a = await call('GET', '/v1/journal/checkpoint', { scope: 'doors:open' });
    assert.equal(a.status, 401);
    assert.equal(sim.refusals.at(-1)?.problem, 'invalid-token');
  });
});

describe('the simulator witnesses smart-home’s log (§8.2)', () => {
  const witnessKey = () => verifierFromKeyString(witnessVerifierKey(h.identities.get('intercom-north')!));
  /** smart-home's log grows by a few entries, integrated and checkpointed. */
  const grow = async () => {
    for (let i = 0; i < 3; i++)
      await appendJournal(h.runtime.db, {
        actorType: 'system',
        action: 'test.entry',
        partnerId,
        result: 'ok',
      });
    await integrateAll(h.runtime.db, h.runtime.journalLog, 1000);
  };
  const submit = (body: string) =>
    call('POST', '/v1/journal/witness/add-checkpoint', {
      body: Buffer.from(body),
      contentType: 'text/plain; charset=utf-8',
    });

  test('cosigns consistent checkpoints; 409 on a size conflict, 422 on a bad proof, 403 on another key', async () => {
    await grow();
    const first = (await latestCheckpoint(h.runtime.db))!;
    assert.ok(first.size > 0);

    const ok = await submit(formatAddCheckpoint({ oldSize: 0, proof: [], note: first.note }));
    assert.equal(ok.status, 200, ok.body.toString());
    const cosig = ok.body.toString('utf8');
    const { text } = parseNote(first.note);
    assert.equal(
      openNote(`${text}\n${cosig}`, [witnessKey()]).verified.length,
      1,
      'a cosignature/v1 by the partner’s witness key',
    );
    assert.equal(sim.witness.latest(h.runtime.journalLog.origin)?.size, first.size);

    // The log grows; the next checkpoint comes with the consistency proof from the cosigned size.
    await grow();
    const second = (await latestCheckpoint(h.runtime.db))!;
    assert.ok(second.size > first.size);
    const proof = (await consistencyFor(h.runtime.db, first.size, second.size)).proof.map((p) =>
      Buffer.from(p, 'base64'),
    );

    // Old size not the one the witness holds: 409 naming it.
    const conflict = await submit(formatAddCheckpoint({ oldSize: 0, proof: [], note: second.note }));
    assert.equal(conflict.status, 409);
    assert.match(String(conflict.headers['content-type']), /^text\/x\.tlog\.size/);
    assert.equal(conflict.body.toString().trim(), String(first.size));
    // A proof with one hash changed: 422, nothing stored.
    const bad = proof.map((p, i) => (i === 0 ? Buffer.from(p.map((b, k) => (k === 0 ? b ^ 1 : b))) : p));
    const refused = await submit(formatAddCheckpoint({ oldSize: first.size, proof: bad, note: second.note }));
    assert.equal(refused.status, 422);
    assert.equal(sim.witness.latest(h.runtime.journalLog.origin)?.size, first.size);
    // The same origin signed by a key the partner was not given: 403.
    const rogue = noteSigner(h.runtime.journalLog.origin, generateKeyPairSync('ed25519').privateKey);
    const forged = signNote(parseNote(second.note).text, [rogue]);
    assert.equal(
      (await submit(formatAddCheckpoint({ oldSize: first.size, proof, note: forged }))).status,
      403,
    );
    // A log the partner does not witness: 404. Garbage: 400.
    const other = noteSigner('elsewhere.test/log', generateKeyPairSync('ed25519').privateKey);
    const otherNote = signNote(`elsewhere.test/log\n0\n${Buffer.alloc(32).toString('base64')}\n`, [other]);
    assert.equal((await submit(formatAddCheckpoint({ oldSize: 0, proof: [], note: otherNote }))).status, 404);
    assert.equal((await submit('not a request')).status, 400);

    const good = await submit(formatAddCheckpoint({ oldSize: first.size, proof, note: second.note }));
    assert.equal(good.status, 200);
    assert.equal(sim.witness.latest(h.runtime.journalLog.origin)?.size, second.size);
    assert.equal(
      openNote(`${parseNote(second.note).text}\n${good.body.toString()}`, [witnessKey()]).verified.length,
      1,
    );
  });
});

describe('reconciliation against the simulator (§8.4)', () => {
  const FROM = DAY + 3600_000;
  const TO = FROM + 3600_000;
  /** The window's truth, recorded in the simulator's journal; the initiator holds exactly these. */
  let truth: Projection[];
  const q = `from=${new Date(FROM).toISOString()}&to=${new Date(TO).toISOString()}`;

  before(() => {
    truth = [];
    for (let i = 0; i < 2000; i++) {
      const t = FROM + i * 1500;
      const p = doorOpenProjection({
        commandId: uuidv7(t),
        doorId: DOORS[i % 2]!,
        subject: `s${i}`,
        status: i % 7 === 0 ? 'rejected' : 'opened',
      });
      sim.journal.record(p, t + 25);
      truth.push(p);
    }
    // Outside the window on either side: never part of the exchange.
    sim.journal.record(
      doorOpenProjection({ commandId: uuidv7(FROM - 1), doorId: 'door-1', subject: 'x', status: 'opened' }),
      FROM - 1,
    );
    sim.journal.record(
      doorOpenProjection({ commandId: uuidv7(TO), doorId: 'door-1', subject: 'y', status: 'opened' }),
      TO,
    );
  });
  beforeEach(() => sim.journal.clearSwitches());

  /** The initiator's whole run: Negentropy rounds, then the projections of every difference. */
  async function reconcile() {
    const { index, items } = indexProjections(truth);
    const ours = new Map(items.map((it) => [elementHex(it.element), it.projection]));
    const ne = new Negentropy(index);
    let msg: Buffer | null = ne.initiate();
    const have: Buffer[] = [];
    const need: Buffer[] = [];
    let rounds = 0;
    while (msg) {
      rounds++;
      const a = await call('POST', `/v1/journal/reconcile?${q}`, {
        body: msg,
        contentType: 'application/octet-stream',
        maxResponseBytes: 1 << 20,
      });
      assert.equal(a.status, 200, a.body.toString());
      const r = ne.reconcileAsInitiator(a.body);
      have.push(...r.have);
      need.push(...r.need);
      msg = r.next;
      assert.ok(rounds < 20);
    }
    const lookup = async (elements: Buffer[]) => {
      if (elements.length === 0) return [];
      const a = await call('POST', '/v1/journal/projections', {
        body: { elements: elements.map(elementHex) },
        maxResponseBytes: 1 << 20,
      });
      assert.equal(a.status, 200);
      return (JSON.parse(a.body.toString('utf8')) as { projections: ProjectionRecord[] }).projections;
    };
    const theirs = await lookup(need);
    assert.equal(theirs.length, need.length, 'the partner answers every element it sent');
    const onlyOurs = have.map((e) => ours.get(elementHex(e))!);
    // Elements only we hold but the partner has under another time: looked up by element.
    const oursAtPartner = await lookup(have);
    const report = {
      missingAtPartner: [] as string[],
      missingAtUs: [] as string[],
      contentMismatch: [] as Array<{ eventId: string; fields: string[] }>,
      timingSkew: [] as Array<{ eventId: string; ms: number }>,
    };
    const byEvent = new Map(theirs.map((r) => [r.projection.eventId, r]));
    for (const p of onlyOurs) {
      const late = oursAtPartner.find((r) => r.projection.eventId === p.eventId);
      const other = byEvent.get(p.eventId);
      if (late) report.timingSkew.push({ eventId: p.eventId, ms: Date.parse(late.at!) - late.time });
      else if (other) {
        report.contentMismatch.push({ eventId: p.eventId, fields: differingFields(p, other.projection) });
        byEvent.delete(p.eventId);
      } else report.missingAtPartner.push(p.eventId);
    }
    report.missingAtUs.push(...byEvent.keys());
    return { report, rounds };
  }

  test('untouched: no difference at all', async () => {
    const { report } = await reconcile();
    assert.deepEqual(report, { missingAtPartner: [], missingAtUs: [], contentMismatch: [], timingSkew: [] });
  });

  test('each switch is found as its own kind, and nothing else', async () => {
    const [dropped, altered, subjectAltered, shifted] = [truth[3]!, truth[500]!, truth[501]!, truth[1999]!];
    const added = doorOpenProjection({
      commandId: uuidv7(FROM + 777),
      doorId: 'door-2',
      subject: 'ghost',
      status: 'opened',
    });
    sim.journal.drop(dropped.eventId);
    sim.journal.alter(altered.eventId, { result: 'device_offline' });
    sim.journal.alter(subjectAltered.eventId, { subject: 'someone-else', device: 'door-9' });
    sim.journal.add(added);
    sim.journal.shift(shifted.eventId, 3600_000);
    const { report } = await reconcile();
    assert.deepEqual(report.missingAtPartner, [dropped.eventId]);
    assert.deepEqual(report.missingAtUs, [added.eventId]);
    assert.deepEqual(
      report.contentMismatch.sort((a, b) => a.eventId.localeCompare(b.eventId)),
      [
        { eventId: altered.eventId, fields: ['result'] },
        { eventId: subjectAltered.eventId, fields: ['device', 'subject'] },
      ],
    );
    assert.equal(report.timingSkew.length, 1);
    assert.equal(report.timingSkew[0]!.eventId, shifted.eventId);
    assert.equal(report.timingSkew[0]!.ms, 3600_000 + 25);
  });

  test('one switch alone: a single difference in few round trips', async () => {
    sim.journal.drop(truth[1234]!.eventId);
    const { report, rounds } = await reconcile();
    assert.deepEqual(report.missingAtPartner, [truth[1234]!.eventId]);
    assert.deepEqual([report.missingAtUs, report.contentMismatch, report.timingSkew], [[], [], []]);
    assert.ok(rounds <= 3, `${rounds} round trips`);
  });

  test('bad requests: a window that is not RFC 3339, an empty or broken message, too many elements', async () => {
    const msg = new Negentropy(indexProjections(truth).index).initiate();
    const octets = { contentType: 'application/octet-stream' };
    assert.equal(
      (await call('POST', '/v1/journal/reconcile?from=yesterday&to=today', { body: msg, ...octets })).status,
      400,
    );
    assert.equal(
      (await call('POST', `/v1/journal/reconcile?${q}`, { body: Buffer.from([0x61, 0x05]), ...octets }))
        .status,
      400,
    );
    const many = Array.from({ length: 1001 }, () => 'ab'.repeat(32));
    assert.equal((await call('POST', '/v1/journal/projections', { body: { elements: many } })).status, 400);
    assert.equal(
      (await call('POST', '/v1/journal/projections', { body: { elements: ['xyz'] } })).status,
      400,
    );
    const none = await call('POST', '/v1/journal/projections', { body: { elements: ['00'.repeat(32)] } });
    assert.deepEqual(JSON.parse(none.body.toString()), { projections: [] });
  });
});

describe('the journal routes refuse what the door route refuses (contract §1–§3 mirrored)', () => {
  let agent: Agent;
  let token: string;
  let signingKey: SigningKey;
  before(async () => {
    const read = (f: string) => readFile(path.join(h.dataDir, 'pki', f), 'utf8');
    agent = new Agent({
      connect: {
        ca: sim.serverCaPem,
        cert: await read('service-client.crt'),
        key: await read('service-client.key'),
      },
    });
    signingKey = await loadSigningKey(path.join(h.dataDir, 'keys', 'response-signing.jwk'), 'Ed25519');
    const res = await request(`${sim.url}/oauth/token`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials&client_id=smart-home-at-north&scope=audit%3Aexchange',
    });
    token = ((await res.body.json()) as { access_token: string }).access_token;
  });
  after(() => agent?.close());

  const send = async (
    method: 'GET' | 'POST',
    p: string,
    opts: { body?: Buffer; sign?: 'ours' | 'rogue' | 'none'; nonce?: string; tamper?: boolean } = {},
  ) => {
    const url = `${sim.url}${p}`;
    const headers: Record<string, string> = { authorization: `Bearer ${token}` };
    if (opts.body) {
      headers['content-type'] = 'application/json';
      headers['content-digest'] = contentDigest(opts.body);
    }
    if ((opts.sign ?? 'ours') !== 'none') {
      const privateKey =
        opts.sign === 'rogue' ? generateKeyPairSync('ed25519').privateKey : signingKey.privateKey;
      Object.assign(
        headers,
        signRequest({
          method,
          targetUri: url,
          headers,
          components: opts.body ? REQUEST_COMPONENTS_WITH_BODY : REQUEST_COMPONENTS_WITHOUT_BODY,
          privateKey,
          keyid: signingKey.kid,
          ...(opts.nonce ? { nonce: opts.nonce } : {}),
        }),
      );
    }
    const body = opts.body && opts.tamper ? Buffer.from(opts.body.toString().replace('00', '11')) : opts.body;
    const res = await request(url, { method, dispatcher: agent, headers, ...(body ? { body } : {}) });
    await res.body.arrayBuffer();
    return res.statusCode;
  };

  test('signed by smart-home: 200; unsigned, signed by another key, replayed or tampered: 401', async () => {
    assert.equal(await send('GET', '/v1/journal/checkpoint'), 200);
    assert.equal(await send('GET', '/v1/journal/checkpoint', { sign: 'none' }), 401);
    assert.equal(await send('GET', '/v1/journal/checkpoint', { sign: 'rogue' }), 401);
    assert.equal(sim.refusals.at(-1)?.problem, 'invalid-signature');
    const nonce = randomBytes(16).toString('base64url');
    assert.equal(await send('GET', '/v1/journal/checkpoint', { nonce }), 200);
    assert.equal(await send('GET', '/v1/journal/checkpoint', { nonce }), 401, 'the same nonce again');
    const body = Buffer.from(JSON.stringify({ elements: ['00'.repeat(32)] }));
    assert.equal(await send('POST', '/v1/journal/projections', { body }), 200);
    assert.equal(await send('POST', '/v1/journal/projections', { body, tamper: true }), 401);
  });

  test('without a client certificate the handshake fails', async () => {
    const anonymous = new Agent({ connect: { ca: sim.serverCaPem } });
    try {
      await assert.rejects(request(`${sim.url}/v1/journal/checkpoint`, { dispatcher: anonymous }));
    } finally {
      await anonymous.close();
    }
  });
});
