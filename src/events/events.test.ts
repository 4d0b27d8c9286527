/**
 * The event inbox on the real embedded database, below the HTTP layer (proven over mTLS in
 * test/integration/events-*.test.ts): what a partner's backfill answer must be before anything of it is
 * stored (contract §9: the same event objects, in seq order, unknown fields refused; the partner is a
 * stand-in that answers given bytes), retention, the batch checks of the delivery path, the processor
 * under a failing batch, and single-event deliveries grouped into shared INSERTs.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, beforeEach, describe, test } from 'node:test';
import { PartnerEventLog } from '../../simulator/events.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db, Queryable } from '../db/db.ts';
import { migrate } from '../db/migrate.ts';
import { openPgliteDb } from '../db/pglite-db.ts';
import { sql } from '../db/sql.ts';
import { AppError } from '../errors.ts';
import { createLogger } from '../logger.ts';
import type { Outbound } from '../outbound/outbound.ts';
import { PartnerDirectory, type PartnerInfo } from '../partners/partner-directory.ts';
import { CidrSet } from '../util/cidr.ts';
import { canonicalJson } from '../util/jcs.ts';
import { backfillPartner, backoffMs } from './backfill.ts';
import { advanceCursor } from './cursor.ts';
import type { DeviceEventSink, PartnerEvent, StoredEvent } from './model.ts';
import { EventService } from './service.ts';
import { SingleEventWriter } from './single-writer.ts';
import {
  EventConflictError,
  eventHash,
  type PreparedEvent,
  parseOccurredAt,
  prepareBatch,
  purgeInbox,
  type StoreResult,
  storePrepared,
} from './store.ts';

const PARTNER = '00000000-0000-7000-8000-00000000000a';
const DEVICE = '00000000-0000-7000-8000-00000000000b';
const COMPLEX = '00000000-0000-7000-8000-00000000000c';
const P2 = '00000000-0000-7000-8000-00000000000d';
const D2 = '00000000-0000-7000-8000-00000000000e';
let db: Db;
let directory: PartnerDirectory;
let partner: PartnerInfo;
let log: PartnerEventLog;
/** What the stand-in partner answers next: status and body bytes. */
let answer: { status: number; body: string };

const outbound = {
  async send() {
    return { status: answer.status, headers: {}, body: Buffer.from(answer.body), keyid: 'k', exchangeMs: 1 };
  },
} as unknown as Outbound;

/** Each part starts from an empty inbox (the journal is append-only: parts count their own entries). */
const reset = () => db.exec('delete from event_inbox; delete from event_cursors;');

before(async () => {
  db = await openPgliteDb();
  await migrate(db);
  await db.exec(`insert into complexes (id, code, name) values ('${COMPLEX}', 'c', 'c');
    insert into partners (id, code, name, scopes)
      values ('${PARTNER}', 'p', 'p', '{events:write}'), ('${P2}', 'p2', 'p2', '{events:write}');
    insert into devices (id, partner_id, external_id, kind, name, complex_id)
      values ('${DEVICE}', '${PARTNER}', 'door-1', 'door', 'd', '${COMPLEX}'),
        ('${D2}', '${P2}', 'door-1', 'door', 'd', '${COMPLEX}');`);
  partner = {
    id: PARTNER,
    code: 'p',
    enabled: true,
    scopes: new Set(['events:write']),
    networks: new CidrSet([]),
    certThumbprints: [],
    signingKeys: new Map(),
    perimeter: new Set([COMPLEX]),
    plateKids: new Set(),
    devices: new Map([
      [
        'door-1',
        {
          id: DEVICE,
          partnerId: PARTNER,
          externalId: 'door-1',
          kind: 'door',
          complexId: COMPLEX,
          buildingId: null,
          entranceId: null,
          enabled: true,
        },
      ],
    ]),
    outbound: { baseUrl: 'https://partner.invalid', tokenEndpoint: 'x', clientId: 'x', serverCa: '' },
    log: undefined,
    witness: undefined,
  };
  directory = new PartnerDirectory([partner]);
});
after(() => db.close());

