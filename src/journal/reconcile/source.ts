/**
 * smart-home's side of contract §8.3: the projections of a partner's access actions, read from the
 * journal rows that the signed Merkle log holds (so a reconciliation is pinned to a checkpoint).
 *
 *   barrier.decision  → {eventId: details.eventId, action: 'barrier.decision', device: the partner's
 *                        device id, subject: null, result: 'open' | 'deny', initiator: 'partner'}
 *   door.open.result  → {eventId: details.commandId, action: 'door.open', device, subject: the
 *                        resident's pseudonym for that partner, result: the status, initiator: 'smart-home'}
 *
 * The barrier partner knows no resident (it reads plates), so its subject is null. A door command's
 * subject is the pseudonym under the partner's current pseudonym key (what {@link Outbound.subject}
 * sends); after a key rotation, commands sent under the old key show as `content_mismatch` on
 * `subject` — the report says so rather than hiding it.
 */

import type { FieldCipher } from '../../crypto/field-cipher.ts';
import { pseudonym } from '../../crypto/partner-keys.ts';
import type { Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import {
  elementHex,
  type Projection,
  type ProjectionRecord,
  projectionElement,
} from '../../reconcile/projection.ts';
import { loadPartnerKeys } from '../../registry/partner-secrets.ts';
import { isUuidV7 } from '../../util/uuid.ts';

/** The journal actions that project (contract §8.3). */
export const PROJECTED_ACTIONS = ['barrier.decision', 'door.open.result'] as const;

export interface JournalProjection {
  projection: Projection;
  /** SHA-256(JCS(projection)) (contract §8.3). */
  element: Buffer;
  /** The eventId's time, ms (contract §8.3). */
  time: number;
  /** When smart-home recorded it (`journal.at`), ms. */
  at: number;
  /** Its leaf in the Merkle log. */
  leaf: number;
}

type Row = {
  leaf: string;
  action: string;
  result: string;
  subject_id: string | null;
  /** A Date, or Unix ms as our own statements select it. */
  at: Date | number;
  event_id: string | null;
  device: string | null;
};

/** Turns journal rows into projections; rows that cannot project (no eventId, no device) are skipped. */
export class Projector {
  readonly #db: Queryable;
  readonly #cipher: FieldCipher;
  readonly #partnerId: string;
  #key: Promise<Buffer | undefined> | undefined;
  readonly #pseudonyms = new Map<string, string>();

  constructor(db: Queryable, cipher: FieldCipher, partnerId: string) {
    this.#db = db;
    this.#cipher = cipher;
    this.#partnerId = partnerId;
  }

  #pseudonymKey(): Promise<Buffer | undefined> {
    this.#key ??= loadPartnerKeys(this.#db, this.#cipher, this.#partnerId).then((versions) => {
      const current = versions.find((v) => !v.retired);
      for (const v of versions) {
        v.plateKey.fill(0);
        if (v !== current) v.pseudonymKey.fill(0);
      }
      return current?.pseudonymKey;
    });
    return this.#key;
  }

  async #subject(residentId: string | null): Promise<string | null> {
    if (residentId === null) return null;
    const known = this.#pseudonyms.get(residentId);
    if (known !== undefined) return known;
    const key = await this.#pseudonymKey();
    if (!key) return null;
    const p = pseudonym(key, residentId);
    this.#pseudonyms.set(residentId, p);
    return p;
  }

  async project(rows: readonly Row[]): Promise<JournalProjection[]> {
    const out: JournalProjection[] = [];
    for (const r of rows) {
      if (!r.event_id || !isUuidV7(r.event_id) || !r.device) continue;
      const door = r.action === 'door.open.result';
      const eventId = r.event_id.toLowerCase();
      const projection: Projection = {
        eventId,
        action: door ? 'door.open' : 'barrier.decision',
        device: r.device,
        subject: door ? await this.#subject(r.subject_id) : null,
        result: r.result,
        initiator: door ? 'smart-home' : 'partner',
      };
      const element = elementOf(projection);
      if (!element) continue;
      out.push({
        projection,
        element,
        // The UUIDv7's first 48 bits (contract §8.3), from the shape isUuidV7 just checked.
        time: Number.parseInt(eventId.slice(0, 8) + eventId.slice(9, 13), 16),
        at: typeof r.at === 'number' ? r.at : new Date(r.at).getTime(),
        leaf: Number(r.leaf),
      });
    }
    return out;
  }

  /** Clears the pseudonym key held (call when done). */
  async dispose(): Promise<void> {
    const key = await this.#key?.catch(() => undefined);
    key?.fill(0);
    this.#pseudonyms.clear();
  }
}

