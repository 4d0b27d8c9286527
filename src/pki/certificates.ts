import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  X509Certificate as NodeX509,
  randomBytes,
  type webcrypto,
} from 'node:crypto';
import { isIP } from 'node:net';
import { x509 } from './x509.ts';

/** A certificate and its PKCS#8 private key, both PEM (what `node:tls` and `createPrivateKey` take). */
export type KeyPairPem = { certPem: string; keyPem: string };

export type PkiErrorCode = 'ERR_PKI_CSR_INVALID' | 'ERR_PKI_KEY' | 'ERR_PKI_CERT' | 'ERR_PKI_INPUT';

/** Every failure of this module carries a stable `code`, so callers never match on messages. */
export class PkiError extends Error {
  readonly code: PkiErrorCode;
  constructor(code: PkiErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'PkiError';
    this.code = code;
  }
}

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGN = { name: 'ECDSA', hash: 'SHA-256' } as const;
/** Marks every certificate the development PKI issues, so production configuration can refuse them. */
export const DEV_ORGANIZATION = 'smart-home development';
const DAY = 86_400_000;
/** RFC 5280 Appendix A.1: ub-common-name. */
const MAX_CN = 64;

async function newKeys(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey(EC, true, ['sign', 'verify']);
}

async function keyToPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY');
}

/** Random, positive, exactly 16 octets (RFC 5280 §4.1.2.2: unique, positive, ≤ 20 octets). */
export function randomSerial(): string {
  const b = randomBytes(16);
  // Top bit clear keeps it positive without a 0x00 pad; the next bit set keeps the DER INTEGER at
  // 16 octets (a leading 0x00 would be stripped for minimal encoding). 126 random bits remain.
  b[0] = ((b[0] ?? 0) & 0x3f) | 0x40;
  return b.toString('hex');
}

// A few minutes in the past, so a peer whose clock lags a little accepts a certificate issued just now.
const notBefore = () => new Date(Date.now() - 5 * 60_000);

function days(value: number | undefined, fallback: number): number {
  const d = value ?? fallback;
  if (!Number.isFinite(d) || d <= 0)
    throw new PkiError('ERR_PKI_INPUT', `validityDays must be > 0, got ${d}`);
  return d;
}

function checkCommonName(cn: string, code: PkiErrorCode): string {
  // Control characters would survive into logs and text renderings of the DN.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting them is the point
  if (cn.trim() === '' || cn.length > MAX_CN || /[\u0000-\u001f\u007f]/.test(cn)) {
    throw new PkiError(code, `the common name must be 1 to ${MAX_CN} printable characters`);
  }
  return cn;
}

/**
 * Built as JSON rather than an RFC 4514 string, so a value (e.g. a CN taken from a partner's CSR) can
 * never smuggle in another attribute through `,` `+` `=`, a leading `#` or escaping tricks.
 */
function dn(commonName: string, organization?: string): x509.JsonName {
  return organization ? [{ O: [organization] }, { CN: [commonName] }] : [{ CN: [commonName] }];
}

function spkiDer(key: KeyObject): Buffer {
  return key.export({ type: 'spki', format: 'der' });
}

type Issuer = { cert: x509.X509Certificate; signingKey: CryptoKey };

