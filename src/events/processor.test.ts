/**
 * The processor under a failing batch, on the real embedded database: the batch rolls back whole, the
 * events are retried one at a time, the one that fails alone is set aside (unprocessed, counted, tried
 * again after SMART_HOME_EVENTS_FAILED_RETRY_MS), and every other event is journaled and applied once.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PartnerEventLog } from '../../simulator/events.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db, Queryable } from '../db/db.ts';
import { migrate } from '../db/migrate.ts';
import { openPgliteDb } from '../db/pglite-db.ts';
import { sql } from '../db/sql.ts';
import { createLogger } from '../logger.ts';
import { PartnerDirectory, type PartnerInfo } from '../partners/partner-directory.ts';
import { CidrSet } from '../util/cidr.ts';
import type { DeviceEventSink, StoredEvent } from './model.ts';
import { EventService } from './service.ts';

const PARTNER = '00000000-0000-7000-8000-00000000001a';
const DEVICE = '00000000-0000-7000-8000-00000000001b';
const COMPLEX = '00000000-0000-7000-8000-00000000001c';
let db: Db;
let partner: PartnerInfo;
let directory: PartnerDirectory;

/** Device health as a stand-in: refuses the event `poison` while it is set, records the rest. */
const applied: string[] = [];
let poison: string | undefined;
const sink: DeviceEventSink = {
  async apply(_tx: Queryable, events: readonly StoredEvent[]) {
    if (events.some((e) => e.eventId === poison)) throw new Error('this event cannot be applied');
    applied.push(...events.map((e) => e.eventId));
  },
};

before(async () => {
  db = await openPgliteDb();
  await migrate(db);
  await db.exec(`insert into complexes (id, code, name) values ('${COMPLEX}', 'c', 'c');
    insert into partners (id, code, name, scopes) values ('${PARTNER}', 'p', 'p', '{events:write}');
    insert into devices (id, partner_id, external_id, kind, name, complex_id)
      values ('${DEVICE}', '${PARTNER}', 'door-1', 'door', 'd', '${COMPLEX}');`);
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
    outbound: undefined,
    log: undefined,
    witness: undefined,
  };
  directory = new PartnerDirectory([partner]);
});
after(() => db.close());

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
