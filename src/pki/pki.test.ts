import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
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
import { ensureDevPki, isDevelopmentCert } from './dev-pki.ts';

let serviceCa: KeyPairPem;
let issuingCa: KeyPairPem;
let server: tls.Server;
let port: number;
const seen: string[] = [];

before(async () => {
  serviceCa = await createCa({ commonName: 'test service CA' });
  issuingCa = await createCa({ commonName: 'test issuing CA' });
  const serverCert = await issueServerCert(serviceCa, {
    commonName: 'srv',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  server = tls.createServer(
    {
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      ca: issuingCa.certPem,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (socket) => {
      const peer = socket.getPeerX509Certificate();
      if (peer) seen.push(certThumbprintS256(peer.raw));
      socket.end('ok');
    },
  );
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
after(() => new Promise<void>((r) => server.close(() => r())));

function connect(client?: { certPem: string; keyPem: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      ca: serviceCa.certPem,
      ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
    });
    let data = '';
    s.on('data', (d) => {
      data += d;
    });
    s.on('end', () => resolve(data));
    s.on('error', reject);
  });
}

describe('certificates in a real mutual-TLS handshake', () => {
  test('a client certificate from the issuing CA connects, and its thumbprint is what the server sees', async () => {
    const client = await issueClientCert(issuingCa, { commonName: 'partner-a' });
    assert.equal(await connect(client), 'ok');
    assert.equal(seen.at(-1), certThumbprintS256(client.certPem));
    assert.match(certThumbprintS256(client.certPem), /^[A-Za-z0-9_-]{43}$/);
  });

  test('a client certificate from another CA is refused in the handshake', async () => {
    const rogue = await issueClientCert(await createCa({ commonName: 'rogue' }), { commonName: 'partner-a' });
    // In TLS 1.3 the client learns of the refusal after its own handshake finished: either an error
    // or a connection closed without a byte of application data.
    const before = seen.length;
    const outcome = await connect(rogue).catch(() => 'refused');
    assert.notEqual(outcome, 'ok');
    assert.equal(seen.length, before, 'the server never served the connection');
  });

  test('no client certificate is refused', async () => {
    const outcome = await connect().catch(() => 'refused');
    assert.notEqual(outcome, 'ok');
  });

  test('a certificate issued from a CSR works; the key never left the requester', async () => {
    const csr = await createCsr({ commonName: 'partner-b' });
    const certPem = await issueClientCertFromCsr(issuingCa, csr.csrPem);
    assert.equal(await connect({ certPem, keyPem: csr.keyPem }), 'ok');
    const info = certInfo(certPem);
    assert.equal(info.subjectCommonName, 'partner-b');
    assert.equal(info.isCa, false);
    assert.ok(info.notAfter.getTime() - Date.now() > 360 * 86_400_000);
  });

  test('a tampered CSR is refused with a stable code', async () => {
    const csr = await createCsr({ commonName: 'partner-c' });
    const other = await createCsr({ commonName: 'partner-d' });
    // Splice the other request's signature onto this one: the self-signature no longer verifies.
    const a = Buffer.from(csr.csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const b = Buffer.from(other.csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const tampered = Buffer.concat([a.subarray(0, a.length - 64), b.subarray(b.length - 64)]);
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${tampered.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await assert.rejects(
      issueClientCertFromCsr(issuingCa, pem),
      (e: PkiError) => e.code === 'ERR_PKI_CSR_INVALID',
    );
    await assert.rejects(
      issueClientCertFromCsr(issuingCa, 'junk'),
      (e: PkiError) => e.code === 'ERR_PKI_CSR_INVALID',
    );
  });
});

describe('the development PKI', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'pki-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('is created once, with private keys readable by the owner only', async () => {
    const first = await ensureDevPki(dir);
    assert.equal(first.created, true);
    assert.equal((await stat(first.partnerIssuingCa.key)).mode & 0o777, 0o600);
    assert.equal((await stat(first.partnerServer.key)).mode & 0o777, 0o600);
    const before = await readFile(first.partnerServer.cert, 'utf8');
    const second = await ensureDevPki(dir);
    assert.equal(second.created, false);
    assert.equal(await readFile(second.partnerServer.cert, 'utf8'), before);
  });

  test('a missing leaf is re-issued alone', async () => {
    const p = await ensureDevPki(dir);
    const ca = await readFile(p.serviceCa.cert, 'utf8');
    const pub = await readFile(p.publicServer.cert, 'utf8');
    await rm(p.partnerServer.cert);
    assert.equal((await ensureDevPki(dir)).created, true);
    assert.equal(await readFile(p.serviceCa.cert, 'utf8'), ca);
    assert.equal(await readFile(p.publicServer.cert, 'utf8'), pub);
  });

  test('its certificates are recognisable as development ones', async () => {
    const p = await ensureDevPki(dir);
    assert.equal(isDevelopmentCert(await readFile(p.partnerServer.cert, 'utf8')), true);
    const prodCa = await createCa({ commonName: 'Prod CA', organization: 'PropDevelopment' });
    const prod = await issueServerCert(prodCa, { commonName: 'x' });
    assert.equal(isDevelopmentCert(prodCa.certPem), false);
    assert.equal(isDevelopmentCert(prod.certPem), true, 'server certs issued here carry the marker too');
  });
});
