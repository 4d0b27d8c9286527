import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestDb } from '../../../test/support/test-db.ts';
import type { Db } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { leafHash, rootOfLeafHashes } from '../../tlog/merkle.ts';
import { noteSigner } from '../../tlog/note.ts';
import { uuidv7 } from '../../util/uuid.ts';
import { integrateAll, logState } from '../log/sequencer.ts';
import { type ExportFormat, exportJournal } from './export.ts';
import type { ExportFilter } from './rows.ts';
import { resolvePartner, UnknownPartnerError } from './rows.ts';
import { fileSink, OutputExistsError, type Sink } from './sink.ts';

const ORIGIN = 'smart-home.test/journal';
const log = { origin: ORIGIN, signer: noteSigner(ORIGIN, generateKeyPairSync('ed25519').privateKey) };
const NORTH = '0193a000-0000-7000-8000-00000000000a';
const SOUTH = '0193a000-0000-7000-8000-00000000000b';
const DEV_N = '0193a000-0000-7000-8000-0000000000d1';
const DEV_S = '0193a000-0000-7000-8000-0000000000d2';
const T0 = Date.parse('2026-12-01T10:00:00Z');
const MIN = 60_000;

let db: Db;
let dir: string;

/** Rows as the service writes them, at chosen times (inserting is all the journal allows). */
const ROWS = [
  // 0: north's barrier decision on its own device
  {
    at: T0,
    actor: 'partner',
    actorId: NORTH,
    action: 'barrier.decision',
    partner: NORTH,
    device: DEV_N,
    subjectType: 'vehicle',
    subjectId: 'p-7f3a',
    result: 'allow',
    requestId: 'req-1',
    details: { eventId: '0193a000-1111-7000-8000-000000000001' },
  },
  // 1: a resident opens south's door (partner id recorded)
  {
    at: T0 + 1 * MIN,
    actor: 'resident',
    actorId: 'r-1',
    action: 'door.open.result',
    partner: SOUTH,
    device: DEV_S,
    subjectType: 'resident',
    subjectId: 'r-1',
    result: 'opened',
    requestId: 'req-2',
    details: { commandId: '0193a000-2222-7000-8000-000000000002' },
  },
  // 2: about north's device, without a partner id on the row
  {
    at: T0 + 2 * MIN,
    actor: 'system',
    actorId: null,
    action: 'device.status',
    partner: null,
    device: DEV_N,
    subjectType: null,
    subjectId: null,
    result: 'offline',
    requestId: null,
    details: {},
  },
  // 3: an operator's registry change, no partner
  {
    at: T0 + 3 * MIN,
    actor: 'operator',
    actorId: 'op-1',
    action: 'registry.resident.create',
    partner: null,
    device: null,
    subjectType: 'resident',
    subjectId: 'r-2',
    result: 'created',
    requestId: 'req-3',
    details: {},
  },
  // 4: north denies
  {
    at: T0 + 4 * MIN,
    actor: 'partner',
    actorId: NORTH,
    action: 'barrier.decision',
    partner: NORTH,
    device: DEV_N,
    subjectType: null,
    subjectId: null,
    result: 'deny',
    requestId: 'req-4',
    details: { eventId: '0193a000-1111-7000-8000-000000000004' },
  },
  // 5: a guest pass revoked
  {
    at: T0 + 5 * MIN,
    actor: 'resident',
    actorId: 'r-1',
    action: 'registry.guest-pass.revoke',
    partner: null,
    device: null,
    subjectType: 'guest-pass',
    subjectId: 'gp-1',
    result: 'ok',
    requestId: 'req-5',
    details: {},
  },
  // 6: south's decision
  {
    at: T0 + 6 * MIN,
    actor: 'partner',
    actorId: SOUTH,
    action: 'barrier.decision',
    partner: SOUTH,
    device: DEV_S,
    subjectType: null,
    subjectId: null,
    result: 'allow',
    requestId: 'req-6',
    details: { eventId: '0193a000-1111-7000-8000-000000000006' },
  },
] as const;
const ids: string[] = [];