describe('backfill, retention and batch checks', () => {
  beforeEach(async () => {
    await reset();
    log = new PartnerEventLog({ seed: 4 });
    for (let i = 0; i < 5; i++) log.append({ type: 'device.heartbeat', device: 'door-1' });
    // Seqs 1 and 5 stored: a gap of 2–4.
    const stored = [log.get(1)!, log.get(5)!];
    await storePrepared(db, PARTNER, prepareBatch(directory, partner, stored), 'delivery', new Date(), 30);
    await advanceCursor(db, PARTNER);
  });

  const run = () =>
    backfillPartner(
      {
        db,
        directory: () => directory,
        outbound,
        options: {
          gapGraceMs: 0,
          limit: 500,
          minBackoffMs: 1000,
          maxBackoffMs: 60000,
          leaseMs: 60000,
          retentionDays: 30,
        },
      },
      PARTNER,
      { ignoreSchedule: true },
    );
  const count = async () => (await db.one<{ n: number }>(sql`select count(*)::int as n from event_inbox`))!.n;
  const answerOf = (events: unknown[]) => ({ status: 200, body: JSON.stringify({ events }) });

  test('a valid answer fills the gap; the cursor is clean again', async () => {
    answer = answerOf(log.after(1, 500));
    assert.deepEqual(await run(), { partnerId: PARTNER, outcome: 'filled', stored: 3 });
    assert.equal(await count(), 5);
    const c = await advanceCursor(db, PARTNER);
    assert.deepEqual([Number(c.contiguous), c.backfill_attempts, c.backfill_last_error], [5, 0, null]);
  });

  for (const [name, bad] of [
    ['an unknown field in an event', () => answerOf([{ ...log.get(2)!, extra: 1 }, log.get(3), log.get(4)])],
    [
      'an unknown top-level field',
      () => ({ status: 200, body: JSON.stringify({ events: log.after(1, 3), more: 1 }) }),
    ],
    ['events out of seq order', () => answerOf([log.get(3), log.get(2), log.get(4)])],
    ['events at or before afterSeq', () => answerOf([log.get(1), log.get(2)])],
    ['not JSON', () => ({ status: 200, body: 'events: 2,3,4' })],
    ['a 500', () => ({ status: 500, body: '{}' })],
    [
      'an event with other content than stored',
      () =>
        answerOf([
          log.get(2),
          log.get(3),
          log.get(4),
          { ...log.get(5)!, device: 'door-1', status: 'online' },
        ]),
    ],
    ['a device that is not the partner’s', () => answerOf([{ ...log.get(2)!, device: 'door-9' }])],
    ['nothing after afterSeq', () => answerOf([])],
  ] as const) {
    test(`${name}: refused, nothing stored, the attempt recorded with its error and a later retry`, async () => {
      answer = bad();
      const r = await run();
      assert.equal(r?.outcome, 'failed');
      assert.ok(r?.error);
      assert.equal(await count(), 2);
      const c = await db.one<{ backfill_attempts: number; backfill_last_error: string; later: boolean }>(
        sql`select backfill_attempts, backfill_last_error, backfill_next_at > clock_timestamp() as later
            from event_cursors`,
      );
      assert.deepEqual([c?.backfill_attempts, c?.backfill_last_error, c?.later], [1, r?.error, true]);
      // The error names what was wrong, never a value the partner sent.
      assert.ok(!c!.backfill_last_error.includes(log.get(2)!.eventId));
    });
  }

  test('an answer that stops short of the gap stores what it has and records the rest as partial', async () => {
    answer = answerOf([log.get(2)]);
    // The first page fills seq 2; the next request gets the same answer (not after seq 2): refused.
    const r = await run();
    assert.equal(r?.outcome, 'partial');
    assert.equal(r?.stored, 1);
    const c = await advanceCursor(db, PARTNER);
    assert.deepEqual([Number(c.contiguous), c.backfill_attempts], [2, 1]);
  });

  test('backoff doubles from the minimum up to the maximum, jittered within its upper half', () => {
    const mid = () => 0.5;
    assert.equal(backoffMs(1, 1000, 60000, mid), 1000, 'never below the minimum');
    assert.equal(backoffMs(2, 1000, 60000, mid), 1500);
    assert.equal(backoffMs(10, 1000, 60000, mid), 45000);
    assert.equal(
      backoffMs(100, 1000, 60000, () => 0.999999),
      60000,
    );
    assert.equal(
      backoffMs(1, 1000, 60000, () => 0),
      1000,
    );
  });

  test('batch checks: a repeat with the same content counts once; other content or a shared seq conflicts', () => {
    const e = log.get(2)!;
    assert.equal(
      prepareBatch(directory, partner, [e, e, { ...e, eventId: e.eventId.toUpperCase() }]).length,
      1,
    );
    assert.throws(
      () => prepareBatch(directory, partner, [e, { ...e, status: 'online' }]),
      EventConflictError,
    );
    assert.throws(
      () => prepareBatch(directory, partner, [e, { ...log.get(3)!, seq: e.seq }]),
      EventConflictError,
    );
    assert.equal(
      eventHash(e),
      eventHash({ ...e, eventId: e.eventId.toUpperCase() }),
      'the id’s spelling is not content',
    );
    assert.notEqual(eventHash(e), eventHash({ ...e, occurredAt: e.occurredAt.replace('Z', '+00:00') }));
  });

  test('the content hash is SHA-256 over the RFC 8785 form of the event, written without the generic canonicaliser', () => {
    const samples: PartnerEvent[] = [
      log.get(1)!,
      { ...log.get(2)!, device: 'Дверь "7" \\ \u0001 😀 €', subject: null, method: null, status: 'reboot' },
      { ...log.get(3)!, seq: Number.MAX_SAFE_INTEGER, eventId: log.get(3)!.eventId.toUpperCase() },
    ];
    for (const e of samples) {
      const canonical = canonicalJson({ ...e, eventId: e.eventId.toLowerCase() });
      assert.equal(eventHash(e), createHash('sha256').update(canonical).digest('hex'));
    }
    // A lone surrogate has no canonical form; a batch holding one is a client error (4xx), never a 500.
    const lone = { ...log.get(4)!, device: 'door-\ud800' };
    assert.throws(() => eventHash(lone), TypeError);
    assert.throws(
      () => prepareBatch(directory, partner, [lone]),
      (err: unknown) => err instanceof AppError,
    );
  });

  test('occurredAt must be a real calendar time', () => {
    assert.equal(parseOccurredAt('2026-12-02T07:00:00.123456789+03:00'), Date.UTC(2026, 11, 2, 4, 0, 0, 123));
    assert.equal(parseOccurredAt('2024-02-29T23:59:59Z'), Date.UTC(2024, 1, 29, 23, 59, 59), 'a leap day');
    assert.equal(parseOccurredAt('2000-02-29T00:00:00Z'), Date.UTC(2000, 1, 29), '400 years: leap');
    for (const bad of [
      '2026-02-30T10:00:00Z',
      '2026-02-29T10:00:00Z',
      '1900-02-29T10:00:00Z',
      '2026-04-31T10:00:00Z',
      '2026-00-10T10:00:00Z',
      '2026-01-00T10:00:00Z',
      '2026-13-01T10:00:00Z',
      '2026-01-01T24:00:00Z',
      '2026-01-01T10:60:00Z',
      '2026-01-01T10:00:60Z',
      '2026-01-01T10:00:00+24:00',
      '2026-01-01T10:0a:00Z',
      '2026-01-01 10:00:00Z',
      'not a time',
    ]) {
      assert.ok(Number.isNaN(parseOccurredAt(bad)), bad);
    }
  });

  test('a foreign device is not-found for the batch', () => {
    const e = { ...log.get(2)!, device: 'door-9' } as PartnerEvent;
    assert.throws(() => prepareBatch(directory, partner, [log.get(3)!, e]), { code: 'not-found' });
  });

  test('retention: processed events below the contiguous mark are deleted; a retry of one is a duplicate, not new', async () => {
    await reset();
    const DAY = 86_400_000;
    // Events that happened 40 days ago (their UUIDv7 ids carry that time), received then.
    const old = new PartnerEventLog({ seed: 12, now: () => Date.now() - 40 * DAY });
    const events = Array.from({ length: 5 }, () =>
      old.append({ type: 'device.heartbeat', device: 'door-1' }),
    );
    const store = (e: PartnerEvent[]) =>
      storePrepared(db, PARTNER, prepareBatch(directory, partner, e), 'delivery', new Date(), 30);
    assert.deepEqual(await store(events), { accepted: 5, duplicates: 0 });
    await db.exec(
      `update event_inbox set processed_at = now(), received_at = now() - interval '40 days' where seq <> 4`,
    );
    assert.equal(Number((await advanceCursor(db, PARTNER)).contiguous), 5);
    assert.equal(await purgeInbox(db, 30), 4, 'seqs 1–3 and 5; seq 4 is not processed yet');
    assert.equal(await purgeInbox(db, 30), 0);
    assert.equal(await purgeInbox(db, 0), 0, '0 keeps everything');
    const left = await db.query<{ seq: number }>(sql`select seq from event_inbox order by seq`);
    assert.deepEqual(
      left.map((r) => Number(r.seq)),
      [4],
    );
    // A late retry of deleted events, and of the one kept: duplicates; a new event after them: stored.
    const next = old.append({ type: 'device.heartbeat', device: 'door-1' });
    assert.deepEqual(await store([events[0]!, events[3]!, events[4]!, next]), { accepted: 1, duplicates: 3 });
    assert.deepEqual(await store([events[1]!]), { accepted: 0, duplicates: 1 }, 'one event alone too');
    const writer = new SingleEventWriter(db, { maxGroup: 10, inFlight: 1, retentionDays: 30 });
    const prepared = (e: PartnerEvent) => prepareBatch(directory, partner, [e])[0]!;
    assert.deepEqual(await writer.store(PARTNER, prepared(events[2]!)), { accepted: 0, duplicates: 1 });
    // A NEW event (its id minted now) at a deleted seq — a partner that restarted its sequence — is a
    // conflict, not silently a duplicate; so is a stored event's seq under another id.
    const restarted = {
      ...new PartnerEventLog({ seed: 13 }).append({ type: 'device.heartbeat', device: 'door-1' }),
    };
    assert.equal(restarted.seq, 1);
    await assert.rejects(store([restarted]), EventConflictError);
    await assert.rejects(writer.store(PARTNER, prepared(restarted)), EventConflictError);
    await assert.rejects(store([{ ...restarted, seq: 4 }]), EventConflictError);
    assert.equal((await db.one<{ n: number }>(sql`select count(*)::int as n from event_inbox`))?.n, 2);
    // Batches of several take one plain INSERT first; an event below the mark sends them down the careful
    // path: a deleted event's retry beside a new one is a duplicate and the new one is stored; a new
    // event at a deleted seq refuses the whole batch, the new event with it.
    const later = old.append({ type: 'device.heartbeat', device: 'door-1' });
    assert.deepEqual(await store([events[1]!, later]), { accepted: 1, duplicates: 1 });
    const after = old.append({ type: 'device.heartbeat', device: 'door-1' });
    await assert.rejects(store([restarted, after]), EventConflictError);
    assert.equal(
      (await db.one(sql`select 1 from event_inbox where event_id = ${after.eventId}::uuid`)) ?? null,
      null,
      'nothing of the refused batch is stored',
    );
    assert.deepEqual(await store([after]), { accepted: 1, duplicates: 0 });
  });
});

