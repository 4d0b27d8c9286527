import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { JWK } from 'jose';
import type { PartnerIdentity } from '../../simulator/identity.ts';
import {
  type IntercomSimulator,
  intercomPartnerEntry,
  startIntercomSimulator,
} from '../../simulator/intercom.ts';
import type { Db } from '../../src/db/db.ts';
import { sql } from '../../src/db/sql.ts';
import type { ProvisioningDocument } from '../../src/registry/document.ts';

/** Plates of the standard test world, as cameras would read them (Cyrillic, spaces, suffixes). */
export const PLATES = {
  anna: 'А123ВС77',
  annaLatin: 'a 123 bc 77',
  boris: 'В456ОР199',
  guest: 'Х001ХХ99',
  expiredGuest: 'Е777КХ77',
  unknown: 'М999ММ99',
} as const;

/**
 * The standard world: two complexes, each served by its own barrier partner; Anna lives in North
 * building 1, Boris in South. Anna issued a guest pass valid now at North's main gate, and one that
 * expired yesterday. Partner networks: north from 127.0.0.1 (and the trusted proxy 127.0.0.4),
 * south from 127.0.0.3.
 */
export function standardWorld(ids: Map<string, PartnerIdentity>, now = new Date()): ProvisioningDocument {
  const id = (code: string) => {
    const i = ids.get(code);
    if (!i) throw new Error(`missing identity ${code}`);
    return i;
  };
  const hour = 3600_000;
  const partner = (code: string, complexes: string[], networks: string[]) => ({
    code,
    name: `Barrier vendor ${code}`,
    scopes: ['barrier:decide' as const, 'audit:exchange' as const],
    complexes,
    networks,
    certificates: [id(code).thumbprint],
    signingKeys: [id(code).signing.publicJwk as never],
    encryptionKeys: [id(code).encryption.publicJwk as never],
  });
  return {
    version: 1,
    complexes: [
      {
        code: 'north',
        name: 'ЖК Северный',
        buildings: [
          {
            code: 'b1',
            name: 'Корпус 1',
            entrances: [{ code: 'e1', name: 'Подъезд 1', apartments: ['1', '2'] }],
          },
          {
            code: 'b2',
            name: 'Корпус 2',
            entrances: [{ code: 'e1', name: 'Подъезд 1', apartments: ['10'] }],
          },
        ],
      },
      {
        code: 'south',
        name: 'ЖК Южный',
        buildings: [
          { code: 'b1', name: 'Корпус 1', entrances: [{ code: 'e1', name: 'Подъезд 1', apartments: ['5'] }] },
        ],
      },
    ],
    partners: [
      partner('barrier-north', ['north'], ['127.0.0.1/32', '127.0.0.4/32']),
      partner('barrier-south', ['south'], ['127.0.0.3/32']),
    ],
    devices: [
      {
        partner: 'barrier-north',
        externalId: 'gate-1',
        kind: 'barrier',
        name: 'Main gate',
        complex: 'north',
      },
      {
        partner: 'barrier-north',
        externalId: 'garage-b2',
        kind: 'barrier',
        name: 'Garage B2',
        complex: 'north',
        building: 'b2',
      },
      {
        partner: 'barrier-north',
        externalId: 'gate-off',
        kind: 'barrier',
        name: 'Closed gate',
        complex: 'north',
        enabled: false,
      },
      {
        partner: 'barrier-south',
        externalId: 'gate-s',
        kind: 'barrier',
        name: 'South gate',
        complex: 'south',
      },
    ],
    residents: [
      {
        ref: 'anna',
        fullName: 'Анна Петрова',
        phone: '+79001112233',
        apartments: ['north/b1/e1/1'],
        vehicles: [PLATES.anna],
      },
      {
        ref: 'boris',
        fullName: 'Борис Иванов',
        phone: '+79004445566',
        apartments: ['south/b1/e1/5'],
        vehicles: [PLATES.boris],
      },
    ],
    guestPasses: [
      {
        ref: 'anna-guest',
        issuedBy: 'anna',
        plate: PLATES.guest,
        validFrom: new Date(now.getTime() - hour).toISOString(),
        validUntil: new Date(now.getTime() + hour).toISOString(),
        devices: ['barrier-north/gate-1'],
      },
      {
        ref: 'anna-old-guest',
        issuedBy: 'anna',
        plate: PLATES.expiredGuest,
        validFrom: new Date(now.getTime() - 48 * hour).toISOString(),
        validUntil: new Date(now.getTime() - 24 * hour).toISOString(),
        devices: ['barrier-north/gate-1'],
      },
    ],
  };
}

