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

/**
 * Everything a partner holds about itself: its TLS client certificate (issued by smart-home's
 * partner-issuing CA from the partner's own CSR), its Ed25519 request-signing key and its P-256
 * encryption key (the recipient of the key ceremony's JWE). Private keys never leave the partner.
 */
export interface PartnerIdentity {
  code: string;
  certPem: string;
  keyPem: string;
  thumbprint: string;
  signing: { kid: string; privateKey: KeyObject; publicJwk: JWK & { kid: string } };
  encryption: { privateJwk: JWK; publicJwk: JWK & { kid: string } };
}

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
}

export async function loadIdentity(dir: string): Promise<PartnerIdentity> {
  const read = (f: string) => readFile(path.join(dir, f), 'utf8');
  const certPem = await read('public/client.crt');
  const signingPub = JSON.parse(await read('public/signing.jwk')) as JWK & { kid: string };
  const encryptionPub = JSON.parse(await read('public/encryption.jwk')) as JWK & { kid: string };
  return {
    code: (await read('code')).trim(),
    certPem,
    keyPem: await read('client.key'),
    thumbprint: certThumbprintS256(certPem),
    signing: {
      kid: signingPub.kid,
      privateKey: createPrivateKey({ key: JSON.parse(await read('signing.jwk')), format: 'jwk' }),
      publicJwk: signingPub,
    },
    encryption: { privateJwk: JSON.parse(await read('encryption.jwk')) as JWK, publicJwk: encryptionPub },
  };
}
