import { createPublicKey, type KeyObject } from 'node:crypto';
import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { type NoteVerifier, verifierFromKeyString } from '../tlog/note.ts';
import { CidrSet } from '../util/cidr.ts';

export interface DeviceInfo {
  id: string;
  partnerId: string;
  externalId: string;
  kind: 'barrier' | 'door';
  complexId: string;
  buildingId: string | null;
  entranceId: string | null;
  enabled: boolean;
}

export interface PartnerInfo {
  id: string;
  code: string;
  enabled: boolean;
  scopes: ReadonlySet<string>;
  networks: CidrSet;
  certThumbprints: readonly string[];
  signingKeys: ReadonlyMap<string, KeyObject>;
  /** Complex ids of the partner's perimeter. */
  perimeter: ReadonlySet<string>;
  /** Plate key ids not yet retired (contract §5.2). */
  plateKids: ReadonlySet<string>;
  /** Devices by the partner's own id. */
  devices: ReadonlyMap<string, DeviceInfo>;
  /** How smart-home calls this partner (contract §7), when it receives commands. */
  outbound: OutboundEndpoint | undefined;
  /** Contract §8.2: the verifier of the partner's journal checkpoints; its name is the log origin. */
  log: RegisteredNoteKey | undefined;
  /** Contract §8.2: the verifier of the partner's cosignatures (cosignature/v1) of our checkpoints. */
  witness: RegisteredNoteKey | undefined;
}

/** A signed-note verifier key as registered (`name+id+key`) and its verifier. */
export interface RegisteredNoteKey {
  /** The key's name: for a log key, the log's origin line. */
  name: string;
  key: string;
  verifier: NoteVerifier;
}

export interface OutboundEndpoint {
  baseUrl: string;
  /** `{baseUrl}/oauth/token` unless registered otherwise. */
  tokenEndpoint: string;
  /** Our client_id at the partner's authorization server. */
  clientId: string;
  /** PEM of the CA(s) pinned for the partner's server certificate. */
  serverCa: string;
}

/** The registry checked the key when it was stored; one that no longer parses counts as none. */
function noteKey(key: string | null): RegisteredNoteKey | undefined {
  if (key === null) return undefined;
  try {
    const verifier = verifierFromKeyString(key);
    return { name: verifier.name, key, verifier };
  } catch {
    return undefined;
  }
}

/**
 * An immutable in-memory view of every partner: what the partner listener needs on each request
 * (certificate → partner, allowlists, signing keys, perimeter, devices) without a database round trip.
 * Each instance reloads it after its own changes and every `registry.refreshMs`, so a change made
 * through another instance takes effect within that period.
 */
export class PartnerDirectory {
  readonly byId: ReadonlyMap<string, PartnerInfo>;
  readonly byCode: ReadonlyMap<string, PartnerInfo>;
  readonly byThumbprint: ReadonlyMap<string, PartnerInfo>;
  /** Partners by the origin of their journal log (contract §8.2). */
  readonly byLogOrigin: ReadonlyMap<string, PartnerInfo>;
  /** Union of every partner's networks (and trusted proxies): the pre-TLS connection filter. */
  readonly anyNetwork: CidrSet;
  readonly loadedAt: Date;

  constructor(partners: PartnerInfo[], extraCidrs: readonly string[] = []) {
    this.byId = new Map(partners.map((p) => [p.id, p]));
    this.byCode = new Map(partners.map((p) => [p.code, p]));
    this.byThumbprint = new Map(partners.flatMap((p) => p.certThumbprints.map((t) => [t, p] as const)));
    this.byLogOrigin = new Map(partners.flatMap((p) => (p.log ? [[p.log.name, p] as const] : [])));
    this.anyNetwork = new CidrSet([...partners.flatMap((p) => p.networks.cidrs), ...extraCidrs]);
    this.loadedAt = new Date();
  }

