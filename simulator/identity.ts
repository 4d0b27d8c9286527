import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';
import {
  certThumbprintS256,
  createCsr,
  issueClientCertFromCsr,
  type KeyPairPem,
} from '../src/pki/certificates.ts';
import { cosigner, type NoteSigner, noteSigner } from '../src/tlog/note.ts';

/**
 * Everything a partner holds about itself: its TLS client certificate (issued by smart-home's
 * partner-issuing CA from the partner's own CSR), its Ed25519 request-signing key and its P-256
 * encryption key (the recipient of the key ceremony's JWE), and the Ed25519 keys of its own journal log
 * and of its witness (contract §8). Private keys never leave the partner.
 */
export interface PartnerIdentity {
  code: string;
  certPem: string;
  keyPem: string;
  thumbprint: string;
  signing: { kid: string; privateKey: KeyObject; publicJwk: JWK & { kid: string } };
  encryption: { privateJwk: JWK; publicJwk: JWK & { kid: string } };
  /**
   * Contract §8.1: the partner's own journal log — its origin (`<code>.partner.test/journal`, also the
   * key name) and the Ed25519 key that signs its checkpoints.
   */
  journal: { origin: string; privateKey: KeyObject };
  /** Contract §8.2: the key the partner cosigns smart-home's checkpoints with (cosignature/v1). */
  witness: { name: string; privateKey: KeyObject };
}

/** The log origin of a partner's journal (the simulator's naming). */
export const journalOrigin = (code: string): string => `${code}.partner.test/journal`;
/** The key name of a partner's witness cosignatures. */
export const witnessName = (code: string): string => `${code}.partner.test/witness`;

type LogKeys = Pick<PartnerIdentity, 'journal' | 'witness'>;

/** New journal and witness keys for a partner (contract §8). */
export function newLogKeys(code: string): LogKeys {
  return {
    journal: { origin: journalOrigin(code), privateKey: generateKeyPairSync('ed25519').privateKey },
    witness: { name: witnessName(code), privateKey: generateKeyPairSync('ed25519').privateKey },
  };
}

/** The signer of the partner's journal checkpoints. */
export const journalSigner = (id: LogKeys): NoteSigner =>
  noteSigner(id.journal.origin, id.journal.privateKey);

/** The partner's witness cosigner; `now` is its clock (ms). */
export const witnessCosigner = (id: LogKeys, now?: () => number): NoteSigner =>
  cosigner(id.witness.name, id.witness.privateKey, now);

/** The C2SP verifier key string of the partner's journal (what it hands smart-home at onboarding). */
export const journalVerifierKey = (id: LogKeys): string => journalSigner(id).verifierKey;

/** The C2SP verifier key string of the partner's witness cosignatures (type 0x04). */
export const witnessVerifierKey = (id: LogKeys): string => witnessCosigner(id).verifierKey;

/** A new key pair as JWKs, with the RFC 7638 thumbprint as kid. */
export async function newJwkPair(kind: 'ed25519' | 'p256') {
  const { privateKey } =
    kind === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const privateJwk = privateKey.export({ format: 'jwk' }) as JWK;
  const { d: _d, ...pub } = privateJwk;
  const kid = await calculateJwkThumbprint(pub, 'sha256');
  return { privateKey, privateJwk: { ...privateJwk, kid }, publicJwk: { ...pub, kid } };
}

/** A partner's onboarding in one call: keys, CSR, and the certificate our CA issues from it. */
export async function createPartnerIdentity(code: string, issuingCa: KeyPairPem): Promise<PartnerIdentity> {
  const csr = await createCsr({ commonName: code });
  const certPem = await issueClientCertFromCsr(issuingCa, csr.csrPem, {});
  const signing = await newJwkPair('ed25519');
  const encryption = await newJwkPair('p256');
  return {
    code,
    certPem,
    keyPem: csr.keyPem,
    thumbprint: certThumbprintS256(certPem),
    signing: { kid: signing.publicJwk.kid, privateKey: signing.privateKey, publicJwk: signing.publicJwk },
    encryption: { privateJwk: encryption.privateJwk, publicJwk: encryption.publicJwk },
    ...newLogKeys(code),
  };
}

