import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createTestDb } from '../../../test/support/test-db.ts';
import { FieldCipher } from '../../crypto/field-cipher.ts';
import { kekFromBytes } from '../../crypto/kek.ts';
import { pseudonym } from '../../crypto/partner-keys.ts';
import type { Db } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { elementHex, type ProjectionRecord, projectionElement } from '../../reconcile/projection.ts';
import { DATA_KEY_PURPOSES } from '../../registry/data-key-purposes.ts';
import { addPartnerSecret, loadPartnerKeys } from '../../registry/partner-secrets.ts';
import { noteSigner } from '../../tlog/note.ts';
import { integrateAll } from '../log/sequencer.ts';
import { readProjectionFile } from '../reconcile/offline.ts';
import { ReconStore } from '../reconcile/store.ts';
import { exportProjections } from './projections.ts';
import { fileSink, type Sink } from './sink.ts';

const ORIGIN = 'smart-home.test/journal';
const log = { origin: ORIGIN, signer: noteSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey) };
const NORTH = '0193a000-0000-7000-8000-00000000000a';
const SOUTH = '0193a000-0000-7000-8000-00000000000b';
const GATE_N = '0193a000-0000-7000-8000-0000000000d1';
const DOOR_N = '0193a000-0000-7000-8000-0000000000d2';
const GATE_S = '0193a000-0000-7000-8000-0000000000d3';
const T0 = Date.parse('2026-12-01T10:00:00Z');
const MIN = 60_000;
const MARGIN = 10 * MIN;

