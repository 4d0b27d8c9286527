import type { PartnerIdentity } from '../simulator/identity.ts';
import type { ProvisioningDocument } from '../src/registry/document.ts';

const LETTERS = 'ABEKMHOPCTYX';

/** The n-th private-car plate (letter, 3 digits, 2 letters, region), deterministic. */
export function benchPlate(n: number): string {
  const l = (k: number) => LETTERS[k % LETTERS.length];
  const digits = String((n % 999) + 1).padStart(3, '0');
  return `${l(n)}${digits}${l(Math.floor(n / 12))}${l(Math.floor(n / 144))}${77 + (Math.floor(n / 1728) % 20)}`;
}

/**
 * A complex of `residents` apartments (10 buildings × 4 entrances), one car per resident, a guest
 * pass per 10 residents, one barrier partner with a complex-wide gate.
 */
export function barrierBenchWorld(
  ids: Map<string, PartnerIdentity>,
  residents: number,
): ProvisioningDocument {
  const id = ids.get('bench-barrier')!;
  const perEntrance = Math.ceil(residents / 40);
  const buildings = Array.from({ length: 10 }, (_, b) => ({
    code: `b${b}`,
    name: `Building ${b}`,
    entrances: Array.from({ length: 4 }, (_, e) => ({
      code: `e${e}`,
      name: `Entrance ${e}`,
      apartments: Array.from({ length: perEntrance }, (_, a) => String(a + 1)),
    })),
  }));
  const now = Date.now();
  return {
    version: 1,
    complexes: [{ code: 'bench', name: 'Bench complex', buildings }],
    partners: [
      {
        code: 'bench-barrier',
        name: 'Bench barrier vendor',
        scopes: ['barrier:decide'],
        complexes: ['bench'],
        networks: ['127.0.0.1/32', '::1/128'],
        certificates: [id.thumbprint],
        signingKeys: [id.signing.publicJwk as never],
        encryptionKeys: [id.encryption.publicJwk as never],
      },
    ],
    devices: [
      { partner: 'bench-barrier', externalId: 'gate-1', kind: 'barrier', name: 'Gate', complex: 'bench' },
    ],
    residents: Array.from({ length: residents }, (_, n) => ({
      ref: `r${n}`,
      fullName: `Resident ${n}`,
      phone: `+7900${String(n).padStart(7, '0')}`,
      apartments: [`bench/b${n % 10}/e${Math.floor(n / 10) % 4}/${(Math.floor(n / 40) % perEntrance) + 1}`],
      vehicles: [benchPlate(n)],
    })),
    guestPasses: Array.from({ length: Math.floor(residents / 10) }, (_, n) => ({
      ref: `g${n}`,
      issuedBy: `r${n * 10}`,
      plate: benchPlate(residents + n),
      validFrom: new Date(now - 3_600_000).toISOString(),
      validUntil: new Date(now + 86_400_000).toISOString(),
      devices: ['bench-barrier/gate-1'],
    })),
  };
}