before(async () => {
  db = await createTestDb();
  dir = await mkdtemp(path.join(tmpdir(), 'smart-home-export-'));
  await db.exec(`
    insert into complexes (id, code, name) values ('0193a000-0000-7000-8000-0000000000c1', 'c1', 'C1');
    insert into partners (id, code, name, scopes) values
      ('${NORTH}', 'north', 'North', '{audit:exchange}'), ('${SOUTH}', 'south', 'South', '{audit:exchange}');
    insert into devices (id, partner_id, external_id, kind, name, complex_id) values
      ('${DEV_N}', '${NORTH}', 'gate-n', 'barrier', 'Gate N', '0193a000-0000-7000-8000-0000000000c1'),
      ('${DEV_S}', '${SOUTH}', 'door-s', 'door', 'Door S', '0193a000-0000-7000-8000-0000000000c1');`);
  for (const r of ROWS) {
    const id = uuidv7(r.at);
    ids.push(id);
    await db.query(sql`insert into journal (id, at, actor_type, actor_id, action, partner_id, device_id,
        subject_type, subject_id, result, request_id, details)
      values (${id}::uuid, ${new Date(r.at).toISOString()}::timestamptz, ${r.actor}, ${r.actorId}, ${r.action},
        ${r.partner}::uuid, ${r.device}::uuid, ${r.subjectType}, ${r.subjectId}, ${r.result}, ${r.requestId},
        ${JSON.stringify(r.details)}::jsonb)`);
  }
  await integrateAll(db, log, 100);
});
after(async () => {
  await db.close();
  await rm(dir, { recursive: true, force: true });
});

/** A sink that keeps what it is given, and whether it was committed or aborted. */
function memorySink(): Sink & { text: string; state: string } {
  const s = {
    text: '',
    state: 'open',
    write: async (c: string) => {
      s.text += c;
    },
    commit: async () => {
      s.state = 'committed';
    },
    abort: async () => {
      s.state = 'aborted';
    },
  };
  return s;
}

async function run(format: ExportFormat, filter: ExportFilter = {}, pageSize?: number) {
  const sink = memorySink();
  const seen: Array<[number, number]> = [];
  const r = await exportJournal(db, sink, {
    format,
    filter,
    origin: ORIGIN,
    ...(pageSize ? { pageSize } : {}),
    onProgress: (d, t) => seen.push([d, t]),
  });
  const lines = sink.text.split('\n');
  assert.equal(lines.pop(), '', 'every line ends with a newline');
  assert.equal(r.entries, lines.length);
  assert.equal(sink.state, 'committed');
  return { lines, objects: lines.map((l) => JSON.parse(l) as Record<string, unknown>), progress: seen };
}

describe('JSON Lines', () => {
  test('every entry in journal order, each line the log entry itself: its leaf hashes give the signed root', async () => {
    const { lines, objects } = await run('jsonl');
    assert.deepEqual(
      objects.map((o) => o['id']),
      ids,
    );
    const root = rootOfLeafHashes(lines.map((l) => leafHash(Buffer.from(l, 'utf8'))));
    assert.deepEqual(root, (await logState(db)).root);
    assert.equal(objects[0]!['at'], T0 * 1000);
    assert.deepEqual(objects[0]!['details'], ROWS[0].details);
  });

  test('pages of any size give the same lines, and progress counts up to the total', async () => {
    const whole = await run('jsonl');
    for (const pageSize of [1, 2, 3, 7, 8]) {
      const paged = await run('jsonl', {}, pageSize);
      assert.deepEqual(paged.lines, whole.lines, `page size ${pageSize}`);
      assert.deepEqual(paged.progress[0], [0, 7]);
      assert.deepEqual(paged.progress.at(-1), [7, 7]);
    }
  });

  test('--from is inclusive and --to exclusive', async () => {
    const { objects } = await run('jsonl', { from: new Date(T0 + 1 * MIN), to: new Date(T0 + 4 * MIN) });
    assert.deepEqual(
      objects.map((o) => o['id']),
      ids.slice(1, 4),
    );
    const open = await run('jsonl', { from: new Date(T0 + 5 * MIN) });
    assert.deepEqual(
      open.objects.map((o) => o['id']),
      ids.slice(5),
    );
    const before = await run('jsonl', { to: new Date(T0 + 1) });
    assert.deepEqual(
      before.objects.map((o) => o['id']),
      ids.slice(0, 1),
    );
    const none = await run('jsonl', { from: new Date(T0 + 60 * MIN) });
    assert.deepEqual(none.lines, []);
  });

  test('--partner selects its own entries and those about its devices, by id or by code', async () => {
    const north = await resolvePartner(db, 'north');
    assert.equal(north.id, NORTH);
    assert.equal((await resolvePartner(db, SOUTH)).code, 'south');
    await assert.rejects(resolvePartner(db, 'nobody'), UnknownPartnerError);
    const n = await run('jsonl', { partnerId: NORTH });
    assert.deepEqual(
      n.objects.map((o) => o['id']),
      [ids[0], ids[2], ids[4]],
    );
    const s = await run('jsonl', { partnerId: SOUTH, from: new Date(T0 + 2 * MIN) });
    assert.deepEqual(
      s.objects.map((o) => o['id']),
      [ids[6]],
    );
  });
});