/** Checks that the CA material is usable before signing anything with it. */
async function loadIssuer(ca: KeyPairPem): Promise<Issuer> {
  let cert: x509.X509Certificate;
  try {
    cert = new x509.X509Certificate(ca.certPem);
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT', 'the CA certificate is not a PEM X.509 certificate', { cause: err });
  }
  // RFC 5280 §4.2.1.9 / §4.2.1.3: only a certificate with cA=TRUE and keyCertSign may sign others.
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (!bc?.ca || (ku && !(ku.usages & x509.KeyUsageFlags.keyCertSign))) {
    throw new PkiError('ERR_PKI_CERT', 'the CA certificate is not a CA (basicConstraints cA / keyCertSign)');
  }
  if (cert.notAfter.getTime() <= Date.now()) {
    throw new PkiError('ERR_PKI_CERT', `the CA certificate expired on ${cert.notAfter.toISOString()}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(ca.keyPem);
  } catch (err) {
    throw new PkiError('ERR_PKI_KEY', 'the CA key is not a PEM private key', { cause: err });
  }
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw new PkiError('ERR_PKI_KEY', 'the CA key must be ECDSA P-256');
  }
  // Signing with a key that is not the certificate's would yield certificates that chain to nothing.
  if (!spkiDer(createPublicKey(privateKey)).equals(Buffer.from(cert.publicKey.rawData))) {
    throw new PkiError('ERR_PKI_KEY', 'the CA key does not belong to the CA certificate');
  }
  return { cert, signingKey: privateKey.toCryptoKey(EC, false, ['sign']) };
}

export async function createCa(opts: {
  commonName: string;
  validityDays?: number;
  /** Defaults to the development marker: a CA made here is a development CA unless said otherwise. */
  organization?: string;
}): Promise<KeyPairPem> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: dn(checkCommonName(opts.commonName, 'ERR_PKI_INPUT'), opts.organization ?? DEV_ORGANIZATION),
    notBefore: notBefore(),
    notAfter: new Date(Date.now() + days(opts.validityDays, 3650) * DAY),
    keys,
    signingAlgorithm: SIGN,
    extensions: [
      // RFC 5280 §4.2.1.9: critical in CA certificates; pathLen 0 = it signs end-entity certificates only.
      new x509.BasicConstraintsExtension(true, 0, true),
      // RFC 5280 §4.2.1.3: SHOULD be critical.
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      // RFC 5280 §4.2.1.2: MUST appear in CA certificates, so issued certificates can name it (AKI).
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

async function issue(
  ca: KeyPairPem,
  subjectPublicKey: x509.PublicKeyType,
  opts: {
    subject: x509.JsonName;
    validityDays: number;
    usage: 'server' | 'client';
    dnsNames?: string[];
    ipAddresses?: string[];
  },
): Promise<string> {
  const issuer = await loadIssuer(ca);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    // digitalSignature only: all TLS 1.3 needs (RFC 8446 §4.4.2.2), and the one usage valid for every key
    // type we certify — RFC 8410 §5 forbids keyAgreement on Ed25519 keys.
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    // One purpose per certificate (RFC 5280 §4.2.1.12): a partner's client certificate can never serve.
    new x509.ExtendedKeyUsageExtension(
      [opts.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(subjectPublicKey),
    // RFC 5280 §4.2.1.1: MUST appear in certificates not self-signed; lets verifiers pick the right CA key.
    await x509.AuthorityKeyIdentifierExtension.create(issuer.cert),
  ];
  const names = [
    ...(opts.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(opts.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  // RFC 9525 §6.3: clients match the server's identity against the SAN only, never the CN.
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  // A certificate outliving its CA would be unverifiable for the difference anyway.
  const notAfter = Math.min(Date.now() + opts.validityDays * DAY, issuer.cert.notAfter.getTime());
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: opts.subject,
    issuer: issuer.cert.subjectName,
    notBefore: notBefore(),
    notAfter: new Date(notAfter),
    publicKey: subjectPublicKey,
    signingKey: issuer.signingKey,
    signingAlgorithm: SIGN,
    extensions,
  });
  return cert.toString('pem');
}

const DNS_NAME =
  /^(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;

export async function issueServerCert(
  ca: KeyPairPem,
  opts: { commonName: string; dnsNames?: string[]; ipAddresses?: string[]; validityDays?: number },
): Promise<KeyPairPem> {
  const dnsNames = opts.dnsNames ?? [];
  const ipAddresses = opts.ipAddresses ?? [];
  for (const d of dnsNames) {
    if (!DNS_NAME.test(d) || d.length > 253) throw new PkiError('ERR_PKI_INPUT', `not a DNS name: ${d}`);
  }
  for (const ip of ipAddresses) {
    if (isIP(ip) === 0) throw new PkiError('ERR_PKI_INPUT', `not an IP address: ${ip}`);
  }
  const keys = await newKeys();
  const certPem = await issue(ca, keys.publicKey, {
    // Server certificates are only ever made here for development; production ones come from config.
    subject: dn(checkCommonName(opts.commonName, 'ERR_PKI_INPUT'), DEV_ORGANIZATION),
    validityDays: days(opts.validityDays, 397),
    usage: 'server',
    dnsNames,
    ipAddresses,
  });
  return { certPem, keyPem: await keyToPem(keys.privateKey) };
}

/** Development and tests only: a client key pair and certificate made here (partners use CSRs). */
export async function issueClientCert(
  ca: KeyPairPem,
  opts: { commonName: string; organization?: string; validityDays?: number },
): Promise<KeyPairPem> {
  const keys = await newKeys();
  const certPem = await issue(ca, keys.publicKey, {
    subject: dn(checkCommonName(opts.commonName, 'ERR_PKI_INPUT'), opts.organization ?? DEV_ORGANIZATION),
    validityDays: days(opts.validityDays, 365),
    usage: 'client',
  });
  return { certPem, keyPem: await keyToPem(keys.privateKey) };
}

/** What a partner runs: a new P-256 key (kept) and a PKCS#10 request (RFC 2986, sent to us). */
export async function createCsr(opts: { commonName: string }): Promise<{ csrPem: string; keyPem: string }> {
  const keys = await newKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: dn(checkCommonName(opts.commonName, 'ERR_PKI_INPUT')),
    keys,
    signingAlgorithm: SIGN,
  });
  return { csrPem: csr.toString('pem'), keyPem: await keyToPem(keys.privateKey) };
}

/** The key types we certify for partners; anything else (P-384, RSA < 2048, DSA…) is refused. */
function acceptableCsrKey(key: KeyObject): boolean {
  const d = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ec':
      return d?.namedCurve === 'prime256v1';
    case 'ed25519':
      return true;
    case 'rsa':
      return (d?.modulusLength ?? 0) >= 2048;
    default:
      return false;
  }
}

/**
 * Issues a partner's client certificate from its CSR. The CSR's self-signature is checked first (RFC 2986
 * §3: proof that the requester holds the private key); then only its public key and, unless overridden,
 * its CN are taken. Requested extensions (SANs, cA, other EKUs…) are never honoured: the certificate is
 * for TLS client authentication only.
 */
export async function issueClientCertFromCsr(
  ca: KeyPairPem,
  csrPem: string,
  opts: { commonName?: string; validityDays?: number } = {},
): Promise<string> {
  const invalid = (message: string, cause?: unknown) =>
    new PkiError('ERR_PKI_CSR_INVALID', message, cause === undefined ? undefined : { cause });
  // A P-256/Ed25519 CSR is a few hundred bytes, RSA-4096 under 2 KiB: anything huge is not a request.
  if (csrPem.length > 64 * 1024) throw invalid('the CSR is larger than 64 KiB');
  let csr: x509.Pkcs10CertificateRequest;
  let key: KeyObject;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
    key = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
  } catch (err) {
    throw invalid('not a PEM PKCS#10 certificate request with a readable public key', err);
  }
  if (!acceptableCsrKey(key)) throw invalid('the CSR key must be ECDSA P-256, Ed25519 or RSA ≥ 2048 bits');
  let verified = false;
  try {
    verified = await csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) throw invalid('the CSR signature does not verify with its own public key');
  const cn = opts.commonName ?? csr.subjectName.getField('CN')[0];
  if (cn === undefined) throw invalid('the CSR has no common name and none was given');
  checkCommonName(cn, opts.commonName === undefined ? 'ERR_PKI_CSR_INVALID' : 'ERR_PKI_INPUT');
  return issue(ca, spkiDer(key), {
    subject: dn(cn),
    validityDays: days(opts.validityDays, 365),
    usage: 'client',
  });
}

function parseCert(input: string | Uint8Array): NodeX509 {
  try {
    return new NodeX509(input);
  } catch (err) {
    throw new PkiError('ERR_PKI_CERT', 'not a PEM or DER X.509 certificate', { cause: err });
  }
}

/**
 * RFC 8705 §3.1 `x5t#S256`: base64url, without padding, of the SHA-256 of the certificate's DER. The
 * input is parsed first, so PEM (text or bytes) and DER give the same thumbprint and garbage throws.
 */
export function certThumbprintS256(certPemOrDer: string | Uint8Array): string {
  return createHash('sha256').update(parseCert(certPemOrDer).raw).digest('base64url');
}

export type CertInfo = {
  subjectCommonName: string | undefined;
  issuerCommonName: string | undefined;
  notBefore: Date;
  notAfter: Date;
  /** Lower-case hex, as encoded (RFC 5280 §4.1.2.2). */
  serial: string;
  /** RFC 8705 `x5t#S256`. */
  thumbprint: string;
  isCa: boolean;
};

export function certInfo(certPem: string): CertInfo {
  const raw = parseCert(certPem).raw;
  const c = new x509.X509Certificate(raw);
  return {
    subjectCommonName: c.subjectName.getField('CN')[0],
    issuerCommonName: c.issuerName.getField('CN')[0],
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    serial: c.serialNumber.toLowerCase(),
    thumbprint: createHash('sha256').update(raw).digest('base64url'),
    isCa: c.getExtension(x509.BasicConstraintsExtension)?.ca === true,
  };
}
