/**
 * smart-home as the witness of partners' journal logs (contract §8.2, C2SP tlog-witness), over real
 * mTLS with signed partner clients. Each partner's log is a small Merkle log kept here and signed
 * with a log key registered for that partner in the world.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Agent, request } from 'undici';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { ResidentApp } from '../../simulator/resident-app.ts';
import { sql } from '../../src/db/sql.ts';
import { createOperator } from '../../src/identity/operators.ts';
import { witnessOverview } from '../../src/journal/witness/routes.ts';
import { WITNESS_ALERT_ACTION } from '../../src/journal/witness/state.ts';
import { consistencyNodes, consistencyProof, nodeKey, rootOfLeafHashes } from '../../src/tlog/merkle.ts';
import {
  formatCheckpoint,
  type NoteSigner,
  noteSigner,
  openNote,
  parseCheckpoint,
  signNote,
} from '../../src/tlog/note.ts';
import { formatAddCheckpoint } from '../../src/tlog/witness.ts';
import { type Harness, startHarness } from '../support/harness.ts';
import { writeOAuthClients } from '../support/oauth-clients.ts';
import { standardWorld } from '../support/world.ts';

/** A partner's journal as a Merkle log: leaf hashes, signed checkpoints, consistency proofs. */
class TestLog {
  readonly leaves: Buffer[] = [];
  readonly signer: NoteSigner;
  constructor(signer: NoteSigner) {
    this.signer = signer;
  }
  grow(n: number): this {
    for (let i = 0; i < n; i++)
      this.leaves.push(createHash('sha256').update(`${this.signer.name} ${this.leaves.length}`).digest());
    return this;
  }
  checkpoint(size = this.leaves.length, signer = this.signer): string {
    const text = formatCheckpoint({
      origin: this.signer.name,
      size,
      root: rootOfLeafHashes(this.leaves.slice(0, size)),
    });
    return signNote(text, [signer]);
  }
  proof(from: number, to = this.leaves.length): Buffer[] {
    const nodes = new Map(
      consistencyNodes(from, to).map((n) => [
        nodeKey(n.level, n.index),
        rootOfLeafHashes(this.leaves.slice(n.index * 2 ** n.level, (n.index + 1) * 2 ** n.level)),
      ]),
    );
    return consistencyProof(from, to, nodes);
  }
}

const ed25519 = () => generateKeyPairSync('ed25519').privateKey;
const northLog = new TestLog(noteSigner('north.partner.example/journal', ed25519()));
const southLog = new TestLog(noteSigner('south.partner.example/journal', ed25519()));

let h: Harness;
let north: PartnerClient;
let south: PartnerClient;
let northId: string;
let clientsDir: string;
const WEB_REDIRECT = 'https://console.example/callback';
const CONSOLE_SECRET = 'console-secret-console-secret-console-secret';
const OP_PASSWORD = 'correct horse battery staple';

before(async () => {
  clientsDir = await mkdtemp(path.join(tmpdir(), 'smart-home-witness-'));
  const clientsFile = await writeOAuthClients(clientsDir, [
    {
      clientId: 'operator-console',
      role: 'operator',
      redirectUris: [WEB_REDIRECT],
      clientSecret: CONSOLE_SECRET,
    },
  ]);
  h = await startHarness({
    env: { SMART_HOME_OAUTH_CLIENTS_FILE: clientsFile },
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => {
      const w = standardWorld(ids);
      w.partners![0]!.logKey = northLog.signer.verifierKey;
      w.partners![1]!.logKey = southLog.signer.verifierKey;
      return w;
    },
  });
  north = await h.client('barrier-north');
  south = await h.client('barrier-south', { localAddress: '127.0.0.3' });
  northId = (await h.runtime.db.one<{ id: string }>(
    sql`select id from partners where code = 'barrier-north'`,
  ))!.id;
});
after(async () => {
  await h?.close();
  if (clientsDir) await rm(clientsDir, { recursive: true, force: true });
});

const submit = (client: PartnerClient, body: string, scope = 'audit:exchange') =>
  client.send('POST', '/partner/v1/journal/witness/add-checkpoint', {
    scope,
    rawBody: Buffer.from(body, 'utf8'),
    headers: { 'content-type': 'text/plain; charset=utf-8' },
  });

const state = (partnerId: string) =>
  h.runtime.db.one<{ size: string; root: Buffer; note: string }>(
    sql`select size::text as size, root, note from witness_state where partner_id = ${partnerId}::uuid`,
  );
const alerts = () =>
  h.runtime.db.query<{
    partner_id: string;
    result: string;
    actor_type: string;
    details: Record<string, unknown>;
  }>(
    sql`select partner_id::text as partner_id, result, actor_type, details from journal
        where action = ${WITNESS_ALERT_ACTION} order by seq`,
  );