/** The `POST …/journal/projections` answer record (and export line) of a projection. */
export function projectionRecord(it: JournalProjection): ProjectionRecord {
  return {
    element: elementHex(it.element),
    time: it.time,
    projection: it.projection,
    at: new Date(it.at).toISOString(),
  };
}

/** The projection's element, or undefined for a string RFC 8785 refuses (a lone surrogate): that row cannot project. */
export function elementOf(p: Projection): Buffer | undefined {
  try {
    return projectionElement(p);
  } catch {
    return undefined;
  }
}

/** A projectable row's eventId: the commandId for a door, the eventId otherwise. */
const EVENT_ID = sql`case when j.action = 'door.open.result' then j.details->>'commandId' else j.details->>'eventId' end`;

/**
 * The rows {@link Projector.project} reads (journal `j`, its leaf `l`, its device `d`); callers add
 * the `where`.
 */
export const PROJECTOR_ROWS = sql`select l.leaf_index::text as leaf, j.action, j.result, j.subject_id,
    (extract(epoch from j.at) * 1000)::float8 as at, ${EVENT_ID} as event_id, d.external_id as device
  from journal j join journal_leaves l on l.journal_seq = j.seq
  left join devices d on d.id = j.device_id`;

/**
 * The partner's projectable rows recorded (`at`) in [atFrom, atTo) and integrated into the log below
 * leaf `size`.
 */
export async function rowsRecordedIn(
  db: Queryable,
  partnerId: string,
  atFrom: number,
  atTo: number,
  size: number,
): Promise<Row[]> {
  return db.query<Row>(sql`${PROJECTOR_ROWS}
    where j.partner_id = ${partnerId}::uuid and j.action = any(${[...PROJECTED_ACTIONS]}::text[])
      and j.at >= ${new Date(atFrom)} and j.at < ${new Date(atTo)}
      and l.leaf_index < ${String(size)}::bigint`);
}

/** The partner's projectable rows at leaves [fromLeaf, toLeaf) (what a day index is extended with). */
export async function rowsAtLeaves(
  db: Queryable,
  partnerId: string,
  fromLeaf: number,
  toLeaf: number,
): Promise<Row[]> {
  if (toLeaf <= fromLeaf) return [];
  return db.query<Row>(sql`${PROJECTOR_ROWS}
    where l.leaf_index >= ${String(fromLeaf)}::bigint and l.leaf_index < ${String(toLeaf)}::bigint
      and j.partner_id = ${partnerId}::uuid and j.action = any(${[...PROJECTED_ACTIONS]}::text[])`);
}

/**
 * The partner's projectable rows with these eventIds (commandIds for doors), whenever they were
 * recorded: how the initiator tells an entry recorded far outside the window's clock margin from one
 * that is missing. Scans the partner's rows; run only for the few eventIds that look missing.
 */
export async function rowsByEventId(
  db: Queryable,
  partnerId: string,
  eventIds: readonly string[],
  size: number,
): Promise<Row[]> {
  if (eventIds.length === 0) return [];
  return db.query<Row>(sql`${PROJECTOR_ROWS}
    where j.partner_id = ${partnerId}::uuid and j.action = any(${[...PROJECTED_ACTIONS]}::text[])
      and ${EVENT_ID} = any(${[...eventIds]}::text[])
      and l.leaf_index < ${String(size)}::bigint`);
}
