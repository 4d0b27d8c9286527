import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db, Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { HEARTBEAT_DEFAULTS } from '../device-health/heartbeat.ts';
import type { ActorType } from '../journal/journal.ts';
import { DocumentError, type ProvisioningDocument } from './document.ts';
import * as registry from './service/index.ts';
import { type Change, PURPOSE_PII, RegistryError } from './service/index.ts';

export { PURPOSE_PII };

export interface ApplyDeps {
  db: Db;
  cipher: FieldCipher;
}

export interface ApplyActor {
  type: ActorType;
  id: string;
  requestId?: string;
}

export interface ApplySummary {
  created: number;
  updated: number;
  unchanged: number;
  /** One line per change, e.g. `partner barrier-co created` (codes only, no personal data). */
  changes: string[];
}

/** The service layer's API field names, as the document names them. */
const APPLY_FIELDS: Record<string, string> = {
  complexIds: 'complexes',
  complexId: 'complex',
  buildingId: 'building',
  entranceId: 'entrance',
  partnerId: 'partner',
  apartmentIds: 'apartments',
  deviceIds: 'devices',
};

/** Runs one service call for the object at `path`; its errors become document errors at the field. */
async function atPath<T>(
  path: string,
  fn: () => Promise<T>,
  rename: Record<string, string> = {},
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof RegistryError)) throw err;
    let field = '';
    if (err.field !== undefined) {
      const [head = '', ...rest] = err.field.split('/');
      field = `/${[rename[head] ?? head, ...rest].join('/')}`;
    }
    throw new DocumentError(`${path}${field}`, err.message);
  }
}

/**
 * Applies a provisioning document in ONE transaction: either every object it names is brought to the
 * declared state and journaled, or (on any error) nothing is written.
 */
export async function applyDocument(
  deps: ApplyDeps,
  doc: ProvisioningDocument,
  actor: ApplyActor,
  opts: { dryRun?: boolean; onProgress?: ApplyProgress } = {},
): Promise<ApplySummary> {
  const summary: ApplySummary = { created: 0, updated: 0, unchanged: 0, changes: [] };
  try {
    await deps.db.transaction(async (tx) => {
      const ctx = new ApplyContext(tx, deps.cipher, actor, summary, opts.onProgress);
      await ctx.complexes(doc.complexes ?? []);
      await ctx.partners(doc.partners ?? []);
      await ctx.devices(doc.devices ?? []);
      await ctx.residents(doc.residents ?? []);
      await ctx.passes(doc.guestPasses ?? []);
      if (opts.dryRun) throw DRY_RUN;
    });
  } catch (err) {
    if (err !== DRY_RUN) throw err;
  }
  return summary;
}

/** Called as objects of a section are applied (the CLI shows it as a progress line). */
export type ApplyProgress = (section: 'residents' | 'guestPasses', done: number, total: number) => void;

/** Thrown to roll back a dry run after everything was checked against the real database. */
const DRY_RUN = Symbol('dry-run');

class ApplyContext {
  readonly svc: registry.RegistryContext;
  readonly tx: Queryable;
  readonly cipher: FieldCipher;
  readonly actor: ApplyActor;
  readonly summary: ApplySummary;
  readonly progress: ApplyProgress;
  constructor(
    tx: Queryable,
    cipher: FieldCipher,
    actor: ApplyActor,
    summary: ApplySummary,
    progress?: ApplyProgress,
  ) {
    this.tx = tx;
    this.cipher = cipher;
    this.actor = actor;
    this.summary = summary;
    this.progress = progress ?? (() => {});
    this.svc = {
      tx,
      cipher,
      actor,
      onChange: (c) => {
        if (c.kind === 'delete') return;
        summary[c.kind === 'create' ? 'created' : 'updated']++;
        summary.changes.push(`${c.object} ${c.label} ${c.kind}d`);
      },
    };
  }

  unchanged() {
    this.summary.unchanged++;
  }

  async complexId(code: string, path: string): Promise<string> {
    const row = await this.tx.one<{ id: string }>(sql`select id from complexes where code = ${code}`);
    if (!row) throw new DocumentError(path, `unknown complex "${code}"`);
    return row.id;
  }

  /** Counts an unchanged object in the summary. */
  count(change: Change) {
    if (change === 'unchanged') this.unchanged();
  }