/**
 * Stores an identity in a directory: private files 0600, and `public/` with what the partner hands
 * to PropDevelopment at onboarding (certificate, signing and encryption public keys).
 */
export async function saveIdentity(dir: string, id: PartnerIdentity): Promise<void> {
  await mkdir(path.join(dir, 'public'), { recursive: true, mode: 0o700 });
  const priv = { mode: 0o600 };
  await writeFile(path.join(dir, 'client.key'), id.keyPem, priv);
  await writeFile(
    path.join(dir, 'signing.jwk'),
    JSON.stringify(id.signing.privateKey.export({ format: 'jwk' }), null, 2),
    priv,
  );
  await writeFile(path.join(dir, 'encryption.jwk'), JSON.stringify(id.encryption.privateJwk, null, 2), priv);
  await writeFile(path.join(dir, 'public', 'client.crt'), id.certPem);
  await writeFile(path.join(dir, 'public', 'signing.jwk'), JSON.stringify(id.signing.publicJwk, null, 2));
  await writeFile(
    path.join(dir, 'public', 'encryption.jwk'),
    JSON.stringify(id.encryption.publicJwk, null, 2),
  );
  await writeFile(path.join(dir, 'code'), id.code);
  await saveLogKeys(dir, id);
}

const jwkOf = (key: KeyObject): string => JSON.stringify(key.export({ format: 'jwk' }), null, 2);

/** Writes the journal and witness keys: private JWKs 0600, verifier key strings under `public/`. */
export async function saveLogKeys(dir: string, id: LogKeys): Promise<void> {
  await mkdir(path.join(dir, 'public'), { recursive: true, mode: 0o700 });
  const priv = { mode: 0o600 };
  await writeFile(path.join(dir, 'journal.jwk'), jwkOf(id.journal.privateKey), priv);
  await writeFile(path.join(dir, 'witness.jwk'), jwkOf(id.witness.privateKey), priv);
  await writeFile(path.join(dir, 'journal-origin'), id.journal.origin);
  await writeFile(path.join(dir, 'public', 'journal.vkey'), `${journalVerifierKey(id)}\n`);
  await writeFile(path.join(dir, 'public', 'witness.vkey'), `${witnessVerifierKey(id)}\n`);
}

export async function loadIdentity(dir: string): Promise<PartnerIdentity> {
  const read = (f: string) => readFile(path.join(dir, f), 'utf8');
  const certPem = await read('public/client.crt');
  const signingPub = JSON.parse(await read('public/signing.jwk')) as JWK & { kid: string };
  const encryptionPub = JSON.parse(await read('public/encryption.jwk')) as JWK & { kid: string };
  const code = (await read('code')).trim();
  const privateJwk = (f: string) => createPrivateKey({ key: JSON.parse(f), format: 'jwk' });
  // Identities saved before the journal keys existed get them now, once, and keep them.
  const journalJwk = await read('journal.jwk').catch(() => undefined);
  const witnessJwk = await read('witness.jwk').catch(() => undefined);
  const origin = (await read('journal-origin').catch(() => journalOrigin(code))).trim();
  const fresh = journalJwk === undefined || witnessJwk === undefined;
  const id: PartnerIdentity = {
    code,
    certPem,
    keyPem: await read('client.key'),
    thumbprint: certThumbprintS256(certPem),
    signing: {
      kid: signingPub.kid,
      privateKey: createPrivateKey({ key: JSON.parse(await read('signing.jwk')), format: 'jwk' }),
      publicJwk: signingPub,
    },
    encryption: { privateJwk: JSON.parse(await read('encryption.jwk')) as JWK, publicJwk: encryptionPub },
    journal: {
      origin,
      privateKey: journalJwk ? privateJwk(journalJwk) : generateKeyPairSync('ed25519').privateKey,
    },
    witness: {
      name: witnessName(code),
      privateKey: witnessJwk ? privateJwk(witnessJwk) : generateKeyPairSync('ed25519').privateKey,
    },
  };
  if (fresh) await saveLogKeys(dir, id);
  return id;
}
