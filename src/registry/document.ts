import { X509Certificate } from 'node:crypto';
import { type Static, Type as T } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import YAML from 'yaml';
import { HeartbeatDocument } from '../device-health/heartbeat.ts';

/**
 * The provisioning document of `smart-home apply`: one declarative description of complexes, partners,
 * devices, residents, vehicles and guest passes. Objects are keyed by their codes/refs, so applying
 * the same document twice changes nothing. Lists nested in an object (a resident's apartments and
 * vehicles, a partner's networks and keys, a pass's devices) are authoritative for that object.
 * Objects the document does not name are left as they are. See docs/provisioning.md.
 */
const Code = T.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'lower-case code: a-z, 0-9, -' });
const Name = T.String({ minLength: 1, maxLength: 200 });
const Cidr = T.String({ pattern: '^[0-9a-fA-F:.]+(/[0-9]{1,3})?$' });
const Thumbprint = T.String({ pattern: '^[A-Za-z0-9_-]{43}$', description: 'RFC 8705 x5t#S256, base64url' });
const Scope = T.Union([
  T.Literal('barrier:decide'),
  T.Literal('face:decide'),
  T.Literal('events:write'),
  T.Literal('audit:exchange'),
]);

const Ed25519Jwk = T.Object(
  {
    kty: T.Literal('OKP'),
    crv: T.Literal('Ed25519'),
    x: T.String({ pattern: '^[A-Za-z0-9_-]{43}$' }),
    kid: T.String({ minLength: 1, maxLength: 100 }),
    alg: T.Optional(T.Union([T.Literal('EdDSA'), T.Literal('Ed25519')])),
    use: T.Optional(T.Literal('sig')),
  },
  { additionalProperties: false },
);
const EncryptionJwk = T.Object(
  {
    kty: T.Literal('EC'),
    crv: T.Literal('P-256'),
    x: T.String({ pattern: '^[A-Za-z0-9_-]{43}$' }),
    y: T.String({ pattern: '^[A-Za-z0-9_-]{43}$' }),
    kid: T.String({ minLength: 1, maxLength: 100 }),
    alg: T.Optional(T.Literal('ECDH-ES+A256KW')),
    use: T.Optional(T.Literal('enc')),
  },
  { additionalProperties: false },
);

const Entrance = T.Object(
  {
    code: Code,
    name: Name,
    apartments: T.Array(T.String({ pattern: '^[0-9A-Za-zА-Яа-я-]{1,10}$' }), { uniqueItems: true }),
  },
  { additionalProperties: false },
);
const Building = T.Object(
  { code: Code, name: Name, entrances: T.Array(Entrance) },
  { additionalProperties: false },
);
const Complex = T.Object(
  { code: Code, name: Name, buildings: T.Array(Building) },
  { additionalProperties: false },
);

/** PEM certificate(s); in a document file also `{ file: path }`, read by loadDocumentFile. */
const PemCertificates = T.String({
  pattern: '^\\s*-----BEGIN CERTIFICATE-----[\\s\\S]+-----END CERTIFICATE-----\\s*$',
  maxLength: 65536,
  description: 'PEM certificate(s)',
});
const Outbound = T.Object(
  {
    serverCa: PemCertificates,
    clientId: T.String({
      pattern: '^[\\x21-\\x7e]{1,200}$',
      description: "our client_id at the partner's AS",
    }),
    tokenEndpoint: T.Optional(T.String({ pattern: '^https://', maxLength: 2000 })),
  },
  { additionalProperties: false },
);

/** A C2SP signed-note verifier key `name+id+base64(type ‖ key)` (checked further in the service). */
const VerifierKey = (description: string) =>
  T.String({ pattern: '^[\\x21-\\x2a\\x2c-\\x7e]{1,255}\\+[0-9a-f]{8}\\+[A-Za-z0-9+/]{44}$', description });

