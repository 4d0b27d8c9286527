import { createHash, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, type JWK } from 'jose';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import { canonicalisePlate } from '../crypto/plate.ts';
import type { Db, Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { type ActorType, appendJournal } from '../journal/journal.ts';
import { DocumentError, type ProvisioningDocument } from './document.ts';
import { addPartnerSecret } from './partner-secrets.ts';
import {
  barrierPartnerKeys,
  PURPOSE_PLATES,
  passPlateAad,
  rebuildPartnerPlateTokens,
  vehiclePlateAad,
  writePlateTokens,
} from './plate-tokens.ts';

export const PURPOSE_PII = 'pii';

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

/** Stable id for journal details: a short hash, so even refs never leak into shared projections. */
const short = (s: string) => createHash('sha256').update(s).digest('base64url').slice(0, 12);

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const sa = new Set(a);
  return sa.size === new Set(b).size && b.every((x) => sa.has(x));
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
  }

  /** `label` names the object in the operator's summary; the journal gets ids and `details` only. */
  async journal(
    kind: 'create' | 'update',
    object: string,
    subjectId: string,
    details: Record<string, unknown>,
    label?: string,
  ) {
    this.summary[kind === 'create' ? 'created' : 'updated']++;
    this.summary.changes.push(`${object} ${label ?? details['code'] ?? subjectId} ${kind}d`);
    await appendJournal(this.tx, {
      actorType: this.actor.type,
      actorId: this.actor.id,
      action: `registry.${object}.${kind}`,
      subjectType: object,
      subjectId,
      result: 'ok',
      requestId: this.actor.requestId ?? null,
      details,
      ...(typeof details['partnerId'] === 'string' ? { partnerId: details['partnerId'] } : {}),
      ...(typeof details['deviceId'] === 'string' ? { deviceId: details['deviceId'] } : {}),
    });
  }

  unchanged() {
    this.summary.unchanged++;
  }

  async complexId(code: string, path: string): Promise<string> {
    const row = await this.tx.one<{ id: string }>(sql`select id from complexes where code = ${code}`);
    if (!row) throw new DocumentError(path, `unknown complex "${code}"`);
    return row.id;
  }

  async complexes(list: NonNullable<ProvisioningDocument['complexes']>) {
    for (const [ci, c] of list.entries()) {
      const cur = await this.tx.one<{ id: string; name: string }>(
        sql`select id, name from complexes where code = ${c.code}`,
      );
      let complexId: string;
      if (!cur) {
        complexId = randomUUID();
        await this.tx.query(
          sql`insert into complexes (id, code, name) values (${complexId}, ${c.code}, ${c.name})`,
        );
        await this.journal('create', 'complex', complexId, { code: c.code });
      } else {
        complexId = cur.id;
        if (cur.name !== c.name) {
          await this.tx.query(
            sql`update complexes set name = ${c.name}, updated_at = now() where id = ${complexId}`,
          );
          await this.journal('update', 'complex', complexId, { code: c.code });
        } else this.unchanged();
      }
      const seenB = new Set<string>();
      for (const [bi, b] of c.buildings.entries()) {
        if (seenB.has(b.code))
          throw new DocumentError(`/complexes/${ci}/buildings/${bi}/code`, 'duplicate building code');
        seenB.add(b.code);
        const buildingId = await this.upsertNamed(
          'building',
          'buildings',
          'complex_id',
          complexId,
          b.code,
          b.name,
        );
        const seenE = new Set<string>();
        for (const [ei, e] of b.entrances.entries()) {
          if (seenE.has(e.code)) {
            throw new DocumentError(
              `/complexes/${ci}/buildings/${bi}/entrances/${ei}/code`,
              'duplicate entrance code',
            );
          }
          seenE.add(e.code);
          const entranceId = await this.upsertNamed(
            'entrance',
            'entrances',
            'building_id',
            buildingId,
            e.code,
            e.name,
          );
          for (const number of e.apartments) {
            const inserted = await this.tx.query(sql`insert into apartments (id, entrance_id, number)
              values (${randomUUID()}, ${entranceId}, ${number}) on conflict (entrance_id, number) do nothing returning id`);
            if (inserted[0]) {
              await this.journal('create', 'apartment', String(inserted[0]['id']), {
                code: `${c.code}/${b.code}/${e.code}/${number}`,
              });
            }
          }
        }
      }
    }
  }

  async upsertNamed(
    object: 'building' | 'entrance',
    table: 'buildings' | 'entrances',
    parentColumn: 'complex_id' | 'building_id',
    parentId: string,
    code: string,
    name: string,
  ): Promise<string> {
    const t = sql.ident(table);
    const pc = sql.ident(parentColumn);
    const cur = await this.tx.one<{ id: string; name: string }>(
      sql`select id, name from ${t} where ${pc} = ${parentId} and code = ${code}`,
    );
    if (!cur) {
      const id = randomUUID();
      await this.tx.query(
        sql`insert into ${t} (id, ${pc}, code, name) values (${id}, ${parentId}, ${code}, ${name})`,
      );
      await this.journal('create', object, id, { code });
      return id;
    }
    if (cur.name !== name) {
      await this.tx.query(sql`update ${t} set name = ${name} where id = ${cur.id}`);
      await this.journal('update', object, cur.id, { code });
    } else this.unchanged();
    return cur.id;
  }

  async partners(list: NonNullable<ProvisioningDocument['partners']>) {
    for (const [pi, p] of list.entries()) {
      const at = `/partners/${pi}`;
      const complexIds: string[] = [];
      for (const [i, code] of p.complexes.entries())
        complexIds.push(await this.complexId(code, `${at}/complexes/${i}`));
      const scopes = [...p.scopes].sort();
      const enabled = p.enabled ?? true;
      const baseUrl = p.baseUrl ?? null;
      const cur = await this.tx.one<{
        id: string;
        name: string;
        scopes: string[];
        enabled: boolean;
        base_url: string | null;
      }>(sql`select id, name, scopes, enabled, base_url from partners where code = ${p.code}`);
      let partnerId: string;
      let changed = false;
      let created = false;
      if (!cur) {
        partnerId = randomUUID();
        created = true;
        await this.tx.query(sql`insert into partners (id, code, name, scopes, enabled, base_url)
          values (${partnerId}, ${p.code}, ${p.name}, ${scopes}, ${enabled}, ${baseUrl})`);
        await addPartnerSecret(this.tx, this.cipher, { id: partnerId, code: p.code });
      } else {
        partnerId = cur.id;
        if (
          cur.name !== p.name ||
          !sameSet(cur.scopes, scopes) ||
          cur.enabled !== enabled ||
          cur.base_url !== baseUrl
        ) {
          changed = true;
          await this.tx.query(sql`update partners set name = ${p.name}, scopes = ${scopes}, enabled = ${enabled},
            base_url = ${baseUrl}, updated_at = now() where id = ${partnerId}`);
        }
      }
      changed = (await this.replaceSet('partner_complexes', 'complex_id', partnerId, complexIds)) || changed;
      const networks = p.networks.map((n) =>
        n.includes('/') ? n : n.includes(':') ? `${n}/128` : `${n}/32`,
      );
      changed = (await this.replaceNetworks(partnerId, networks, `${at}/networks`)) || changed;
      changed = (await this.replaceCertificates(partnerId, p.certificates, `${at}/certificates`)) || changed;
      changed =
        (await this.replaceKeys('partner_signing_keys', partnerId, p.signingKeys, `${at}/signingKeys`)) ||
        changed;
      changed =
        (await this.replaceKeys(
          'partner_encryption_keys',
          partnerId,
          p.encryptionKeys,
          `${at}/encryptionKeys`,
        )) || changed;
      if (created) {
        await this.journal('create', 'partner', partnerId, { code: p.code, partnerId, scopes });
        await rebuildPartnerPlateTokens(this.tx, this.cipher, partnerId);
      } else if (changed) {
        await this.journal('update', 'partner', partnerId, { code: p.code, partnerId, scopes });
        if (scopes.includes('barrier:decide') !== cur?.scopes.includes('barrier:decide')) {
          await rebuildPartnerPlateTokens(this.tx, this.cipher, partnerId);
        }
      } else this.unchanged();
    }
  }

  async replaceSet(
    table: 'partner_complexes',
    column: 'complex_id',
    partnerId: string,
    ids: string[],
  ): Promise<boolean> {
    const t = sql.ident(table);
    const c = sql.ident(column);
    const cur = (
      await this.tx.query<Record<string, string>>(
        sql`select ${c} as v from ${t} where partner_id = ${partnerId}`,
      )
    ).map((r) => String(r['v']));
    if (sameSet(cur, ids)) return false;
    await this.tx.query(sql`delete from ${t} where partner_id = ${partnerId}`);
    for (const id of ids)
      await this.tx.query(sql`insert into ${t} (partner_id, ${c}) values (${partnerId}, ${id})`);
    return true;
  }

  async replaceNetworks(partnerId: string, cidrs: string[], path: string): Promise<boolean> {
    const cur = (
      await this.tx.query<{ cidr: string }>(
        sql`select cidr::text as cidr from partner_networks where partner_id = ${partnerId}`,
      )
    ).map((r) => r.cidr);
    let normalized: string[];
    try {
      normalized = [];
      for (const c of cidrs) {
        const r = await this.tx.one<{ c: string }>(sql`select ${c}::cidr::text as c`);
        normalized.push(r!.c);
      }
    } catch {
      throw new DocumentError(path, 'not a valid CIDR (host bits must be zero)');
    }
    if (sameSet(cur, normalized)) return false;
    await this.tx.query(sql`delete from partner_networks where partner_id = ${partnerId}`);
    for (const c of normalized)
      await this.tx.query(
        sql`insert into partner_networks (partner_id, cidr) values (${partnerId}, ${c}::cidr)`,
      );
    return true;
  }

  async replaceCertificates(partnerId: string, thumbprints: string[], path: string): Promise<boolean> {
    const cur = (
      await this.tx.query<{ thumbprint: string }>(
        sql`select thumbprint from partner_certificates where partner_id = ${partnerId}`,
      )
    ).map((r) => r.thumbprint);
    if (sameSet(cur, thumbprints)) return false;
    for (const [i, t] of thumbprints.entries()) {
      const other = await this.tx.one(
        sql`select 1 from partner_certificates where thumbprint = ${t} and partner_id <> ${partnerId}`,
      );
      if (other)
        throw new DocumentError(`${path}/${i}`, 'certificate is already registered to another partner');
    }
    await this.tx.query(sql`delete from partner_certificates where partner_id = ${partnerId}`);
    for (const t of thumbprints) {
      await this.tx.query(
        sql`insert into partner_certificates (thumbprint, partner_id) values (${t}, ${partnerId})`,
      );
    }
    return true;
  }

  async replaceKeys(
    table: 'partner_signing_keys' | 'partner_encryption_keys',
    partnerId: string,
    jwks: Array<JWK & { kid: string }>,
    path: string,
  ): Promise<boolean> {
    const t = sql.ident(table);
    const cur = await this.tx.query<{ kid: string; thumbprint: string; partner_id: string }>(
      sql`select kid, thumbprint, partner_id from ${t} where partner_id = ${partnerId} or kid = any(${jwks.map((k) => k.kid)})`,
    );
    const wanted = new Map<string, { jwk: JWK; thumbprint: string }>();
    for (const [i, jwk] of jwks.entries()) {
      if (wanted.has(jwk.kid)) throw new DocumentError(`${path}/${i}/kid`, 'duplicate kid');
      const thumbprint = await calculateJwkThumbprint(jwk, 'sha256');
      const existing = cur.find((r) => r.kid === jwk.kid);
      if (existing && existing.partner_id !== partnerId) {
        throw new DocumentError(`${path}/${i}/kid`, 'kid is already registered to another partner');
      }
      if (existing && existing.thumbprint !== thumbprint) {
        // A kid names one key forever; a new key needs a new kid, so signatures stay attributable.
        throw new DocumentError(
          `${path}/${i}`,
          'kid is already registered with a different key; use a new kid',
        );
      }
      const { kid, kty, crv, x } = jwk;
      const pub: JWK =
        table === 'partner_signing_keys' ? { kty, crv, x, kid } : { kty, crv, x, y: jwk.y, kid };
      wanted.set(jwk.kid, { jwk: pub, thumbprint });
    }
    const mine = cur.filter((r) => r.partner_id === partnerId);
    if (
      sameSet(
        mine.map((r) => r.kid),
        [...wanted.keys()],
      )
    )
      return false;
    for (const r of mine)
      if (!wanted.has(r.kid)) await this.tx.query(sql`delete from ${t} where kid = ${r.kid}`);
    for (const [kid, w] of wanted) {
      if (mine.some((r) => r.kid === kid)) continue;
      await this.tx.query(sql`insert into ${t} (kid, partner_id, public_jwk, thumbprint)
        values (${kid}, ${partnerId}, ${JSON.stringify(w.jwk)}, ${w.thumbprint})`);
    }
    return true;
  }

  async devices(list: NonNullable<ProvisioningDocument['devices']>) {
    for (const [di, d] of list.entries()) {
      const at = `/devices/${di}`;
      const partner = await this.tx.one<{ id: string; scopes: string[] }>(
        sql`select id, scopes from partners where code = ${d.partner}`,
      );
      if (!partner) throw new DocumentError(`${at}/partner`, `unknown partner "${d.partner}"`);
      const complexId = await this.complexId(d.complex, `${at}/complex`);
      const inPerimeter = await this.tx.one(
        sql`select 1 from partner_complexes where partner_id = ${partner.id} and complex_id = ${complexId}`,
      );
      if (!inPerimeter)
        throw new DocumentError(`${at}/complex`, "complex is outside the partner's perimeter");
      if (d.kind === 'barrier' && !partner.scopes.includes('barrier:decide')) {
        throw new DocumentError(`${at}/kind`, 'a barrier needs a partner with the barrier:decide scope');
      }
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
      const enabled = d.enabled ?? true;
      const cur = await this.tx.one<Record<string, unknown>>(
        sql`select id, kind, name, complex_id, building_id, entrance_id, enabled from devices
            where partner_id = ${partner.id} and external_id = ${d.externalId}`,
      );
      if (!cur) {
        const id = randomUUID();
        await this.tx.query(sql`insert into devices (id, partner_id, external_id, kind, name, complex_id, building_id, entrance_id, enabled)
          values (${id}, ${partner.id}, ${d.externalId}, ${d.kind}, ${d.name}, ${complexId}, ${buildingId}, ${entranceId}, ${enabled})`);
        await this.journal('create', 'device', id, {
          code: `${d.partner}/${d.externalId}`,
          partnerId: partner.id,
          deviceId: id,
        });
      } else if (
        cur['kind'] !== d.kind ||
        cur['name'] !== d.name ||
        cur['complex_id'] !== complexId ||
        cur['building_id'] !== buildingId ||
        cur['entrance_id'] !== entranceId ||
        cur['enabled'] !== enabled
      ) {
        const id = String(cur['id']);
        await this.tx.query(sql`update devices set kind = ${d.kind}, name = ${d.name}, complex_id = ${complexId},
          building_id = ${buildingId}, entrance_id = ${entranceId}, enabled = ${enabled}, updated_at = now() where id = ${id}`);
        await this.journal('update', 'device', id, {
          code: `${d.partner}/${d.externalId}`,
          partnerId: partner.id,
          deviceId: id,
        });
      } else this.unchanged();
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
    let partners: Awaited<ReturnType<typeof barrierPartnerKeys>> | undefined;
    const seen = new Set<string>();
    for (const [ri, r] of list.entries()) {
      this.progress('residents', ri, list.length);
      const at = `/residents/${ri}`;
      if (seen.has(r.ref)) throw new DocumentError(`${at}/ref`, 'duplicate resident ref');
      seen.add(r.ref);
      const apartmentIds: string[] = [];
      for (const [i, a] of r.apartments.entries())
        apartmentIds.push(await this.apartmentId(a, `${at}/apartments/${i}`));
      const phoneIndex = this.cipher.blindIndex(PURPOSE_PII, r.phone);
      const cur = await this.tx.one<{ id: string; full_name_enc: string; phone_enc: string }>(
        sql`select id, full_name_enc, phone_enc from residents where ref = ${r.ref}`,
      );
      const clash = await this.tx.one<{ ref: string }>(
        sql`select ref from residents where phone_index = ${phoneIndex}`,
      );
      if (clash && clash.ref !== r.ref)
        throw new DocumentError(`${at}/phone`, 'phone number already belongs to another resident');
      let id: string;
      let kind: 'create' | 'update' | undefined;
      if (!cur) {
        id = randomUUID();
        kind = 'create';
        await this.tx.query(sql`insert into residents (id, ref, full_name_enc, phone_enc, phone_index) values (${id}, ${r.ref},
          ${this.cipher.encrypt(PURPOSE_PII, { table: 'residents', column: 'full_name_enc', rowId: id }, r.fullName)},
          ${this.cipher.encrypt(PURPOSE_PII, { table: 'residents', column: 'phone_enc', rowId: id }, r.phone)}, ${phoneIndex})`);
      } else {
        id = cur.id;
        const name = this.cipher.decrypt(
          { table: 'residents', column: 'full_name_enc', rowId: id },
          cur.full_name_enc,
        );
        const phone = this.cipher.decrypt(
          { table: 'residents', column: 'phone_enc', rowId: id },
          cur.phone_enc,
        );
        if (name !== r.fullName || phone !== r.phone) {
          kind = 'update';
          await this.tx.query(sql`update residents set
            full_name_enc = ${this.cipher.encrypt(PURPOSE_PII, { table: 'residents', column: 'full_name_enc', rowId: id }, r.fullName)},
            phone_enc = ${this.cipher.encrypt(PURPOSE_PII, { table: 'residents', column: 'phone_enc', rowId: id }, r.phone)},
            phone_index = ${phoneIndex}, updated_at = now() where id = ${id}`);
        }
      }
      const curApts = (
        await this.tx.query<{ apartment_id: string }>(
          sql`select apartment_id from resident_apartments where resident_id = ${id}`,
        )
      ).map((x) => x.apartment_id);
      if (!sameSet(curApts, apartmentIds)) {
        kind ??= 'update';
        await this.tx.query(sql`delete from resident_apartments where resident_id = ${id}`);
        for (const a of apartmentIds) {
          await this.tx.query(
            sql`insert into resident_apartments (resident_id, apartment_id) values (${id}, ${a})`,
          );
        }
      }
      if (r.vehicles) {
        const plates = r.vehicles.map((v, i) => {
          try {
            return canonicalisePlate(v);
          } catch {
            throw new DocumentError(`${at}/vehicles/${i}`, 'not a licence plate (contract §5.1)');
          }
        });
        const wanted = new Map(plates.map((p) => [this.cipher.blindIndex(PURPOSE_PLATES, p), p]));
        const curV = await this.tx.query<{ id: string; plate_index: string }>(
          sql`select id, plate_index from vehicles where resident_id = ${id}`,
        );
        let vehiclesChanged = false;
        for (const v of curV) {
          if (!wanted.has(v.plate_index)) {
            await this.tx.query(sql`delete from vehicles where id = ${v.id}`);
            vehiclesChanged = true;
          }
        }
        for (const [index, plate] of wanted) {
          if (curV.some((v) => v.plate_index === index)) continue;
          const vehicleId = randomUUID();
          await this.tx.query(sql`insert into vehicles (id, resident_id, plate_enc, plate_index) values (${vehicleId}, ${id},
            ${this.cipher.encrypt(PURPOSE_PLATES, vehiclePlateAad(vehicleId), plate)}, ${index})`);
          partners ??= await barrierPartnerKeys(this.tx, this.cipher);
          await writePlateTokens(this.tx, { vehicleId }, plate, partners);
          vehiclesChanged = true;
        }
        if (vehiclesChanged) kind ??= 'update';
      }
      if (kind) await this.journal(kind, 'resident', id, { ref: short(r.ref) }, r.ref);
      else this.unchanged();
    }
  }

  async passes(list: NonNullable<ProvisioningDocument['guestPasses']>) {
    let partners: Awaited<ReturnType<typeof barrierPartnerKeys>> | undefined;
    for (const [gi, g] of list.entries()) {
      this.progress('guestPasses', gi, list.length);
      const at = `/guestPasses/${gi}`;
      const issuer = await this.tx.one<{ id: string }>(
        sql`select id from residents where ref = ${g.issuedBy}`,
      );
      if (!issuer) throw new DocumentError(`${at}/issuedBy`, 'unknown resident');
      let plate: string;
      try {
        plate = canonicalisePlate(g.plate);
      } catch {
        throw new DocumentError(`${at}/plate`, 'not a licence plate (contract §5.1)');
      }
      const deviceIds: string[] = [];
      for (const [i, path] of g.devices.entries()) {
        const [partnerCode, externalId] = path.split('/');
        const dev = await this.tx.one<{ id: string; kind: string }>(sql`select d.id, d.kind from devices d
          join partners p on p.id = d.partner_id where p.code = ${partnerCode} and d.external_id = ${externalId}`);
        if (!dev) throw new DocumentError(`${at}/devices/${i}`, 'unknown device');
        if (dev.kind !== 'barrier')
          throw new DocumentError(`${at}/devices/${i}`, 'a guest pass opens barriers only');
        deviceIds.push(dev.id);
      }
      const from = new Date(g.validFrom);
      const until = new Date(g.validUntil);
      const revokedWanted = g.revoked ?? false;
      const cur = await this.tx.one<{
        id: string;
        issued_by: string;
        plate_enc: string;
        valid_from: Date;
        valid_until: Date;
        revoked_at: Date | null;
      }>(
        sql`select id, issued_by, plate_enc, valid_from, valid_until, revoked_at from guest_passes where ref = ${g.ref}`,
      );
      let id: string;
      let kind: 'create' | 'update' | undefined;
      if (!cur) {
        id = randomUUID();
        kind = 'create';
        await this.tx.query(sql`insert into guest_passes (id, ref, issued_by, plate_enc, valid_from, valid_until, revoked_at)
          values (${id}, ${g.ref}, ${issuer.id}, ${this.cipher.encrypt(PURPOSE_PLATES, passPlateAad(id), plate)},
          ${from}, ${until}, ${revokedWanted ? new Date() : null})`);
        partners ??= await barrierPartnerKeys(this.tx, this.cipher);
        await writePlateTokens(this.tx, { passId: id }, plate, partners);
      } else {
        id = cur.id;
        const curPlate = this.cipher.decrypt(passPlateAad(id), cur.plate_enc);
        if (
          cur.issued_by !== issuer.id ||
          curPlate !== plate ||
          cur.valid_from.getTime() !== from.getTime() ||
          cur.valid_until.getTime() !== until.getTime() ||
          (cur.revoked_at !== null) !== revokedWanted
        ) {
          kind = 'update';
          await this.tx.query(sql`update guest_passes set issued_by = ${issuer.id},
            plate_enc = ${this.cipher.encrypt(PURPOSE_PLATES, passPlateAad(id), plate)}, valid_from = ${from}, valid_until = ${until},
            revoked_at = ${revokedWanted ? (cur.revoked_at ?? new Date()) : null} where id = ${id}`);
          if (curPlate !== plate) {
            partners ??= await barrierPartnerKeys(this.tx, this.cipher);
            await writePlateTokens(this.tx, { passId: id }, plate, partners);
          }
        }
      }
      const curDevices = (
        await this.tx.query<{ device_id: string }>(
          sql`select device_id from guest_pass_devices where pass_id = ${id}`,
        )
      ).map((x) => x.device_id);
      if (!sameSet(curDevices, deviceIds)) {
        kind ??= 'update';
        await this.tx.query(sql`delete from guest_pass_devices where pass_id = ${id}`);
        for (const d of deviceIds)
          await this.tx.query(sql`insert into guest_pass_devices (pass_id, device_id) values (${id}, ${d})`);
      }
      if (kind)
        await this.journal(
          kind,
          'guest-pass',
          id,
          { ref: short(g.ref), residentId: issuer.id, revoked: revokedWanted },
          g.ref,
        );
      else this.unchanged();
    }
  }
}
