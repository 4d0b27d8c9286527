import type { PartnerIdentity } from '../simulator/identity.ts';
import { intercomPartnerEntry } from '../simulator/intercom.ts';
import type { ProvisioningDocument } from '../src/registry/document.ts';

/** The intercom partner of `npm run bench:door`. */
export const DOOR_BENCH_PARTNER = 'bench-intercom';
/** The client id smart-home has at the bench intercom's token endpoint. */
export const DOOR_BENCH_CLIENT_ID = 'smart-home-at-bench-intercom';
/** The mobile app's OAuth client (public, PKCE) and its redirect URI. */
export const DOOR_BENCH_APP = {
  clientId: 'mobile-app',
  redirectUri: 'ru.propdevelopment.smarthome:/oauth/callback',
};
const ENTRANCES = 8;

/** The n-th bench resident's phone (E.164); the last two digits tell the first 100 apart. */
export const benchPhone = (n: number) => `+7900100${String(n).padStart(4, '0')}`;

/** The partner's own ids of the doors: one per entrance. */
export const benchDoors = (): string[] => Array.from({ length: ENTRANCES }, (_, e) => `door-e${e}`);

/**
 * One building of 8 entrances, an intercom door at each entrance, `residents` residents spread over
 * them (each sees exactly one door: their entrance's), and the intercom partner registered for
 * outbound commands at `intercom.url` with its pinned server CA.
 */
export function doorBenchWorld(
  ids: Map<string, PartnerIdentity>,
  residents: number,
  intercom: { url: string; serverCaPem: string },
): ProvisioningDocument {
  const perEntrance = Math.ceil(residents / ENTRANCES);
  return {
    version: 1,
    complexes: [
      {
        code: 'bench',
        name: 'Bench complex',
        buildings: [
          {
            code: 'b0',
            name: 'Building 0',
            entrances: Array.from({ length: ENTRANCES }, (_, e) => ({
              code: `e${e}`,
              name: `Entrance ${e}`,
              apartments: Array.from({ length: perEntrance }, (_, a) => String(a + 1)),
            })),
          },
        ],
      },
    ],
    partners: [
      intercomPartnerEntry({ ...intercom, clientId: DOOR_BENCH_CLIENT_ID }, ids.get(DOOR_BENCH_PARTNER)!, {
        name: 'Bench intercom vendor',
        complexes: ['bench'],
        networks: ['127.0.0.1/32'],
      }),
    ],
    devices: benchDoors().map((externalId, e) => ({
      partner: DOOR_BENCH_PARTNER,
      externalId,
      kind: 'door' as const,
      name: `Entrance ${e} door`,
      complex: 'bench',
      building: 'b0',
      entrance: `e${e}`,
    })),
    residents: Array.from({ length: residents }, (_, n) => ({
      ref: `r${n}`,
      fullName: `Resident ${n}`,
      phone: benchPhone(n),
      apartments: [`bench/b0/e${n % ENTRANCES}/${Math.floor(n / ENTRANCES) + 1}`],
    })),
  };
}