const Partner = T.Object(
  {
    code: Code,
    name: Name,
    enabled: T.Optional(T.Boolean()),
    scopes: T.Array(Scope, { minItems: 1, uniqueItems: true }),
    complexes: T.Array(Code, {
      uniqueItems: true,
      description: 'the perimeter: codes of complexes it serves',
    }),
    networks: T.Array(Cidr, { minItems: 1, uniqueItems: true }),
    certificates: T.Array(Thumbprint, { minItems: 1, uniqueItems: true }),
    signingKeys: T.Array(Ed25519Jwk, { minItems: 1 }),
    encryptionKeys: T.Array(EncryptionJwk),
    baseUrl: T.Optional(T.String({ pattern: '^https://' })),
    /** Contract §7: how smart-home calls this partner (needs `baseUrl`). See src/outbound/. */
    outbound: T.Optional(Outbound),
    /** Contract §8.2: its journal log's verifier key (Ed25519, type 0x01); the name is the log origin. */
    logKey: T.Optional(VerifierKey("its journal log's key (Ed25519); the name is the log origin")),
    /** Contract §8.2: its witness key (cosignature/v1, type 0x04), that cosigns our checkpoints. */
    witnessKey: T.Optional(VerifierKey('its witness cosigner key (cosignature/v1)')),
    /** Contract §9: heartbeat interval (s) and missed heartbeats before offline; absent: 30 and 3. */
    heartbeat: T.Optional(HeartbeatDocument),
  },
  { additionalProperties: false },
);

/** `complex/building/entrance/apartment` */
const ApartmentPath = T.String({ pattern: '^[a-z0-9-]+/[a-z0-9-]+/[a-z0-9-]+/[0-9A-Za-zА-Яа-я-]{1,10}$' });
/** `partner/external-id` */
const DevicePath = T.String({ pattern: '^[a-z0-9-]+/[^/\\s]{1,100}$' });

const Device = T.Object(
  {
    partner: Code,
    externalId: T.String({ pattern: '^[^/\\s]{1,100}$', description: "the partner's own id of the device" }),
    kind: T.Union([T.Literal('barrier'), T.Literal('door')]),
    name: Name,
    complex: Code,
    building: T.Optional(Code),
    entrance: T.Optional(Code),
    enabled: T.Optional(T.Boolean()),
  },
  { additionalProperties: false },
);

const Resident = T.Object(
  {
    ref: Code,
    fullName: Name,
    phone: T.String({ pattern: '^\\+[1-9][0-9]{7,14}$', description: 'E.164' }),
    apartments: T.Array(ApartmentPath, { uniqueItems: true }),
    vehicles: T.Optional(T.Array(T.String({ minLength: 1, maxLength: 32 }))),
    /** External IdP mode (src/api-auth/): the `sub` its access tokens carry for this resident. */
    externalSubject: T.Optional(T.String({ pattern: '^[\\x21-\\x7e]{1,255}$', description: 'IdP subject' })),
  },
  { additionalProperties: false },
);

const GuestPass = T.Object(
  {
    ref: Code,
    issuedBy: Code,
    plate: T.String({ minLength: 1, maxLength: 32 }),
    validFrom: T.String({ description: 'RFC 3339 date-time' }),
    validUntil: T.String({ description: 'RFC 3339 date-time' }),
    devices: T.Array(DevicePath, { minItems: 1, uniqueItems: true }),
    revoked: T.Optional(T.Boolean()),
  },
  { additionalProperties: false },
);

export const ProvisioningDocument = T.Object(
  {
    version: T.Literal(1),
    complexes: T.Optional(T.Array(Complex)),
    partners: T.Optional(T.Array(Partner)),
    devices: T.Optional(T.Array(Device)),
    residents: T.Optional(T.Array(Resident)),
    guestPasses: T.Optional(T.Array(GuestPass)),
  },
  { additionalProperties: false },
);
export type ProvisioningDocument = Static<typeof ProvisioningDocument>;

export class DocumentError extends Error {
  readonly code = 'ERR_DOCUMENT';
  /** JSON-pointer-like path of the offending field, e.g. `/residents/2/phone`. */
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path || '/'}: ${message}`);
    this.path = path;
  }
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

/** Parses YAML or JSON text and validates it; the first error names the path of the field. */
export function parseDocument(text: string): ProvisioningDocument {
  let data: unknown;
  try {
    data = YAML.parse(text);
  } catch (err) {
    throw new DocumentError('', `not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  return validateDocument(data);
}