  async complexes(list: NonNullable<ProvisioningDocument['complexes']>) {
    for (const [ci, c] of list.entries()) {
      const at = `/complexes/${ci}`;
      const cur = await this.tx.one<{ id: string }>(sql`select id from complexes where code = ${c.code}`);
      const complexId = cur
        ? cur.id
        : await atPath(at, () => registry.createComplex(this.svc, { code: c.code, name: c.name }));
      if (cur) this.count(await atPath(at, () => registry.updateComplex(this.svc, cur.id, { name: c.name })));
      const seenB = new Set<string>();
      for (const [bi, b] of c.buildings.entries()) {
        if (seenB.has(b.code))
          throw new DocumentError(`/complexes/${ci}/buildings/${bi}/code`, 'duplicate building code');
        seenB.add(b.code);
        const buildingId = await this.upsertNamed('building', complexId, b, `${at}/buildings/${bi}`);
        const seenE = new Set<string>();
        for (const [ei, e] of b.entrances.entries()) {
          if (seenE.has(e.code)) {
            throw new DocumentError(
              `/complexes/${ci}/buildings/${bi}/entrances/${ei}/code`,
              'duplicate entrance code',
            );
          }
          seenE.add(e.code);
          const eAt = `${at}/buildings/${bi}/entrances/${ei}`;
          const entranceId = await this.upsertNamed('entrance', buildingId, e, eAt);
          for (const [ai, number] of e.apartments.entries())
            await atPath(`${eAt}/apartments/${ai}`, () =>
              registry.ensureApartment(this.svc, { entranceId, number }),
            );
        }
      }
    }
  }

  async upsertNamed(
    object: 'building' | 'entrance',
    parentId: string,
    input: { code: string; name: string },
    at: string,
  ): Promise<string> {
    const t = sql.ident(object === 'building' ? 'buildings' : 'entrances');
    const pc = sql.ident(object === 'building' ? 'complex_id' : 'building_id');
    const cur = await this.tx.one<{ id: string }>(
      sql`select id from ${t} where ${pc} = ${parentId} and code = ${input.code}`,
    );
    if (!cur)
      return atPath(at, () =>
        registry.createNamed(this.svc, object, parentId, { code: input.code, name: input.name }),
      );
    this.count(await atPath(at, () => registry.updateNamed(this.svc, object, cur.id, { name: input.name })));
    return cur.id;
  }

  async partners(list: NonNullable<ProvisioningDocument['partners']>) {
    for (const [pi, p] of list.entries()) {
      const at = `/partners/${pi}`;
      const complexIds: string[] = [];
      for (const [i, code] of p.complexes.entries())
        complexIds.push(await this.complexId(code, `${at}/complexes/${i}`));
      const input: registry.PartnerInput = {
        code: p.code,
        name: p.name,
        enabled: p.enabled ?? true,
        scopes: [...p.scopes],
        complexIds,
        networks: p.networks,
        certificates: p.certificates,
        signingKeys: p.signingKeys,
        encryptionKeys: p.encryptionKeys,
        baseUrl: p.baseUrl ?? null,
        // Contract §7: how we call the partner (pinned server CA, our client id, its token endpoint).
        outbound: p.outbound
          ? {
              serverCa: p.outbound.serverCa,
              clientId: p.outbound.clientId,
              tokenEndpoint: p.outbound.tokenEndpoint ?? null,
            }
          : null,
        // Contract §8.2: the keys of its journal log and of its witness (absent: none).
        logKey: p.logKey ?? null,
        witnessKey: p.witnessKey ?? null,
        // Contract §9: declared figures, each absent one at its default (the document is declarative).
        heartbeat: {
          intervalSeconds: p.heartbeat?.intervalSeconds ?? HEARTBEAT_DEFAULTS.intervalSeconds,
          missed: p.heartbeat?.missed ?? HEARTBEAT_DEFAULTS.missed,
        },
      };
      const cur = await this.tx.one<{ id: string }>(sql`select id from partners where code = ${p.code}`);
      if (!cur) await atPath(at, () => registry.createPartner(this.svc, input), APPLY_FIELDS);
      else {
        const { code: _code, ...patch } = input;
        this.count(await atPath(at, () => registry.updatePartner(this.svc, cur.id, patch), APPLY_FIELDS));
      }
    }
  }