/** A UUIDv7 whose time is `ms` (contract §8.3: an action's time is its eventId's). */
function eventId(ms: number): string {
  const b = randomBytes(16);
  b.writeUIntBE(ms, 0, 6);
  b[6] = (b[6]! & 0x0f) | 0x70;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

let db: Db;
let cipher: FieldCipher;
let dir: string;
const E = {
  gate: eventId(T0),
  door: eventId(T0 + 1 * MIN),
  request: eventId(T0 + 2 * MIN),
  south: eventId(T0 + 3 * MIN),
  // recorded 5 minutes after its eventId's time (the partner's clock behind ours), inside the margin
  late: eventId(T0 + 4 * MIN),
  pending: eventId(T0 + 6 * MIN),
};

async function row(r: {
  at: number;
  action: string;
  partner: string;
  device: string;
  result: string;
  subject?: string;
  details: Record<string, unknown>;
}) {
  await db.query(sql`insert into journal (id, at, actor_type, actor_id, action, partner_id, device_id, subject_type,
      subject_id, result, details)
    values (gen_random_uuid(), ${new Date(r.at).toISOString()}::timestamptz, 'partner', ${r.partner}, ${r.action},
      ${r.partner}::uuid, ${r.device}::uuid, ${r.subject ? 'resident' : null}, ${r.subject ?? null}, ${r.result},
      ${JSON.stringify(r.details)}::jsonb)`);
}

before(async () => {
  db = await createTestDb();
  cipher = await FieldCipher.open(db, kekFromBytes(randomBytes(32)), DATA_KEY_PURPOSES);
  dir = await mkdtemp(path.join(tmpdir(), 'smart-home-projections-'));
  await db.exec(`
    insert into complexes (id, code, name) values ('0193a000-0000-7000-8000-0000000000c1', 'c1', 'C1');
    insert into partners (id, code, name, scopes) values
      ('${NORTH}', 'north', 'North', '{audit:exchange}'), ('${SOUTH}', 'south', 'South', '{audit:exchange}');
    insert into devices (id, partner_id, external_id, kind, name, complex_id) values
      ('${GATE_N}', '${NORTH}', 'gate-n', 'barrier', 'Gate N', '0193a000-0000-7000-8000-0000000000c1'),
      ('${DOOR_N}', '${NORTH}', 'door-n', 'door', 'Door N', '0193a000-0000-7000-8000-0000000000c1'),
      ('${GATE_S}', '${SOUTH}', 'gate-s', 'barrier', 'Gate S', '0193a000-0000-7000-8000-0000000000c1');`);
  await addPartnerSecret(db, cipher, { id: NORTH, code: 'north' });
  const details = (id: string) => ({ eventId: id, decisionId: eventId(T0) });
  await row({
    at: T0 + 40,
    action: 'barrier.decision',
    partner: NORTH,
    device: GATE_N,
    result: 'open',
    details: details(E.gate),
  });
  await row({
    at: T0 + 1 * MIN - 10,
    action: 'door.open.request',
    partner: NORTH,
    device: DOOR_N,
    result: 'sent',
    subject: 'resident-1',
    details: { commandId: E.door },
  });
  await row({
    at: T0 + 1 * MIN + 30,
    action: 'door.open.result',
    partner: NORTH,
    device: DOOR_N,
    result: 'opened',
    subject: 'resident-1',
    details: { commandId: E.door },
  });
  await row({
    at: T0 + 3 * MIN,
    action: 'barrier.decision',
    partner: SOUTH,
    device: GATE_S,
    result: 'deny',
    details: details(E.south),
  });
  await row({
    at: T0 + 9 * MIN,
    action: 'barrier.decision',
    partner: NORTH,
    device: GATE_N,
    result: 'deny',
    details: details(E.late),
  });
  await integrateAll(db, log, 100);
  // Not in the signed log yet: not exported.
  await row({
    at: T0 + 6 * MIN,
    action: 'barrier.decision',
    partner: NORTH,
    device: GATE_N,
    result: 'open',
    details: details(E.pending),
  });
});
after(async () => {
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

function memorySink(): Sink & { text: string } {
  const s = {
    text: '',
    write: async (c: string) => {
      s.text += c;
    },
    commit: async () => {},
    abort: async () => {},
  };
  return s;
}

async function records(opts: { from?: number; to?: number; pageSize?: number } = {}) {
  const sink = memorySink();
  const r = await exportProjections(db, cipher, sink, {
    partnerId: NORTH,
    from: opts.from === undefined ? undefined : new Date(opts.from),
    to: opts.to === undefined ? undefined : new Date(opts.to),
    clockMarginMs: MARGIN,
    ...(opts.pageSize ? { pageSize: opts.pageSize } : {}),
  });
  const lines = sink.text === '' ? [] : sink.text.trimEnd().split('\n');
  assert.equal(lines.length, r.entries);
  return lines.map((l) => JSON.parse(l) as ProjectionRecord);
}

test("the partner's projections from the signed log, one record a line, elements of §8.3", async () => {
  const recs = await records();
  const [key] = await loadPartnerKeys(db, cipher, NORTH);
  assert.deepEqual(
    recs.map((r) => r.projection),
    [
      {
        eventId: E.gate,
        action: 'barrier.decision',
        device: 'gate-n',
        subject: null,
        result: 'open',
        initiator: 'partner',
      },
      {
        eventId: E.door,
        action: 'door.open',
        device: 'door-n',
        subject: pseudonym(key!.pseudonymKey, 'resident-1'),
        result: 'opened',
        initiator: 'smart-home',
      },
      {
        eventId: E.late,
        action: 'barrier.decision',
        device: 'gate-n',
        subject: null,
        result: 'deny',
        initiator: 'partner',
      },
    ],
  );
  for (const r of recs) {
    assert.equal(r.element, elementHex(projectionElement(r.projection)));
    assert.equal(r.time, Number.parseInt(r.projection.eventId.replace(/-/g, '').slice(0, 12), 16));
  }
  assert.equal(recs[0]!.at, new Date(T0 + 40).toISOString());
  assert.deepEqual(Object.keys(recs[0]!), ['element', 'time', 'projection', 'at']);
  for (const pageSize of [1, 2]) assert.deepEqual(await records({ pageSize }), recs);
});

test('the window is on the eventId time, the rows found by their recording time within the margin', async () => {
  // E.late: eventId at T0+4 min, recorded at T0+9 min — in a window ending at T0+5 min.
  const w = await records({ from: T0 + 1 * MIN, to: T0 + 5 * MIN });
  assert.deepEqual(
    w.map((r) => r.projection.eventId),
    [E.door, E.late],
  );
  assert.deepEqual(
    (await records({ to: T0 + 1 * MIN })).map((r) => r.projection.eventId),
    [E.gate],
  );
  assert.deepEqual(await records({ from: T0 + 5 * MIN }), []);
});

test('the file is what the offline comparison reads, and holds the elements the online exchange serves', async () => {
  const file = path.join(dir, 'north.jsonl');
  const from = T0 - 30 * MIN;
  const to = T0 + 30 * MIN;
  await exportProjections(db, cipher, await fileSink(file), {
    partnerId: NORTH,
    from: new Date(from),
    to: new Date(to),
    clockMarginMs: MARGIN,
  });
  const read = await readProjectionFile(file);
  const store = new ReconStore({ db, cipher, clockMarginMs: MARGIN, cacheDays: 4 });
  const online = [...(await store.view(NORTH, from, to)).items()];
  assert.equal(online.length, 3);
  assert.deepEqual(read.items.map((i) => i.element).sort(), online.map((i) => elementHex(i.element)).sort());
});