export function validateDocument(data: unknown): ProvisioningDocument {
  const first = Value.Errors(ProvisioningDocument, data).First();
  if (first) {
    // Name the field, never echo its value (it may be a phone number or a plate).
    const msg = first.message.replace(/'[^']*'/g, (m) => (m.length > 40 ? "'…'" : m));
    throw new DocumentError(first.path, msg);
  }
  const doc = data as ProvisioningDocument;
  doc.guestPasses?.forEach((p, i) => {
    for (const f of ['validFrom', 'validUntil'] as const) {
      if (!RFC3339.test(p[f]) || Number.isNaN(Date.parse(p[f]))) {
        throw new DocumentError(`/guestPasses/${i}/${f}`, 'expected an RFC 3339 date-time');
      }
    }
    if (Date.parse(p.validUntil) <= Date.parse(p.validFrom)) {
      throw new DocumentError(`/guestPasses/${i}/validUntil`, 'must be after validFrom');
    }
  });
  doc.partners?.forEach((p, i) => {
    if (!p.outbound) return;
    if (!p.baseUrl) throw new DocumentError(`/partners/${i}/baseUrl`, 'required with outbound');
    if (!isCertificateBundle(p.outbound.serverCa)) {
      throw new DocumentError(`/partners/${i}/outbound/serverCa`, 'not a PEM certificate');
    }
  });
  return doc;
}

/** Every PEM block parses as an X.509 certificate (the pinned CA of a partner's server, contract §1). */
function isCertificateBundle(pem: string): boolean {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return false;
  try {
    for (const b of blocks) new X509Certificate(b);
    return true;
  } catch {
    return false;
  }
}

/**
 * Reads a document from a file. Partner credentials may be given as files next to the document
 * (`{ file: partner/client.crt }` for a certificate, `{ file: partner/signing.jwk }` for a key), which is
 * how a partner's onboarding package arrives; they are resolved to thumbprints and JWKs here.
 */
export async function loadDocumentFile(file: string): Promise<ProvisioningDocument> {
  const { readFile } = await import('node:fs/promises');
  const path = await import('node:path');
  const { certThumbprintS256 } = await import('../pki/certificates.ts');
  let data: unknown;
  try {
    data = YAML.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new DocumentError('', `not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  const base = path.dirname(path.resolve(file));
  const partners = (data as { partners?: unknown })?.partners;
  if (Array.isArray(partners)) {
    for (const [pi, p] of partners.entries()) {
      if (!p || typeof p !== 'object') continue;
      const outbound = (p as Record<string, unknown>)['outbound'] as Record<string, unknown> | undefined;
      const ca = outbound?.['serverCa'];
      if (outbound && ca && typeof ca === 'object' && 'file' in ca && Object.keys(ca).length === 1) {
        try {
          outbound['serverCa'] = await readFile(
            path.resolve(base, String((ca as { file: unknown }).file)),
            'utf8',
          );
        } catch {
          throw new DocumentError(`/partners/${pi}/outbound/serverCa/file`, 'cannot read the file');
        }
      }
      for (const field of ['logKey', 'witnessKey'] as const) {
        // A verifier key file holds the one-line `name+id+key` string (what `smart-home keys` prints).
        const v = (p as Record<string, unknown>)[field];
        if (!v || typeof v !== 'object' || !('file' in v) || Object.keys(v).length !== 1) continue;
        try {
          (p as Record<string, unknown>)[field] = (
            await readFile(path.resolve(base, String((v as { file: unknown }).file)), 'utf8')
          ).trim();
        } catch {
          throw new DocumentError(`/partners/${pi}/${field}/file`, 'cannot read the file');
        }
      }
      for (const field of ['certificates', 'signingKeys', 'encryptionKeys'] as const) {
        const list = (p as Record<string, unknown>)[field];
        if (!Array.isArray(list)) continue;
        for (const [i, item] of list.entries()) {
          if (!item || typeof item !== 'object' || !('file' in item) || Object.keys(item).length !== 1)
            continue;
          const at = `/partners/${pi}/${field}/${i}/file`;
          let text: string;
          try {
            text = await readFile(path.resolve(base, String((item as { file: unknown }).file)), 'utf8');
          } catch {
            throw new DocumentError(at, 'cannot read the file');
          }
          try {
            list[i] = field === 'certificates' ? certThumbprintS256(text) : JSON.parse(text);
          } catch {
            throw new DocumentError(
              at,
              field === 'certificates' ? 'not a PEM certificate' : 'not a JSON Web Key',
            );
          }
        }
      }
    }
  }
  return validateDocument(data);
}