  async devices(list: NonNullable<ProvisioningDocument['devices']>) {
    for (const [di, d] of list.entries()) {
      const at = `/devices/${di}`;
      const partner = await this.tx.one<{ id: string }>(
        sql`select id from partners where code = ${d.partner}`,
      );
      if (!partner) throw new DocumentError(`${at}/partner`, `unknown partner "${d.partner}"`);
      const complexId = await this.complexId(d.complex, `${at}/complex`);
      let buildingId: string | null = null;
      let entranceId: string | null = null;
      if (d.entrance && !d.building)
        throw new DocumentError(`${at}/entrance`, 'an entrance needs its building');
      if (d.building) {
        const b = await this.tx.one<{ id: string }>(
          sql`select id from buildings where complex_id = ${complexId} and code = ${d.building}`,
        );
        if (!b)
          throw new DocumentError(`${at}/building`, `unknown building "${d.building}" in "${d.complex}"`);
        buildingId = b.id;
      }
      if (d.entrance) {
        const e = await this.tx.one<{ id: string }>(
          sql`select id from entrances where building_id = ${buildingId} and code = ${d.entrance}`,
        );
        if (!e) throw new DocumentError(`${at}/entrance`, `unknown entrance "${d.entrance}"`);
        entranceId = e.id;
      }
      const input: registry.DeviceInput = {
        partnerId: partner.id,
        externalId: d.externalId,
        kind: d.kind,
        name: d.name,
        complexId,
        buildingId,
        entranceId,
        enabled: d.enabled ?? true,
      };
      const cur = await this.tx.one<{ id: string }>(
        sql`select id from devices where partner_id = ${partner.id} and external_id = ${d.externalId}`,
      );
      if (!cur) await atPath(at, () => registry.createDevice(this.svc, input), APPLY_FIELDS);
      else {
        const { partnerId: _p, externalId: _e, ...patch } = input;
        this.count(await atPath(at, () => registry.updateDevice(this.svc, cur.id, patch), APPLY_FIELDS));
      }
    }
  }

  async apartmentId(path: string, at: string): Promise<string> {
    const [complex, building, entrance, number] = path.split('/');
    const row = await this.tx.one<{ id: string }>(sql`select a.id from apartments a
      join entrances e on e.id = a.entrance_id join buildings b on b.id = e.building_id join complexes c on c.id = b.complex_id
      where c.code = ${complex} and b.code = ${building} and e.code = ${entrance} and a.number = ${number}`);
    if (!row) throw new DocumentError(at, 'unknown apartment');
    return row.id;
  }

  async residents(list: NonNullable<ProvisioningDocument['residents']>) {
    const seen = new Set<string>();
    for (const [ri, r] of list.entries()) {
      this.progress('residents', ri, list.length);
      const at = `/residents/${ri}`;
      if (seen.has(r.ref)) throw new DocumentError(`${at}/ref`, 'duplicate resident ref');
      seen.add(r.ref);
      const apartmentIds: string[] = [];
      for (const [i, a] of r.apartments.entries())
        apartmentIds.push(await this.apartmentId(a, `${at}/apartments/${i}`));
      const input: registry.ResidentInput = {
        ref: r.ref,
        fullName: r.fullName,
        phone: r.phone,
        apartmentIds,
        vehicles: r.vehicles,
        // External IdP mode (src/api-auth/): absent leaves the link as it is.
        externalSubject: r.externalSubject,
      };
      const cur = await this.tx.one<{ id: string }>(sql`select id from residents where ref = ${r.ref}`);
      if (!cur) await atPath(at, () => registry.createResident(this.svc, input), APPLY_FIELDS);
      else {
        const { ref: _ref, ...patch } = input;
        this.count(await atPath(at, () => registry.updateResident(this.svc, cur.id, patch), APPLY_FIELDS));
      }
    }
  }

  async passes(list: NonNullable<ProvisioningDocument['guestPasses']>) {
    for (const [gi, g] of list.entries()) {
      this.progress('guestPasses', gi, list.length);
      const at = `/guestPasses/${gi}`;
      const issuer = await this.tx.one<{ id: string }>(
        sql`select id from residents where ref = ${g.issuedBy}`,
      );
      if (!issuer) throw new DocumentError(`${at}/issuedBy`, 'unknown resident');
      const deviceIds: string[] = [];
      for (const [i, path] of g.devices.entries()) {
        const [partnerCode, externalId] = path.split('/');
        const dev = await this.tx.one<{ id: string }>(sql`select d.id from devices d
          join partners p on p.id = d.partner_id where p.code = ${partnerCode} and d.external_id = ${externalId}`);
        if (!dev) throw new DocumentError(`${at}/devices/${i}`, 'unknown device');
        deviceIds.push(dev.id);
      }
      const input: registry.GuestPassInput = {
        ref: g.ref,
        issuedBy: issuer.id,
        plate: g.plate,
        validFrom: new Date(g.validFrom),
        validUntil: new Date(g.validUntil),
        deviceIds,
        revoked: g.revoked ?? false,
      };
      const cur = await this.tx.one<{ id: string }>(sql`select id from guest_passes where ref = ${g.ref}`);
      if (!cur) await atPath(at, () => registry.createGuestPass(this.svc, input), APPLY_FIELDS);
      else
        this.count(await atPath(at, () => registry.updateGuestPass(this.svc, cur.id, input), APPLY_FIELDS));
    }
  }
}
