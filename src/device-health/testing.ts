// Test support only (imported by *.test.ts): a partner with devices written straight into the registry
// tables, and StoredEvent fixtures as the event processor hands them to the sink.
import { randomUUID } from 'node:crypto';
import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import type { StoredEvent } from '../events/model.ts';
import { uuidv7 } from '../util/uuid.ts';

export interface Fixture {
  partnerId: string;
  complexId: string;
  devices: string[];
}

/** A complex, a door partner (heartbeat settings as given) and `n` doors. */
export async function seedDevices(
  db: Queryable,
  n: number,
  heartbeat: { intervalS?: number; missed?: number } = {},
): Promise<Fixture> {
  const complexId = randomUUID();
  const partnerId = randomUUID();
  const code = `p-${complexId.slice(0, 8)}`;
  await db.query(sql`insert into complexes (id, code, name) values (${complexId}, ${code}, 'Complex')`);
  await db.query(sql`insert into partners (id, code, name, scopes, heartbeat_interval_s, heartbeat_missed)
    values (${partnerId}, ${code}, 'Partner', ${['events:write']}, ${heartbeat.intervalS ?? 30}, ${heartbeat.missed ?? 3})`);
  const devices: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = randomUUID();
    await db.query(sql`insert into devices (id, partner_id, external_id, kind, name, complex_id)
      values (${id}, ${partnerId}, ${`door-${i}`}, 'door', ${`Door ${i}`}, ${complexId})`);
    devices.push(id);
  }
  return { partnerId, complexId, devices };
}

let seq = 0;

/** One processed event; `occurredAt` defaults to `receivedAt` (no skew), `receivedAt` to now. */
export function storedEvent(
  f: Fixture,
  device: number,
  e: Partial<StoredEvent> & Pick<StoredEvent, 'type'>,
): StoredEvent {
  const receivedAt = e.receivedAt ?? new Date();
  const occurredAt = e.occurredAt ?? receivedAt;
  return {
    partnerId: f.partnerId,
    eventId: uuidv7(occurredAt.getTime()),
    seq: ++seq,
    deviceId: f.devices[device]!,
    deviceExternalId: `door-${device}`,
    method: null,
    subject: null,
    residentId: null,
    status: null,
    stale: false,
    ...e,
    occurredAt,
    receivedAt,
    skewMs: receivedAt.getTime() - occurredAt.getTime(),
  };
}
