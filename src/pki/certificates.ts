import 'reflect-metadata';
import { createHash, X509Certificate as NodeX509, randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

// @peculiar/x509 speaks WebCrypto; Node's implementation is the provider (no native addon).
x509.cryptoProvider.set(webcrypto as never);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** A certificate and its PKCS#8 private key, both PEM (what `node:tls` takes). */
export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

export class PkiError extends Error {
  readonly code: 'ERR_PKI_CSR_INVALID' | 'ERR_PKI_KEY' | 'ERR_PKI_CERT';
  constructor(code: PkiError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** Marks every certificate this module issues for development, so production can refuse them. */
export const DEV_ORGANIZATION = 'smart-home development';
const DAY = 86_400_000;

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as CryptoKeyPair;
}

async function keyToPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function importSigningKey(pem: string): Promise<CryptoKey> {
  try {
    return await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), EC, false, ['sign']);
  } catch {
    throw new PkiError('ERR_PKI_KEY', 'the CA key is not a P-256 PKCS#8 private key');
  }
}

/** Random positive 128-bit serial (RFC 5280 §4.1.2.2: unique, ≤ 20 octets). */
const serial = () => {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString('hex');
};

// A few minutes in the past, so a peer whose clock is a little behind accepts a fresh certificate.
const notBefore = () => new Date(Date.now() - 5 * 60_000);

const nameOf = (cn: string, o?: string) =>
  o ? `CN=${escapeDn(cn)}, O=${escapeDn(o)}` : `CN=${escapeDn(cn)}`;
function escapeDn(v: string): string {
  return v.replace(/([,+"\\<>;=])/g, '\\$1');
}

export async function createCa(opts: {
  commonName: string;
  validityDays?: number;
  organization?: string;
}): Promise<KeyPairPem> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: nameOf(opts.commonName, opts.organization ?? DEV_ORGANIZATION),
    notBefore: notBefore(),
    notAfter: new Date(Date.now() + (opts.validityDays ?? 3650) * DAY),
    keys: keys as never,
    signingAlgorithm: SIGN,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as never),
    ],
  } as never);
  return { certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

async function issue(
  ca: KeyPairPem,
  subjectPublicKey: CryptoKey | x509.PublicKey,
  opts: {
    subject: string;
    validityDays: number;
    usage: 'server' | 'client';
    dnsNames?: string[];
    ipAddresses?: string[];
  },
): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const signingKey = await importSigningKey(ca.keyPem);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
    new x509.ExtendedKeyUsageExtension(
      [opts.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(subjectPublicKey as never),
    await x509.AuthorityKeyIdentifierExtension.create(caCert),
  ];
  const names = [
    ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: opts.subject,
    issuer: caCert.subject,
    notBefore: notBefore(),
    notAfter: new Date(Date.now() + opts.validityDays * DAY),
    publicKey: subjectPublicKey as never,
    signingKey: signingKey as never,
    signingAlgorithm: SIGN,
    extensions,
  });
  return cert.toString('pem');
}

export async function issueServerCert(
  ca: KeyPairPem,
  opts: { commonName: string; dnsNames?: string[]; ipAddresses?: string[]; validityDays?: number },
): Promise<KeyPairPem> {
  const keys = await newKeys();
  const certPem = await issue(ca, keys.publicKey, {
    subject: nameOf(opts.commonName, DEV_ORGANIZATION),
    validityDays: opts.validityDays ?? 397,
    usage: 'server',
    dnsNames: opts.dnsNames ?? [],
    ipAddresses: opts.ipAddresses ?? [],
  });
  return { certPem, keyPem: await keyToPem(keys.privateKey) };
}

/** Development and tests only: a partner's key pair and certificate made here. */
export async function issueClientCert(
  ca: KeyPairPem,
  opts: { commonName: string; organization?: string; validityDays?: number },
): Promise<KeyPairPem> {
  const keys = await newKeys();
  const certPem = await issue(ca, keys.publicKey, {
    subject: nameOf(opts.commonName, opts.organization ?? DEV_ORGANIZATION),
    validityDays: opts.validityDays ?? 365,
    usage: 'client',
  });
  return { certPem, keyPem: await keyToPem(keys.privateKey) };
}

/** What a partner runs: a new key (kept) and a PKCS#10 request (sent to us). */
export async function createCsr(opts: { commonName: string }): Promise<{ csrPem: string; keyPem: string }> {
  const keys = await newKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: nameOf(opts.commonName),
    keys: keys as never,
    signingAlgorithm: SIGN,
  });
  return { csrPem: csr.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

/**
 * Issues a partner's client certificate from its CSR. The CSR's own signature is checked (proof that
 * the requester holds the key); only its public key and (unless overridden) its CN are taken —
 * requested extensions are never trusted: the certificate is for TLS client authentication only.
 */
export async function issueClientCertFromCsr(
  ca: KeyPairPem,
  csrPem: string,
  opts: { commonName?: string; validityDays?: number } = {},
): Promise<string> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch {
    throw new PkiError('ERR_PKI_CSR_INVALID', 'not a PEM PKCS#10 certificate request');
  }
  const alg = csr.publicKey.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  const okKey =
    (alg.name === 'ECDSA' && alg.namedCurve === 'P-256') ||
    alg.name === 'Ed25519' ||
    (alg.name === 'RSASSA-PKCS1-v1_5' && (alg.modulusLength ?? 0) >= 2048);
  if (!okKey)
    throw new PkiError('ERR_PKI_CSR_INVALID', 'the CSR key must be P-256, Ed25519 or RSA ≥ 2048 bits');
  let valid = false;
  try {
    valid = await csr.verify();
  } catch {
    valid = false;
  }
  if (!valid) throw new PkiError('ERR_PKI_CSR_INVALID', 'the CSR signature does not verify');
  const cn = opts.commonName ?? csr.subjectName.getField('CN')[0];
  if (!cn) throw new PkiError('ERR_PKI_CSR_INVALID', 'the CSR has no common name and none was given');
  return issue(ca, csr.publicKey, {
    subject: nameOf(cn),
    validityDays: opts.validityDays ?? 365,
    usage: 'client',
  });
}

/** RFC 8705 §3.1 `x5t#S256`: base64url (no padding) of the SHA-256 of the certificate's DER. */
export function certThumbprintS256(certPemOrDer: string | Uint8Array): string {
  const der = typeof certPemOrDer === 'string' ? new NodeX509(certPemOrDer).raw : certPemOrDer;
  return createHash('sha256').update(der).digest('base64url');
}

export interface CertInfo {
  subjectCommonName: string | undefined;
  issuerCommonName: string | undefined;
  notBefore: Date;
  notAfter: Date;
  serial: string;
  thumbprint: string;
  isCa: boolean;
}

export function certInfo(certPem: string): CertInfo {
  let c: NodeX509;
  try {
    c = new NodeX509(certPem);
  } catch {
    throw new PkiError('ERR_PKI_CERT', 'not a PEM certificate');
  }
  const cn = (dn: string) => /(?:^|\n)CN=([^\n]*)/.exec(dn)?.[1];
  return {
    subjectCommonName: cn(c.subject),
    issuerCommonName: cn(c.issuer),
    notBefore: new Date(c.validFrom),
    notAfter: new Date(c.validTo),
    serial: c.serialNumber,
    thumbprint: createHash('sha256').update(c.raw).digest('base64url'),
    isCa: c.ca,
  };
}
