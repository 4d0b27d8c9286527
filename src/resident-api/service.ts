import { randomUUID } from 'node:crypto';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import { PlateError, type RussianPlateFormat, validateRussianPlate } from '../crypto/plate.ts';
import { type CheckedPlate, checkRussianPlate, displayPlate } from '../crypto/plate-format.ts';
import type { Db, Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { AppError } from '../errors.ts';
import { appendJournal, type JournalEntry } from '../journal/journal.ts';
import {
  barrierPartnerKeys,
  PURPOSE_PLATES,
  passPlateAad,
  vehiclePlateAad,
  writePlateTokens,
} from '../registry/plate-tokens.ts';
import { nameAad, phoneAad } from '../registry/service/residents.ts';
import {
  DOOR_OUTCOMES,
  DoorNotCommandable,
  type DoorOpener,
  type DoorOutcome,
  type DoorSendResult,
  type PreparedDoorCommand,
} from './door-opener.ts';

/**
 * The resident API's service: every function takes the caller's residentId (from the verified
 * token, never from the request) and touches only that resident's objects. An object of another
 * resident and one that does not exist are the same answer, 404, so ids cannot be probed (BOLA).
 */
export interface ResidentServiceDeps {
  db: Db;
  cipher: FieldCipher;
  /** The outbound channel's doors: `outboundDoorOpener(outbound)`. */
  doors: DoorOpener;
  /** Longest guest-pass window a resident may issue. */
  guestPassMaxDays: number;
  now?: () => Date;
}

const DAY_MS = 86_400_000;

export interface AccessPoint {
  id: string;
  kind: 'door' | 'barrier';
  name: string;
  enabled: boolean;
}

interface DeviceRow {
  id: string;
  kind: 'door' | 'barrier';
  name: string;
  enabled: boolean;
  partner_id: string;
  external_id: string;
}

/**
 * The devices a resident may use: those whose scope (complex, building or entrance) covers one of the
 * resident's apartments — the rule of the barrier decision (src/barrier/decision-service.ts).
 * A device of a disabled partner counts as disabled.
 */
function usableDevices(residentId: string, only?: string) {
  return sql`select d.id, d.kind, d.name, (d.enabled and p.enabled) as enabled, d.partner_id, d.external_id
    from devices d join partners p on p.id = d.partner_id
    where exists (select 1 from resident_apartments ra
        join apartments a on a.id = ra.apartment_id
        join entrances e on e.id = a.entrance_id
        join buildings b on b.id = e.building_id
        where ra.resident_id = ${residentId} and b.complex_id = d.complex_id
          and (d.building_id is null or b.id = d.building_id)
          and (d.entrance_id is null or e.id = d.entrance_id))
      ${only === undefined ? sql`` : sql`and d.id = ${only}`}
    order by d.kind desc, d.name, d.id`;
}

const publicAccessPoint = (d: DeviceRow): AccessPoint => ({
  id: d.id,
  kind: d.kind,
  name: d.name,
  enabled: d.enabled,
});

function journal(tx: Queryable, residentId: string, requestId: string, e: Omit<JournalEntry, 'actorType'>) {
  return appendJournal(tx, { actorType: 'resident', actorId: residentId, requestId, ...e });
}

function plateOrThrow(input: string, field: string): CheckedPlate {
  try {
    return checkRussianPlate(input);
  } catch (err) {
    if (err instanceof PlateError) throw new AppError('invalid-plate', `${field}: ${err.message}`);
    throw err;
  }
}

export function createResidentService(deps: ResidentServiceDeps) {
  const { db, cipher } = deps;
  const now = deps.now ?? (() => new Date());

  async function accessPoint(q: Queryable, residentId: string, id: string): Promise<DeviceRow | undefined> {
    // Prepared once per connection: it runs on every door open, and its plan is the same each time.
    return q.one<DeviceRow & Record<string, unknown>>(
      usableDevices(residentId, id).named('resident_access_point'),
    );
  }

  // ---- me ----------------------------------------------------------------------------------------

  async function profile(q: Queryable, residentId: string) {
    const r = await q.one<{ full_name_enc: string; phone_enc: string }>(
      sql`select full_name_enc, phone_enc from residents where id = ${residentId}`,
    );
    // The token check looks the resident up on every request; a resident removed since is gone.
    if (!r) throw new AppError('not-found');
    const apartments = await q.query<{
      id: string;
      number: string;
      entrance_id: string;
      entrance_name: string;
      building_id: string;
      building_name: string;
      complex_id: string;
      complex_name: string;
    }>(sql`select a.id, a.number, e.id as entrance_id, e.name as entrance_name, b.id as building_id,
        b.name as building_name, c.id as complex_id, c.name as complex_name
      from resident_apartments ra join apartments a on a.id = ra.apartment_id
        join entrances e on e.id = a.entrance_id join buildings b on b.id = e.building_id
        join complexes c on c.id = b.complex_id
      where ra.resident_id = ${residentId} order by c.name, b.name, e.name, a.number`);
    return {
      id: residentId,
      fullName: cipher.decrypt(nameAad(residentId), r.full_name_enc),
      phone: cipher.decrypt(phoneAad(residentId), r.phone_enc),
      apartments: apartments.map((a) => ({
        id: a.id,
        number: a.number,
        entrance: { id: a.entrance_id, name: a.entrance_name },
        building: { id: a.building_id, name: a.building_name },
        complex: { id: a.complex_id, name: a.complex_name },
      })),
    };
  }

  // ---- access points and doors -------------------------------------------------------------------

  async function listAccessPoints(residentId: string): Promise<AccessPoint[]> {
    const rows = await db.query<DeviceRow & Record<string, unknown>>(usableDevices(residentId));
    return rows.map(publicAccessPoint);
  }

  /**
   * Contract §7 from our side: journal the request (committed before anything is sent), command the
   * partner, journal the outcome in its own transaction. The answer comes by `expiresAt` at the latest.
   * `partnerMs` is the time spent waiting on the partner (the route's Server-Timing `partner`): the
   * channel's own measure, or the whole wait for the answer when the channel gives none.
   */
  async function openDoor(residentId: string, deviceId: string, requestId: string) {
    const d = await accessPoint(db, residentId, deviceId);
    if (!d) throw new AppError('not-found');
    if (d.kind !== 'door') {
      throw new AppError(
        'not-a-door',
        'a barrier opens when its camera reads a registered plate; only doors open from the app',
      );
    }
    if (!d.enabled) throw new AppError('access-point-disabled', 'this door is out of service');
    let cmd: PreparedDoorCommand;
    try {
      cmd = await deps.doors.prepare({ partnerId: d.partner_id, doorExternalId: d.external_id, residentId });
    } catch (err) {
      if (err instanceof DoorNotCommandable)
        throw new AppError('access-point-disabled', 'this door cannot be opened from the app');
      throw err;
    }
    const common = {
      partnerId: d.partner_id,
      deviceId: d.id,
      subjectType: 'resident',
      subjectId: residentId,
    };
    // Committed before the command leaves: a crash in between still shows the attempt. Each entry is
    // one INSERT, which commits on its own: one round trip, where begin/insert/commit took three.
    await journal(db, residentId, requestId, {
      ...common,
      action: 'door.open.request',
      result: 'sent',
      details: { commandId: cmd.commandId, expiresAt: cmd.expiresAt.toISOString() },
    });
    const sentAt = performance.now();
    const sent = await withDeadline(cmd.send(), cmd.expiresAt);
    const partnerMs = sent.partnerMs ?? performance.now() - sentAt;
    const { status, failure } = sent;
    const at = now();
    await journal(db, residentId, requestId, {
      ...common,
      action: 'door.open.result',
      result: status,
      details: { commandId: cmd.commandId, ...(failure ? { failure } : {}) },
    });
    return {
      result: { commandId: cmd.commandId, accessPointId: d.id, status, at: at.toISOString() },
      partnerMs,
    };
  }

  /** The channel keeps to `expiresAt` itself; this is the resident API's own guarantee of it. */
  async function withDeadline(p: Promise<DoorSendResult>, deadline: Date): Promise<DoorSendResult> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<{ status: DoorOutcome; failure: string }>((resolve) => {
      timer = setTimeout(
        () => resolve({ status: 'timeout', failure: 'deadline' }),
        Math.max(0, deadline.getTime() - Date.now()),
      );
    });
    try {
      const r: DoorSendResult = await Promise.race([
        p.catch(() => ({ status: 'partner_error' as const, failure: 'exception' })),
        late,
      ]);
      return DOOR_OUTCOMES.includes(r.status)
        ? r
        : { status: 'partner_error', failure: 'invalid_outcome', partnerMs: r.partnerMs };
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- vehicles ----------------------------------------------------------------------------------

  const vehicleView = (v: { id: string; plate_enc: string; created_at: Date }) => {
    const canonical = cipher.decrypt(vehiclePlateAad(v.id), v.plate_enc);
    return {
      id: v.id,
      plate: displayPlate(canonical),
      format: (validateRussianPlate(canonical) ?? null) as RussianPlateFormat | null,
      createdAt: v.created_at.toISOString(),
    };
  };

  async function vehicles(q: Queryable, residentId: string) {
    const rows = await q.query<{ id: string; plate_enc: string; created_at: Date }>(
      sql`select id, plate_enc, created_at from vehicles where resident_id = ${residentId} order by created_at, id`,
    );
    return rows.map(vehicleView);
  }

  async function addVehicle(residentId: string, plateInput: string, requestId: string) {
    const { canonical } = plateOrThrow(plateInput, 'plate');
    const index = cipher.blindIndex(PURPOSE_PLATES, canonical);
    return db.transaction(async (tx) => {
      // Serialises a resident's own concurrent additions of one plate (the unique key backs it up).
      await tx.query(sql`select id from residents where id = ${residentId} for update`);
      if (
        await tx.one(sql`select 1 from vehicles where resident_id = ${residentId} and plate_index = ${index}`)
      )
        throw new AppError('plate-already-registered', 'plate: you have already registered this car');
      const id = randomUUID();
      const row = await tx.one<{ id: string; plate_enc: string; created_at: Date }>(
        sql`insert into vehicles (id, resident_id, plate_enc, plate_index) values (${id}, ${residentId},
          ${cipher.encrypt(PURPOSE_PLATES, vehiclePlateAad(id), canonical)}, ${index})
          returning id, plate_enc, created_at`,
      );
      await writePlateTokens(tx, { vehicleId: id }, canonical, await barrierPartnerKeys(tx, cipher));
      await journal(tx, residentId, requestId, {
        action: 'registry.vehicle.create',
        subjectType: 'vehicle',
        subjectId: id,
        result: 'ok',
        details: { residentId },
      });
      return vehicleView(row!);
    });
  }

  async function removeVehicle(residentId: string, vehicleId: string, requestId: string): Promise<void> {
    await db.transaction(async (tx) => {
      const v = await tx.one(
        sql`select id from vehicles where id = ${vehicleId} and resident_id = ${residentId} for update`,
      );
      if (!v) throw new AppError('not-found');
      await tx.query(sql`delete from plate_tokens where vehicle_id = ${vehicleId}`);
      await tx.query(sql`delete from vehicles where id = ${vehicleId}`);
      await journal(tx, residentId, requestId, {
        action: 'registry.vehicle.delete',
        subjectType: 'vehicle',
        subjectId: vehicleId,
        result: 'ok',
        details: { residentId },
      });
    });
  }

  // ---- guest passes ------------------------------------------------------------------------------

  interface PassRow {
    id: string;
    plate_enc: string;
    valid_from: Date;
    valid_until: Date;
    revoked_at: Date | null;
    created_at: Date;
  }

  async function passViews(q: Queryable, residentId: string, only?: string) {
    const rows = await q.query<PassRow & Record<string, unknown>>(
      sql`select id, plate_enc, valid_from, valid_until, revoked_at, created_at from guest_passes
        where issued_by = ${residentId} ${only === undefined ? sql`` : sql`and id = ${only}`}
        order by created_at desc, id`,
    );
    if (rows.length === 0) return [];
    const devices = await q.query<{ pass_id: string; id: string; name: string }>(
      sql`select gpd.pass_id, d.id, d.name from guest_pass_devices gpd join devices d on d.id = gpd.device_id
        where gpd.pass_id = any(${rows.map((r) => r.id)}::uuid[]) order by d.name, d.id`,
    );
    const at = now().getTime();
    return rows.map((p) => ({
      id: p.id,
      plate: displayPlate(cipher.decrypt(passPlateAad(p.id), p.plate_enc)),
      validFrom: p.valid_from.toISOString(),
      validUntil: p.valid_until.toISOString(),
      revokedAt: p.revoked_at ? p.revoked_at.toISOString() : null,
      status: (p.revoked_at
        ? 'revoked'
        : p.valid_until.getTime() <= at
          ? 'expired'
          : p.valid_from.getTime() > at
            ? 'scheduled'
            : 'active') as 'revoked' | 'expired' | 'scheduled' | 'active',
      barriers: devices.filter((d) => d.pass_id === p.id).map((d) => ({ id: d.id, name: d.name })),
      createdAt: p.created_at.toISOString(),
    }));
  }

  async function createPass(
    residentId: string,
    input: { plate: string; validFrom?: string | undefined; validUntil: string; barrierIds: string[] },
    requestId: string,
  ) {
    const { canonical } = plateOrThrow(input.plate, 'plate');
    const at = now();
    // A start in the past means "from now": a pass never covers time already gone.
    const from = new Date(Math.max(input.validFrom ? Date.parse(input.validFrom) : 0, at.getTime()));
    const until = new Date(Date.parse(input.validUntil));
    if (until.getTime() <= from.getTime())
      throw new AppError('invalid-request', 'validUntil must be in the future and after validFrom');
    if (until.getTime() - from.getTime() > deps.guestPassMaxDays * DAY_MS)
      throw new AppError('invalid-request', `a guest pass lasts at most ${deps.guestPassMaxDays} days`);
    return db.transaction(async (tx) => {
      for (const [i, barrierId] of input.barrierIds.entries()) {
        const d = await accessPoint(tx, residentId, barrierId);
        if (!d) throw new AppError('not-found', `barrierIds/${i}: no such access point`);
        if (d.kind !== 'barrier')
          throw new AppError('invalid-request', `barrierIds/${i}: a guest pass opens barriers only`);
      }
      const id = randomUUID();
      await tx.query(sql`insert into guest_passes (id, issued_by, plate_enc, valid_from, valid_until)
        values (${id}, ${residentId}, ${cipher.encrypt(PURPOSE_PLATES, passPlateAad(id), canonical)}, ${from}, ${until})`);
      for (const d of input.barrierIds)
        await tx.query(sql`insert into guest_pass_devices (pass_id, device_id) values (${id}, ${d})`);
      await writePlateTokens(tx, { passId: id }, canonical, await barrierPartnerKeys(tx, cipher));
      await journal(tx, residentId, requestId, {
        action: 'registry.guest-pass.create',
        subjectType: 'guest-pass',
        subjectId: id,
        result: 'ok',
        details: { residentId, barriers: input.barrierIds.length },
      });
      return (await passViews(tx, residentId, id))[0]!;
    });
  }

  /** Idempotent: revoking a revoked pass changes nothing and journals nothing. */
  async function revokePass(residentId: string, passId: string, requestId: string) {
    return db.transaction(async (tx) => {
      const p = await tx.one<{ revoked_at: Date | null }>(
        sql`select revoked_at from guest_passes where id = ${passId} and issued_by = ${residentId} for update`,
      );
      if (!p) throw new AppError('not-found');
      if (!p.revoked_at) {
        await tx.query(sql`update guest_passes set revoked_at = ${now()} where id = ${passId}`);
        await journal(tx, residentId, requestId, {
          action: 'registry.guest-pass.revoke',
          subjectType: 'guest-pass',
          subjectId: passId,
          result: 'ok',
          details: { residentId },
        });
      }
      return (await passViews(tx, residentId, passId))[0]!;
    });
  }

  // ---- history -----------------------------------------------------------------------------------

  interface JournalRow {
    seq: string;
    id: string;
    at: Date;
    action: string;
    result: string;
    subject_type: string | null;
    subject_id: string | null;
    details: unknown;
    device_id: string | null;
    device_kind: 'door' | 'barrier' | null;
    device_name: string | null;
  }

  /**
   * Journal entries about the resident: `access` ones (barrier decisions and door commands whose
   * subject is the resident or one of their passes) or `changes` (registry changes of the resident and
   * of their vehicles and passes, and whatever the resident did). Newest first; `before` is a seq.
   */
  function journalQuery(
    residentId: string,
    which: 'access' | 'changes',
    before: bigint | null,
    limit: number | null,
  ) {
    const mine = sql`((j.subject_type = 'resident' and j.subject_id = ${residentId})
        or (j.subject_type in ('pass', 'guest-pass')
          and j.subject_id in (select id::text from guest_passes where issued_by = ${residentId}))
        or (j.subject_type = 'vehicle' and j.details->>'residentId' = ${residentId})
        or (j.actor_type = 'resident' and j.actor_id = ${residentId}))`;
    const kind =
      which === 'access'
        ? sql`j.action not like 'registry.%' and j.action not like 'resident.%'
            and j.subject_type in ('resident', 'pass')`
        : sql`(j.action like 'registry.%' or j.action like 'resident.%')`;
    return sql`select j.seq::text as seq, j.id, j.at, j.action, j.result, j.subject_type, j.subject_id, j.details,
        d.id as device_id, d.kind as device_kind, d.name as device_name
      from journal j left join devices d on d.id = j.device_id
      where ${mine} and ${kind} ${before === null ? sql`` : sql`and j.seq < ${before.toString()}::bigint`}
      order by j.seq desc ${limit === null ? sql`` : sql`limit ${limit}`}`;
  }

  /** What a resident may see of an entry: no partner, no partner device id, no command details. */
  const entryView = (r: JournalRow) => {
    const details = (typeof r.details === 'string' ? JSON.parse(r.details) : (r.details ?? {})) as Record<
      string,
      unknown
    >;
    return {
      id: r.id,
      at: r.at.toISOString(),
      action: r.action,
      result: r.result,
      accessPoint:
        r.device_id && r.device_kind && r.device_name
          ? { id: r.device_id, kind: r.device_kind, name: r.device_name }
          : null,
      guestPassId: r.subject_type === 'pass' || r.subject_type === 'guest-pass' ? r.subject_id : null,
      ...(typeof details['reason'] === 'string' ? { reason: details['reason'] } : {}),
      ...(details['direction'] === 'entry' || details['direction'] === 'exit'
        ? { direction: details['direction'] as 'entry' | 'exit' }
        : {}),
    };
  };

  async function history(residentId: string, opts: { limit: number; cursor?: string | undefined }) {
    let before: bigint | null = null;
    if (opts.cursor !== undefined) {
      const raw = Buffer.from(opts.cursor, 'base64url').toString('utf8');
      if (!/^[1-9]\d{0,18}$/.test(raw)) throw new AppError('invalid-request', 'query/cursor is not valid');
      before = BigInt(raw);
    }
    const rows = await db.query<JournalRow & Record<string, unknown>>(
      journalQuery(residentId, 'access', before, opts.limit + 1),
    );
    const page = rows.slice(0, opts.limit);
    const last = page.at(-1);
    return {
      items: page.map(entryView),
      nextCursor: rows.length > opts.limit && last ? Buffer.from(last.seq).toString('base64url') : null,
    };
  }

  // ---- data export (152-FZ art. 14) --------------------------------------------------------------

  /** Everything stored about the resident, decrypted, in one document; the export itself is journaled. */
  async function dataExport(residentId: string, requestId: string) {
    const doc = await db.transaction(async (tx) => {
      // The export is journaled first, in the same transaction, so it lists itself under `changes`.
      await journal(tx, residentId, requestId, {
        action: 'resident.data-export',
        subjectType: 'resident',
        subjectId: residentId,
        result: 'ok',
      });
      const me = await profile(tx, residentId);
      return {
        exportedAt: now().toISOString(),
        profile: { id: me.id, fullName: me.fullName, phone: me.phone },
        apartments: me.apartments,
        vehicles: await vehicles(tx, residentId),
        guestPasses: await passViews(tx, residentId),
        history: (
          await tx.query<JournalRow & Record<string, unknown>>(journalQuery(residentId, 'access', null, null))
        ).map(entryView),
        changes: (
          await tx.query<JournalRow & Record<string, unknown>>(
            journalQuery(residentId, 'changes', null, null),
          )
        ).map(entryView),
      };
    });
    return doc;
  }

  return {
    profile: (residentId: string) => profile(db, residentId),
    listAccessPoints,
    openDoor,
    vehicles: (residentId: string) => vehicles(db, residentId),
    addVehicle,
    removeVehicle,
    passes: (residentId: string) => passViews(db, residentId),
    createPass,
    revokePass,
    history,
    dataExport,
  };
}

export type ResidentService = ReturnType<typeof createResidentService>;