describe('OCSF', () => {
  test('API Activity events: class, activity, status, time, actor, api, device, correlation', async () => {
    const { objects } = await run('ocsf');
    assert.equal(objects.length, 7);
    for (const e of objects) {
      assert.equal(e['class_uid'], 6003);
      assert.equal(e['category_uid'], 6);
      assert.equal(e['type_uid'], 600300 + (e['activity_id'] as number));
      assert.equal(e['severity_id'], 1);
      assert.ok(e['cloud'] && e['src_endpoint'] && e['actor'] && e['api']);
    }
    // biome-ignore lint/suspicious/noExplicitAny: the test walks nested members of parsed JSON
    const [decision, door, status, created, denied, revoked] = objects as Array<Record<string, any>>;
    assert.equal(decision!['time'], T0);
    assert.equal(decision!['activity_id'], 99);
    assert.equal(decision!['activity_name'], 'barrier.decision');
    assert.equal(decision!['status_id'], 1);
    assert.equal(decision!['status_detail'], 'allow');
    assert.deepEqual(decision!['actor'], { user: { uid: NORTH, type_id: 99, type: 'Partner' } });
    assert.deepEqual(decision!['api'], {
      operation: 'barrier.decision',
      service: { name: 'smart-home' },
      request: { uid: 'req-1' },
    });
    assert.equal(decision!['device'].uid, DEV_N);
    assert.deepEqual(decision!['resources'], [{ uid: 'p-7f3a', type: 'vehicle' }]);
    assert.equal(decision!['metadata'].uid, ids[0]);
    assert.equal(decision!['metadata'].log_name, ORIGIN);
    assert.equal(decision!['metadata'].correlation_uid, ROWS[0].details.eventId);
    assert.equal(door!['metadata'].correlation_uid, ROWS[1].details.commandId);
    assert.equal(door!['actor'].user.type, 'User');
    assert.equal(door!['status_id'], 1);
    assert.equal(status!['status_id'], 99);
    assert.equal(status!['actor'].user.type_id, 3);
    assert.equal(status!['api'].request, undefined);
    assert.equal(created!['activity_id'], 1);
    assert.equal(created!['type_name'], 'API Activity: Create');
    assert.equal(created!['actor'].user.type_id, 2);
    assert.equal(created!['device'], undefined);
    assert.equal(denied!['status_id'], 2);
    assert.equal(denied!['status'], 'Failure');
    assert.equal(revoked!['activity_id'], 4);
    const seqs = objects.map((e) => (e['metadata'] as { sequence: number }).sequence);
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
    );
  });

  test('filters apply to OCSF as to JSON Lines', async () => {
    const { objects } = await run('ocsf', { partnerId: SOUTH });
    assert.deepEqual(
      objects.map((e) => (e['metadata'] as { uid: string }).uid),
      [ids[1], ids[6]],
    );
  });
});

describe('output file', () => {
  test('appears complete under its name; an existing file is kept unless replacing is asked', async () => {
    const out = path.join(dir, 'all.jsonl');
    await exportJournal(db, await fileSink(out), { format: 'jsonl', filter: {}, origin: ORIGIN });
    const text = await readFile(out, 'utf8');
    assert.equal(text.split('\n').length, 8);
    await assert.rejects(fileSink(out), OutputExistsError);
    await exportJournal(db, await fileSink(out, { overwrite: true }), {
      format: 'jsonl',
      filter: { partnerId: SOUTH },
      origin: ORIGIN,
    });
    assert.equal((await readFile(out, 'utf8')).split('\n').length, 3);
    assert.deepEqual(await readdir(dir), ['all.jsonl']);
  });

  test('an export that fails half-way leaves neither the file nor a temporary one', async () => {
    // An entry too large for an entry bundle cannot be formatted: the export fails after the first pages.
    await db.query(sql`insert into journal (id, actor_type, action, result, details)
      values (${uuidv7()}::uuid, 'system', 'test.big', 'ok', ${JSON.stringify({ pad: 'x'.repeat(70_000) })}::jsonb)`);
    const out = path.join(dir, 'failed.jsonl');
    const before = await readdir(dir);
    await assert.rejects(
      exportJournal(db, await fileSink(out), { format: 'jsonl', filter: {}, origin: ORIGIN, pageSize: 2 }),
      /too large/,
    );
    assert.deepEqual(await readdir(dir), before);
    // Replacing an existing file: the old content stays when the new export fails.
    await writeFile(out, 'previous\n');
    await assert.rejects(
      exportJournal(db, await fileSink(out, { overwrite: true }), {
        format: 'jsonl',
        filter: {},
        origin: ORIGIN,
        pageSize: 2,
      }),
      /too large/,
    );
    assert.equal(await readFile(out, 'utf8'), 'previous\n');
    assert.deepEqual((await readdir(dir)).sort(), [...before, 'failed.jsonl'].sort());
  });
});
