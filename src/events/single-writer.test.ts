/**
 * Single-event deliveries grouped into shared INSERTs, on the real embedded database: each request is
 * answered as if it had been alone — new, duplicate (of the stored row or of a copy in the same group),
 * or conflict (other content, a seq taken) — and a refused one leaves nothing stored.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PartnerEventLog } from '../../simulator/events.ts';
import type { Db } from '../db/db.ts';
import { migrate } from '../db/migrate.ts';
import { openPgliteDb } from '../db/pglite-db.ts';
import { sql } from '../db/sql.ts';
import type { PartnerEvent } from './model.ts';
import { SingleEventWriter } from './single-writer.ts';
import { eventHash, type PreparedEvent, type StoreResult } from './store.ts';

const P1 = '00000000-0000-7000-8000-00000000002a';
const P2 = '00000000-0000-7000-8000-00000000002b';
const D1 = '00000000-0000-7000-8000-00000000002c';
const D2 = '00000000-0000-7000-8000-00000000002d';
const COMPLEX = '00000000-0000-7000-8000-00000000002e';
let db: Db;

before(async () => {
  db = await openPgliteDb();
  await migrate(db);
  await db.exec(`insert into complexes (id, code, name) values ('${COMPLEX}', 'c', 'c');
    insert into partners (id, code, name, scopes) values ('${P1}', 'p1', 'p1', '{events:write}'), ('${P2}', 'p2', 'p2', '{events:write}');
    insert into devices (id, partner_id, external_id, kind, name, complex_id)
      values ('${D1}', '${P1}', 'door-1', 'door', 'd', '${COMPLEX}'), ('${D2}', '${P2}', 'door-1', 'door', 'd', '${COMPLEX}');`);
});
after(() => db.close());

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
  const writer = new SingleEventWriter(db, { maxGroup: 100, inFlight: 1 });
  const l1 = new PartnerEventLog({ seed: 1 });
  const l2 = new PartnerEventLog({ seed: 2 });
  const a = Array.from({ length: 6 }, () => l1.append({ type: 'device.heartbeat', device: 'door-1' }));
  const b = Array.from({ length: 3 }, () => l2.append({ type: 'device.heartbeat', device: 'door-1' }));
  const first = await Promise.all([
    outcome(writer.store(P1, prep(a[0]!, D1))),
    outcome(writer.store(P1, prep(a[1]!, D1))),
    outcome(writer.store(P1, prep(a[1]!, D1))), // a copy in the same group
    outcome(writer.store(P1, prep({ ...a[2]!, status: 'online' }, D1))), // a's seq 3 under its id, other content…
    outcome(writer.store(P1, prep(a[2]!, D1))), // …and the real one right after it
    outcome(writer.store(P2, prep(b[0]!, D2))), // another partner, same seq 1: no clash
    outcome(writer.store(P1, prep({ ...a[3]!, seq: 1 }, D1))), // seq 1 of P1 is a[0]'s
  ]);
  assert.deepEqual(first, ['new', 'new', 'duplicate', 'new', 'event-conflict', 'new', 'event-conflict']);
  const second = await Promise.all([
    outcome(writer.store(P1, prep(a[0]!, D1))),
    outcome(writer.store(P1, prep(a[4]!, D1))),
    outcome(writer.store(P2, prep(b[0]!, D2))),
    outcome(writer.store(P2, prep({ ...b[0]!, method: 'face' }, D2))),
  ]);
  assert.deepEqual(second, ['duplicate', 'new', 'duplicate', 'event-conflict']);
  const rows = await db.query<{ partner_id: string; seq: number }>(
    sql`select partner_id::text as partner_id, seq from event_inbox order by partner_id, seq`,
  );
  assert.deepEqual(
    rows.map((r) => `${r.partner_id === P1 ? 'p1' : 'p2'}:${r.seq}`),
    ['p1:1', 'p1:2', 'p1:3', 'p1:5', 'p2:1'],
  );
  const variant = await db.one<{ status: string | null }>(
    sql`select status from event_inbox where event_id = ${a[2]!.eventId}::uuid`,
  );
  assert.equal(variant?.status, 'online', 'the first of two contents for one eventId is the one kept');
});
