/**
 * Shared by the fault and load tests (issue 5): the scale (short in CI, long from `npm run test:faults`),
 * the provisioning of event-sending partners, counting what smart-home stored (inbox rows and journal
 * entries per eventId, straight from the database), and writing the long run's figures into
 * docs/reliability.md between markers.
 */
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import type { PartnerIdentity } from '../../simulator/identity.ts';
import type { IntercomSimulator } from '../../simulator/intercom.ts';
import { intercomPartnerEntry } from '../../simulator/intercom.ts';
import type { Db } from '../../src/db/db.ts';
import { sql } from '../../src/db/sql.ts';
import type { PartnerEvent } from '../../src/events/model.ts';
import type { ProvisioningDocument } from '../../src/registry/document.ts';

/** `FAULTS_SCALE=long` (npm run test:faults): the figures; otherwise a short form for CI. */
export const LONG = process.env['FAULTS_SCALE'] === 'long';
export const scale = <T>(short: T, long: T): T => (LONG ? long : short);

export interface EventPartner {
  code: string;
  devices: string[];
  /** Its server (backfill, contract §9): without one smart-home cannot ask for gaps. */
  sim?: IntercomSimulator;
  networks?: string[];
}

/** One complex; each partner sends events (scope events:write) about its own doors. */
export function eventsWorld(
  ids: Map<string, PartnerIdentity>,
  partners: EventPartner[],
): ProvisioningDocument {
  return {
    version: 1,
    complexes: [
      {
        code: 'north',
        name: 'North',
        buildings: [{ code: 'b1', name: 'B1', entrances: [{ code: 'e1', name: 'E1', apartments: ['1'] }] }],
      },
    ],
    partners: partners.map((p) => {
      const id = ids.get(p.code)!;
      const networks = p.networks ?? ['127.0.0.1/32'];
      if (p.sim) return intercomPartnerEntry(p.sim, id, { complexes: ['north'], networks });
      return {
        code: p.code,
        name: `Vendor ${p.code}`,
        scopes: ['events:write' as const],
        complexes: ['north'],
        networks,
        certificates: [id.thumbprint],
        signingKeys: [id.signing.publicJwk as never],
        encryptionKeys: [id.encryption.publicJwk as never],
      };
    }),
    devices: partners.flatMap((p) =>
      p.devices.map((externalId) => ({
        partner: p.code,
        externalId,
        kind: 'door' as const,
        name: `Door ${externalId}`,
        complex: 'north',
        building: 'b1',
        entrance: 'e1',
      })),
    ),
  };
}

export interface StoredCounts {
  /** Rows in the inbox for the partner. */
  inbox: number;
  /** Of the events expected, those with no inbox row. */
  lost: number;
  /** Inbox rows not among the events expected (never sent by the partner). */
  unexpected: number;
  unprocessed: number;
  viaBackfill: number;
  /** Distinct eventIds with a journal entry (heartbeats are not journaled one by one). */
  journaled: number;
  /** eventIds with more than one journal entry. */
  doubled: number;
  /** Expected journal entries missing (non-heartbeat events without one). */
  unjournaled: number;
}

const EVENT_ACTIONS = ['event.access.granted', 'event.access.denied', 'event.device.status'];

/** What smart-home holds of `expected` (the partner's log), counted in the database. */
export async function storedCounts(
  db: Db,
  partnerCode: string,
  expected: readonly PartnerEvent[],
): Promise<StoredCounts> {
  const partner = (await db.one<{ id: string }>(sql`select id from partners where code = ${partnerCode}`))!
    .id;
  const rows = await db.query<{ event_id: string; processed: boolean; via: string }>(
    sql`select event_id::text, processed_at is not null as processed, via from event_inbox
        where partner_id = ${partner}::uuid`,
  );
  const journal = await db.query<{ event_id: string; n: string }>(
    sql`select details->>'eventId' as event_id, count(*)::text as n from journal
        where partner_id = ${partner}::uuid and action = any(${EVENT_ACTIONS}::text[])
        group by 1`,
  );
  const want = new Set(expected.map((e) => e.eventId.toLowerCase()));
  const have = new Set(rows.map((r) => r.event_id.toLowerCase()));
  const journaled = new Map(journal.map((j) => [j.event_id.toLowerCase(), Number(j.n)]));
  return {
    inbox: rows.length,
    lost: [...want].filter((id) => !have.has(id)).length,
    unexpected: [...have].filter((id) => !want.has(id)).length,
    unprocessed: rows.filter((r) => !r.processed).length,
    viaBackfill: rows.filter((r) => r.via === 'backfill').length,
    journaled: journaled.size,
    doubled: [...journaled.values()].filter((n) => n > 1).length,
    unjournaled: expected.filter(
      (e) => e.type !== 'device.heartbeat' && !journaled.has(e.eventId.toLowerCase()),
    ).length,
  };
}

/** Polls `check` until it returns a truthy value (returned), or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = scale(30_000, 600_000),
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Waits until every event of the partner in the inbox is processed (journaled, handed to health). */
export async function drained(db: Db, partnerCode: string, expected: readonly PartnerEvent[]) {
  return waitFor(`${partnerCode}'s events processed`, async () => {
    const c = await storedCounts(db, partnerCode, expected);
    return c.unprocessed === 0 && c.lost === 0 ? c : undefined;
  });
}

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, Node ${process.version}`;
}

export const engineLabel = (): string =>
  process.env['DATABASE_URL']
    ? `PostgreSQL${process.env['REDIS_URL'] ? ' + Redis' : ''}`
    : 'PGlite (embedded)';

const DOC = new URL('../../docs/reliability.md', import.meta.url);

/**
 * The long run writes its figures into docs/reliability.md, between `<!-- name:start -->` and
 * `<!-- name:end -->` (the CI's short form leaves the document alone).
 */
export async function recordFigures(name: string, body: string): Promise<void> {
  if (!LONG) return;
  let doc = await readFile(DOC, 'utf8').catch(() => '# Reliability\n');
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${start}\n${body.trim()}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  doc =
    i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`;
  await writeFile(DOC, doc);
}

export const stamp = () =>
  `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${engineLabel()}, ${machine()}.`;