describe('the processor under a failing batch', () => {
  before(reset);

  /** Device health as a stand-in: refuses the event `poison` while it is set, records the rest. */
  const applied: string[] = [];
  let poison: string | undefined;
  const sink: DeviceEventSink = {
    async apply(_tx: Queryable, events: readonly StoredEvent[]) {
      if (events.some((e) => e.eventId === poison)) throw new Error('this event cannot be applied');
      applied.push(...events.map((e) => e.eventId));
    },
  };

  test('an event that cannot be processed is set aside; the others are processed once; it is retried later', async () => {
    const events = new EventService({
      db,
      // No subject in these events: the pseudonym resolver never needs the cipher.
      cipher: {} as FieldCipher,
      directory: () => directory,
      sink,
      logger: createLogger({ level: 'silent' }),
      options: {
        processorBatch: 4,
        processorIntervalMs: 1000,
        processorBusyPauseMs: 200,
        staleAfterSeconds: 300,
        pseudonymRefreshSeconds: 30,
        gapGraceMs: 10_000,
        backfillLimit: 500,
        backfillMinBackoffMs: 1000,
        backfillMaxBackoffMs: 60_000,
        backfillLeaseMs: 60_000,
        retentionDays: 30,
        failedRetryMs: 200,
        singleGroupMax: 500,
        singleGroupsInFlight: 2,
        purgeEveryMs: 3_600_000,
      },
    });
    const log = new PartnerEventLog({ seed: 8 });
    const sent = Array.from({ length: 10 }, () =>
      log.append({ type: 'device.status', device: 'door-1', status: 'online' }),
    );
    assert.deepEqual(await events.deliver(partner, sent), { accepted: 10, duplicates: 0 });
    poison = sent[5]!.eventId;

    assert.equal(await events.processAll(), 9);
    assert.deepEqual(
      [...applied].sort(),
      sent
        .filter((e) => e.eventId !== poison)
        .map((e) => e.eventId)
        .sort(),
    );
    const waiting = await db.query<{ id: string }>(
      sql`select event_id::text as id from event_inbox where processed_at is null`,
    );
    assert.deepEqual(
      waiting.map((r) => r.id),
      [poison],
    );
    const journaled = await db.one<{ n: number }>(
      sql`select count(*)::int as n from journal where action = 'event.device.status'`,
    );
    assert.equal(journaled?.n, 9, 'the rolled-back batch left no entry behind');
    assert.equal(await events.processAll(), 0, 'set aside: not claimed again at once');

    poison = undefined;
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(await events.processAll(), 1, 'tried again after SMART_HOME_EVENTS_FAILED_RETRY_MS');
    assert.equal(applied.length, 10);
    assert.equal(new Set(applied).size, 10, 'each applied exactly once');
    const c = await events.advance(PARTNER);
    assert.equal(Number(c.contiguous), 10);
  });
});