/**
 * The intercom world: one complex, North, whose entrance b1/e1 has `doors` served by the intercom
 * simulator `sim` as partner intercom-north (from 127.0.0.1); Anna lives in apartment 1.
 */
export function intercomWorld(
  ids: Map<string, PartnerIdentity>,
  sim: IntercomSimulator,
  doors: readonly string[],
): ProvisioningDocument {
  return {
    version: 1,
    complexes: [
      {
        code: 'north',
        name: 'ЖК Северный',
        buildings: [
          {
            code: 'b1',
            name: 'Корпус 1',
            entrances: [{ code: 'e1', name: 'Подъезд 1', apartments: ['1'] }],
          },
        ],
      },
    ],
    partners: [
      intercomPartnerEntry(sim, ids.get('intercom-north')!, {
        complexes: ['north'],
        networks: ['127.0.0.1/32'],
      }),
    ],
    devices: doors.map((externalId) => ({
      partner: 'intercom-north',
      externalId,
      kind: 'door' as const,
      name: `Door ${externalId}`,
      complex: 'north',
      building: 'b1',
      entrance: 'e1',
    })),
    residents: [
      { ref: 'anna', fullName: 'Анна Петрова', phone: '+79001112233', apartments: ['north/b1/e1/1'] },
    ],
  };
}

/**
 * The intercom beside the standard world: the simulator as intercom-north (our client id
 * smart-home-at-intercom) with `doors`, trusting the service CA and response-signing key of `dataDir`;
 * and its provisioning entry, serving `complexes` from 127.0.0.5 (no journal keys). The caller adds the
 * entry and its doors to the document.
 */
export async function standardIntercom(
  ids: Map<string, PartnerIdentity>,
  dataDir: string,
  doors: string[],
  complexes: string[],
): Promise<{ sim: IntercomSimulator; partner: NonNullable<ProvisioningDocument['partners']>[number] }> {
  const id = ids.get('intercom-north')!;
  const smartHomeKey: JWK = JSON.parse(
    await readFile(path.join(dataDir, 'keys', 'response-signing.jwk'), 'utf8'),
  );
  delete smartHomeKey.d;
  const sim = await startIntercomSimulator({
    identity: id,
    clientCa: await readFile(path.join(dataDir, 'pki', 'service-ca.crt'), 'utf8'),
    smartHomeKey,
    clientId: 'smart-home-at-intercom',
    doors,
  });
  return {
    sim,
    partner: {
      code: 'intercom-north',
      name: 'Intercom vendor',
      scopes: ['events:write'],
      complexes,
      networks: ['127.0.0.5/32'],
      certificates: [id.thumbprint],
      signingKeys: [id.signing.publicJwk as never],
      encryptionKeys: [id.encryption.publicJwk as never],
      baseUrl: sim.url,
      outbound: { serverCa: sim.serverCaPem, clientId: sim.clientId },
    },
  };
}

/** A device's id by its partner's code and its external id. */
export async function deviceId(db: Db, partner: string, externalId: string): Promise<string> {
  return (await db.one<{ id: string }>(
    sql`select d.id from devices d join partners p on p.id = d.partner_id
        where p.code = ${partner} and d.external_id = ${externalId}`,
  ))!.id;
}