  static async load(db: Queryable, extraCidrs: readonly string[] = []): Promise<PartnerDirectory> {
    const partners = await db.query<{
      id: string;
      code: string;
      enabled: boolean;
      scopes: string[];
      base_url: string | null;
      server_ca_pem: string | null;
      outbound_client_id: string | null;
      token_endpoint: string | null;
      log_key: string | null;
      witness_key: string | null;
    }>(
      sql`select id, code, enabled, scopes, base_url, server_ca_pem, outbound_client_id, token_endpoint,
            log_key, witness_key from partners`,
    );
    const group = async <T extends { partner_id: string }>(q: ReturnType<typeof sql>) => {
      const m = new Map<string, T[]>();
      for (const r of await db.query<T>(q)) {
        const list = m.get(r.partner_id) ?? [];
        list.push(r);
        m.set(r.partner_id, list);
      }
      return m;
    };
    const nets = await group<{ partner_id: string; cidr: string }>(
      sql`select partner_id, cidr::text as cidr from partner_networks`,
    );
    const certs = await group<{ partner_id: string; thumbprint: string }>(
      sql`select partner_id, thumbprint from partner_certificates`,
    );
    const keys = await group<{ partner_id: string; kid: string; public_jwk: unknown }>(
      sql`select partner_id, kid, public_jwk from partner_signing_keys`,
    );
    const perim = await group<{ partner_id: string; complex_id: string }>(
      sql`select partner_id, complex_id from partner_complexes`,
    );
    const kids = await group<{ partner_id: string; kid: string }>(
      sql`select partner_id, kid from partner_secrets where retired_at is null`,
    );
    const devices = await group<{
      partner_id: string;
      id: string;
      external_id: string;
      kind: 'barrier' | 'door';
      complex_id: string;
      building_id: string | null;
      entrance_id: string | null;
      enabled: boolean;
    }>(
      sql`select partner_id, id, external_id, kind, complex_id, building_id, entrance_id, enabled from devices`,
    );

    const infos = partners.map((p): PartnerInfo => {
      const jwk = (j: unknown) => (typeof j === 'string' ? JSON.parse(j) : j) as Record<string, string>;
      return {
        id: p.id,
        code: p.code,
        enabled: p.enabled,
        scopes: new Set(p.scopes),
        networks: new CidrSet((nets.get(p.id) ?? []).map((n) => n.cidr)),
        certThumbprints: (certs.get(p.id) ?? []).map((c) => c.thumbprint),
        signingKeys: new Map(
          (keys.get(p.id) ?? []).map((k) => [
            k.kid,
            createPublicKey({ key: jwk(k.public_jwk), format: 'jwk' }),
          ]),
        ),
        perimeter: new Set((perim.get(p.id) ?? []).map((x) => x.complex_id)),
        plateKids: new Set((kids.get(p.id) ?? []).map((k) => k.kid)),
        devices: new Map(
          (devices.get(p.id) ?? []).map((d) => [
            d.external_id,
            {
              id: d.id,
              partnerId: p.id,
              externalId: d.external_id,
              kind: d.kind,
              complexId: d.complex_id,
              buildingId: d.building_id,
              entranceId: d.entrance_id,
              enabled: d.enabled,
            },
          ]),
        ),
        outbound:
          p.base_url && p.server_ca_pem && p.outbound_client_id
            ? {
                baseUrl: p.base_url.replace(/\/+$/, ''),
                tokenEndpoint: p.token_endpoint ?? `${p.base_url.replace(/\/+$/, '')}/oauth/token`,
                clientId: p.outbound_client_id,
                serverCa: p.server_ca_pem,
              }
            : undefined,
        log: noteKey(p.log_key),
        witness: noteKey(p.witness_key),
      };
    });
    return new PartnerDirectory(infos, extraCidrs);
  }

  /**
   * A device of this partner inside its perimeter, or undefined. Callers answer 404 for undefined
   * whatever the reason (unknown id, another partner's device, outside the perimeter), so ids can't be
   * probed (DESIGN §2).
   */
  device(partner: PartnerInfo, externalId: string, kind: DeviceInfo['kind']): DeviceInfo | undefined {
    const d = partner.devices.get(externalId);
    if (!d || d.kind !== kind || !partner.perimeter.has(d.complexId)) return undefined;
    return d;
  }
}