describe('single-event deliveries grouped', () => {
  before(reset);

  const prep = (event: PartnerEvent, deviceId: string): PreparedEvent => ({
    event,
    eventId: event.eventId.toLowerCase(),
    deviceId,
    hash: eventHash(event),
  });
  const outcome = (p: Promise<StoreResult>) =>
    p.then(
      (r) => (r.accepted ? 'new' : 'duplicate'),
      (err: Error & { code?: string }) => err.code ?? err.message,
    );

  test('a group answers each request as if it were alone', async () => {
    // One statement at a time: everything stored below while the first runs is one group.
    const writer = new SingleEventWriter(db, { maxGroup: 100, inFlight: 1, retentionDays: 30 });
    const l1 = new PartnerEventLog({ seed: 1 });
    const l2 = new PartnerEventLog({ seed: 2 });
    const a = Array.from({ length: 6 }, () => l1.append({ type: 'device.heartbeat', device: 'door-1' }));
    const b = Array.from({ length: 3 }, () => l2.append({ type: 'device.heartbeat', device: 'door-1' }));
    const first = await Promise.all([
      outcome(writer.store(PARTNER, prep(a[0]!, DEVICE))),
      outcome(writer.store(PARTNER, prep(a[1]!, DEVICE))),
      outcome(writer.store(PARTNER, prep(a[1]!, DEVICE))), // a copy in the same group
      outcome(writer.store(PARTNER, prep({ ...a[2]!, status: 'online' }, DEVICE))), // a's seq 3 under its id, other content…
      outcome(writer.store(PARTNER, prep(a[2]!, DEVICE))), // …and the real one right after it
      outcome(writer.store(P2, prep(b[0]!, D2))), // another partner, same seq 1: no clash
      outcome(writer.store(PARTNER, prep({ ...a[3]!, seq: 1 }, DEVICE))), // seq 1 of PARTNER is a[0]'s
    ]);
    assert.deepEqual(first, ['new', 'new', 'duplicate', 'new', 'event-conflict', 'new', 'event-conflict']);
    const second = await Promise.all([
      outcome(writer.store(PARTNER, prep(a[0]!, DEVICE))),
      outcome(writer.store(PARTNER, prep(a[4]!, DEVICE))),
      outcome(writer.store(P2, prep(b[0]!, D2))),
      outcome(writer.store(P2, prep({ ...b[0]!, method: 'face' }, D2))),
    ]);
    assert.deepEqual(second, ['duplicate', 'new', 'duplicate', 'event-conflict']);
    const rows = await db.query<{ partner_id: string; seq: number }>(
      sql`select partner_id::text as partner_id, seq from event_inbox order by partner_id, seq`,
    );
    assert.deepEqual(
      rows.map((r) => `${r.partner_id === PARTNER ? 'p1' : 'p2'}:${r.seq}`),
      ['p1:1', 'p1:2', 'p1:3', 'p1:5', 'p2:1'],
    );
    const variant = await db.one<{ status: string | null }>(
      sql`select status from event_inbox where event_id = ${a[2]!.eventId}::uuid`,
    );
    assert.equal(variant?.status, 'online', 'the first of two contents for one eventId is the one kept');
  });
});