describe('smart-home witnesses a partner’s own log (contract §8.2)', () => {
  test('the first checkpoint (old 0) is cosigned with our witness key, and stored', async () => {
    northLog.grow(5);
    const note = northLog.checkpoint();
    const res = await submit(north, formatAddCheckpoint({ oldSize: 0, proof: [], note }));
    assert.equal(res.status, 200);
    assert.equal(res.signatureValid, true, 'the answer is signed per contract §3');
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    const line = res.rawBody.toString('utf8');
    assert.match(line, /^\u2014 \S+ [A-Za-z0-9+/]+=*\n$/u);
    // The line appended to the partner's note makes a note cosigned by our witness key (cosignature/v1).
    const opened = openNote(`${note}${line}`, [h.runtime.witness.verifier]);
    assert.equal(opened.verified.length, 1);
    assert.equal(opened.verified[0]!.name, h.runtime.witness.name);
    const st = await state(northId);
    assert.equal(st?.size, '5');
    assert.ok(st && Buffer.from(st.root).equals(parseCheckpoint(opened.text).root));
  });

  test('a grown log with a valid consistency proof moves the state forward', async () => {
    northLog.grow(8);
    const res = await submit(
      north,
      formatAddCheckpoint({ oldSize: 5, proof: northLog.proof(5), note: northLog.checkpoint() }),
    );
    assert.equal(res.status, 200);
    assert.equal((await state(northId))?.size, '13');
    // The same checkpoint again (old = new size, empty proof): cosigned again, nothing moves.
    const again = await submit(
      north,
      formatAddCheckpoint({ oldSize: 13, proof: [], note: northLog.checkpoint() }),
    );
    assert.equal(again.status, 200);
    assert.equal((await state(northId))?.size, '13');
  });

  test('a stale old size: 409 text/x.tlog.size with the size we hold; not an alert', async () => {
    const before = (await alerts()).length;
    northLog.grow(2);
    const res = await submit(
      north,
      formatAddCheckpoint({ oldSize: 5, proof: northLog.proof(5), note: northLog.checkpoint() }),
    );
    assert.equal(res.status, 409);
    assert.equal(res.headers['content-type'], 'text/x.tlog.size');
    assert.equal(res.rawBody.toString('utf8'), '13\n');
    assert.equal((await state(northId))?.size, '13');
    assert.equal((await alerts()).length, before);
    // The partner retries from 13, as C2SP tlog-witness says.
    const retry = await submit(
      north,
      formatAddCheckpoint({ oldSize: 13, proof: northLog.proof(13), note: northLog.checkpoint() }),
    );
    assert.equal(retry.status, 200);
    assert.equal((await state(northId))?.size, '15');
  });

  test('a proof that does not hold: 422, an alert journaled, the state unchanged', async () => {
    const before = (await alerts()).length;
    northLog.grow(3);
    const proof = northLog.proof(15);
    proof[0] = Buffer.from(proof[0]!).fill(7);
    const res = await submit(north, formatAddCheckpoint({ oldSize: 15, proof, note: northLog.checkpoint() }));
    assert.equal(res.status, 422);
    assert.equal((await state(northId))?.size, '15');
    const all = await alerts();
    assert.equal(all.length, before + 1);
    const a = all.at(-1)!;
    assert.equal(a.partner_id, northId);
    assert.equal(a.result, 'inconsistent');
    assert.equal(a.actor_type, 'partner');
    const details = typeof a.details === 'string' ? JSON.parse(a.details) : a.details;
    assert.equal(details.origin, northLog.signer.name);
    assert.equal(details.witnessedSize, 15);
  });

  test('a fork — the size we cosigned with another root — is a 409 conflict and an alert', async () => {
    const before = (await alerts()).length;
    const fork = new TestLog(northLog.signer);
    fork.leaves.push(...northLog.leaves.slice(0, 14), createHash('sha256').update('forged').digest());
    const res = await submit(
      north,
      formatAddCheckpoint({ oldSize: 15, proof: [], note: fork.checkpoint(15) }),
    );
    assert.equal(res.status, 409);
    assert.match(String(res.headers['content-type']), /^text\/plain/);
    const all = await alerts();
    assert.equal(all.length, before + 1);
    assert.equal(all.at(-1)!.result, 'conflict');
    assert.equal((await state(northId))?.size, '15');
  });

  test('a checkpoint not signed by the registered log key: 403, nothing stored', async () => {
    const impostor = noteSigner(northLog.signer.name, ed25519());
    const res = await submit(
      north,
      formatAddCheckpoint({
        oldSize: 15,
        proof: northLog.proof(15),
        note: northLog.checkpoint(undefined, impostor),
      }),
    );
    assert.equal(res.status, 403);
    assert.equal((await state(northId))?.size, '15');
  });

  test('a partner can only submit its own log: another partner’s origin, or an unknown one, is 404', async () => {
    southLog.grow(4);
    // South's own log is fine…
    const own = await submit(
      south,
      formatAddCheckpoint({ oldSize: 0, proof: [], note: southLog.checkpoint() }),
    );
    assert.equal(own.status, 200);
    // …but south cannot have north's log witnessed, even with a note north really signed.
    const other = await submit(
      south,
      formatAddCheckpoint({ oldSize: 15, proof: northLog.proof(15), note: northLog.checkpoint() }),
    );
    assert.equal(other.status, 404);
    const unknown = new TestLog(noteSigner('nobody.example/journal', ed25519())).grow(1);
    assert.equal(
      (await submit(north, formatAddCheckpoint({ oldSize: 0, proof: [], note: unknown.checkpoint() })))
        .status,
      404,
    );
    assert.equal((await state(northId))?.size, '15');
  });

  test('malformed bodies are 400', async () => {
    for (const body of ['', 'old x\n\nnote', 'old 1\nnot-base64\n\n', 'old 0\n']) {
      assert.equal((await submit(north, body)).status, 400, JSON.stringify(body));
    }
    const bad = Buffer.concat([Buffer.from('old 0\n\n'), Buffer.from([0xff, 0xfe]), Buffer.from('\n')]);
    const res = await north.send('POST', '/partner/v1/journal/witness/add-checkpoint', {
      scope: 'audit:exchange',
      rawBody: bad,
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(res.status, 400);
  });

  test('the zone still applies: a token without audit:exchange, an unsigned request', async () => {
    const body = formatAddCheckpoint({ oldSize: 15, proof: northLog.proof(15), note: northLog.checkpoint() });
    const res = await submit(north, body, 'barrier:decide');
    assert.equal(res.status, 403);
    const unsigned = await north.send('POST', '/partner/v1/journal/witness/add-checkpoint', {
      scope: 'audit:exchange',
      rawBody: Buffer.from(body),
      headers: { 'content-type': 'text/plain' },
      sign: false,
    });
    assert.equal(unsigned.status, 401);
    assert.equal((await state(northId))?.size, '15');
  });

  test('two submissions from the same size at once: one is cosigned, the other learns the new size', async () => {
    northLog.grow(6); // 18 + 6 = 24 leaves; submit 20 and 24 from 15 concurrently
    const [a, b] = await Promise.all([
      submit(
        north,
        formatAddCheckpoint({ oldSize: 15, proof: northLog.proof(15, 20), note: northLog.checkpoint(20) }),
      ),
      submit(
        north,
        formatAddCheckpoint({ oldSize: 15, proof: northLog.proof(15, 24), note: northLog.checkpoint(24) }),
      ),
    ]);
    const statuses = [a.status, b.status].sort();
    assert.deepEqual(statuses, [200, 409]);
    const won = a.status === 200 ? 20 : 24;
    const lost = a.status === 200 ? b : a;
    assert.equal(lost.rawBody.toString('utf8'), `${won}\n`);
    assert.equal((await state(northId))?.size, String(won));
    // If 24 won, 20 can never be cosigned any more (no rolling back); if 20 won, 24 follows from it.
    const next = await submit(
      north,
      formatAddCheckpoint({
        oldSize: won,
        proof: won === 24 ? [] : northLog.proof(20, 24),
        note: northLog.checkpoint(24),
      }),
    );
    assert.equal(next.status, 200);
    assert.equal((await state(northId))?.size, '24');
  });

  test('the operator overview lists the witnessed logs and the alerts, newest first', async () => {
    const o = await witnessOverview(h.runtime.db);
    const n = o.witnessing.find((w) => w.partnerId === northId);
    assert.equal(n?.origin, northLog.signer.name);
    assert.equal(n?.size, 24);
    assert.equal(o.witnessing.length, 2);
    assert.deepEqual(
      o.alerts.map((a) => a.result),
      ['conflict', 'inconsistent'],
    );
    assert.equal(o.alerts[0]!.partnerId, northId);
  });

  test('GET /admin/v1/journal/witness gives an operator the same overview; no token, no answer', async () => {
    const { otpauthUri } = await createOperator(
      { db: h.runtime.db, cipher: h.runtime.cipher },
      'duty.witness',
      OP_PASSWORD,
    );
    const op = new ResidentApp({
      issuer: h.publicUrl,
      ca: h.serverCa,
      clientId: 'operator-console',
      redirectUri: WEB_REDIRECT,
      clientSecret: CONSOLE_SECRET,
    });
    try {
      await op.signInOperator('duty.witness', OP_PASSWORD, new URL(otpauthUri).searchParams.get('secret')!);
      const res = await op.admin<Awaited<ReturnType<typeof witnessOverview>>>('GET', '/journal/witness');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.deepEqual(res.body, await witnessOverview(h.runtime.db));
    } finally {
      await op.close();
    }
    const agent = new Agent({ connect: { ca: h.serverCa } });
    try {
      const res = await request(`${h.publicUrl}/admin/v1/journal/witness`, { dispatcher: agent });
      await res.body.dump();
      assert.equal(res.statusCode, 401);
    } finally {
      await agent.close();
    }
  });
});
