import assert from 'node:assert/strict';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  createCa,
  createCsr,
  issueClientCert,
  issueClientCertFromCsr,
  issueServerCert,
} from './certificates.ts';
import { type DevPkiPaths, devPkiPaths, ensureDevPki, isDevelopmentCert } from './dev-pki.ts';
import { startMtlsServer, tryHandshake } from './tls-harness.ts';

let root: string;
before(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'smart-home-pki-'));
});
after(() => rm(root, { recursive: true, force: true }));

let n = 0;
const freshDir = () => path.join(root, `pki-${++n}`, 'nested');

const files = (p: DevPkiPaths) =>
  [p.serviceCa, p.publicServer, p.partnerServer, p.partnerIssuingCa, p.serviceClient].flatMap((f) => [
    f.cert,
    f.key,
  ]);

type Snapshot = Map<string, { content: string; mtimeMs: number }>;
async function snapshot(p: DevPkiPaths): Promise<Snapshot> {
  const s: Snapshot = new Map();
  for (const f of files(p))
    s.set(f, { content: await readFile(f, 'utf8'), mtimeMs: (await stat(f)).mtimeMs });
  return s;
}
/** The files whose content or mtime differ between two snapshots. */
const changed = (a: Snapshot, b: Snapshot) =>
  [...a.keys()]
    .filter((f) => a.get(f)?.content !== b.get(f)?.content || a.get(f)?.mtimeMs !== b.get(f)?.mtimeMs)
    .map((f) => path.basename(f))
    .sort();

const read = (f: string) => readFile(f, 'utf8');
const cert = async (f: string) => new X509Certificate(await read(f));

/** Leaf signed by CA, and the key file belongs to the certificate file. */
async function assertIssuedBy(leaf: { cert: string; key: string }, ca: { cert: string }): Promise<void> {
  const c = await cert(leaf.cert);
  assert.equal(
    c.verify((await cert(ca.cert)).publicKey),
    true,
    `${path.basename(leaf.cert)} signed by its CA`,
  );
  assert.deepEqual(
    createPublicKey(await read(leaf.key)).export({ type: 'spki', format: 'der' }),
    c.publicKey.export({ type: 'spki', format: 'der' }),
    `${path.basename(leaf.key)} matches its certificate`,
  );
}

describe('ensureDevPki', () => {
  test('first call creates a consistent set: private keys 0600, directory 0700, README', async () => {
    const dir = freshDir();
    const p = await ensureDevPki(dir);
    assert.equal(p.created, true);
    assert.deepEqual({ ...p, created: undefined }, { ...devPkiPaths(dir), created: undefined });
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    for (const f of files(p)) {
      if (f.endsWith('.key')) assert.equal((await stat(f)).mode & 0o777, 0o600, f);
      assert.ok(isDevelopmentCert(await read(f.replace(/\.key$/, '.crt'))), f);
    }
    assert.match(await read(path.join(dir, 'README.txt')), /development/i);
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.endsWith('.tmp')),
      [],
      'no temporary files left',
    );

    await assertIssuedBy(p.publicServer, p.serviceCa);
    await assertIssuedBy(p.partnerServer, p.serviceCa);
    await assertIssuedBy(p.serviceClient, p.serviceCa);
    assert.equal((await cert(p.serviceCa.cert)).ca, true);
    assert.equal((await cert(p.partnerIssuingCa.cert)).ca, true);
    assert.notEqual(
      (await cert(p.serviceCa.cert)).fingerprint256,
      (await cert(p.partnerIssuingCa.cert)).fingerprint256,
    );
    const server = await cert(p.partnerServer.cert);
    assert.equal(server.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    assert.equal(server.checkHost('localhost'), 'localhost');
  });

  test('second call touches nothing (created:false, same content and mtimes)', async () => {
    const dir = freshDir();
    const p = await ensureDevPki(dir);
    const before = await snapshot(p);
    await new Promise((r) => setTimeout(r, 20)); // so a rewrite would show in mtimes
    const again = await ensureDevPki(dir);
    assert.equal(again.created, false);
    assert.deepEqual(changed(before, await snapshot(p)), []);
  });

  test('a deleted leaf is re-issued alone, by the existing CA', async () => {
    const dir = freshDir();
    const p = await ensureDevPki(dir);
    const before = await snapshot(p);
    await rm(p.partnerServer.cert);
    assert.equal((await ensureDevPki(dir)).created, true);
    assert.deepEqual(changed(before, await snapshot(p)), ['partner-server.crt', 'partner-server.key']);
    await assertIssuedBy(p.partnerServer, p.serviceCa);
  });

  test('a deleted leaf key re-issues that pair (a certificate without its key is useless)', async () => {
    const dir = freshDir();
    const p = await ensureDevPki(dir);
    const before = await snapshot(p);
    await rm(p.serviceClient.key);
    assert.equal((await ensureDevPki(dir)).created, true);
    assert.deepEqual(changed(before, await snapshot(p)), ['service-client.crt', 'service-client.key']);
    await assertIssuedBy(p.serviceClient, p.serviceCa);
  });

  test('a missing service CA is re-made with everything it signed; the partner-issuing CA is kept', async () => {
    const dir = freshDir();
    const p = await ensureDevPki(dir);
    const before = await snapshot(p);
    await rm(p.serviceCa.key);
    assert.equal((await ensureDevPki(dir)).created, true);
    assert.deepEqual(changed(before, await snapshot(p)), [
      'partner-server.crt',
      'partner-server.key',
      'public-server.crt',
      'public-server.key',
      'service-ca.crt',
      'service-ca.key',
      'service-client.crt',
      'service-client.key',
    ]);
    for (const leaf of [p.publicServer, p.partnerServer, p.serviceClient])
      await assertIssuedBy(leaf, p.serviceCa);
  });

  test('a missing partner-issuing CA is re-made alone', async () => {
    const dir = freshDir();
    const p = await ensureDevPki(dir);
    const before = await snapshot(p);
    await rm(p.partnerIssuingCa.cert);
    assert.equal((await ensureDevPki(dir)).created, true);
    assert.deepEqual(changed(before, await snapshot(p)), [
      'partner-issuing-ca.crt',
      'partner-issuing-ca.key',
    ]);
  });

  test('hostnames: names become dNSName, IP literals iPAddress, loopback always included', async () => {
    const p = await ensureDevPki(freshDir(), { hostnames: ['home.test', '192.0.2.7'] });
    assert.equal(
      (await cert(p.publicServer.cert)).subjectAltName,
      'DNS:home.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:192.0.2.7',
    );
  });

  test('an existing directory open to others is tightened to 0700', async () => {
    const dir = freshDir();
    await mkdir(dir, { recursive: true });
    await chmod(dir, 0o755);
    await ensureDevPki(dir);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
  });

  test('the files work as the partner listener: partner certs connect, our client cert is for the service CA', async () => {
    const p = await ensureDevPki(freshDir());
    const server = await startMtlsServer({
      cert: await read(p.partnerServer.cert),
      key: await read(p.partnerServer.key),
      clientCa: await read(p.partnerIssuingCa.cert),
    });
    try {
      const issuingCa = {
        certPem: await read(p.partnerIssuingCa.cert),
        keyPem: await read(p.partnerIssuingCa.key),
      };
      const csr = await createCsr({ commonName: 'partner-a' });
      const partner = { certPem: await issueClientCertFromCsr(issuingCa, csr.csrPem), keyPem: csr.keyPem };
      const serverCa = await read(p.serviceCa.cert);
      assert.deepEqual(
        await tryHandshake(server.port, { serverCa, servername: 'localhost', client: partner }),
        {
          ok: true,
        },
      );
      assert.deepEqual(await tryHandshake(server.port, { serverCa, client: partner }), { ok: true }, 'by IP');
      // Our outbound client certificate is not a partner's: the partner listener refuses it.
      const own = { certPem: await read(p.serviceClient.cert), keyPem: await read(p.serviceClient.key) };
      assert.equal(
        (await tryHandshake(server.port, { serverCa, servername: 'localhost', client: own })).ok,
        false,
      );
    } finally {
      await server.close();
    }
    // …but a partner trusting our service CA accepts it.
    const partnerSide = await startMtlsServer({
      cert: await read(p.publicServer.cert),
      key: await read(p.publicServer.key),
      clientCa: await read(p.serviceCa.cert),
    });
    try {
      const own = { certPem: await read(p.serviceClient.cert), keyPem: await read(p.serviceClient.key) };
      const serverCa = await read(p.serviceCa.cert);
      assert.deepEqual(
        await tryHandshake(partnerSide.port, { serverCa, servername: 'localhost', client: own }),
        {
          ok: true,
        },
      );
    } finally {
      await partnerSide.close();
    }
  });
});

describe('isDevelopmentCert', () => {
  test('production material is not development; anything issued under a development CA is', async () => {
    const prodCa = await createCa({
      commonName: 'PropDevelopment partner-issuing CA',
      organization: 'PropDevelopment',
    });
    const devCa = await createCa({ commonName: 'dev CA' });
    const prodClient = await issueClientCert(prodCa, {
      commonName: 'partner',
      organization: 'PropDevelopment',
    });
    assert.equal(isDevelopmentCert(prodCa.certPem), false);
    assert.equal(isDevelopmentCert(prodClient.certPem), false);
    assert.equal(isDevelopmentCert(devCa.certPem), true);
    // Issued from a CSR under the dev CA: no marker in its own subject, but in its issuer's.
    const csr = await createCsr({ commonName: 'partner' });
    assert.equal(isDevelopmentCert(await issueClientCertFromCsr(devCa, csr.csrPem)), true);
    // Server certificates are only made here for development.
    assert.equal(isDevelopmentCert((await issueServerCert(prodCa, { commonName: 'x' })).certPem), true);
  });

  test('a development CA hidden in a bundle after a production one is still found', async () => {
    const prodCa = await createCa({ commonName: 'prod', organization: 'PropDevelopment' });
    const devCa = await createCa({ commonName: 'dev' });
    assert.equal(isDevelopmentCert(prodCa.certPem + devCa.certPem), true);
    assert.equal(isDevelopmentCert(`# trust bundle\n${prodCa.certPem}\n${prodCa.certPem}`), false);
  });

  test('a CN that merely spells the marker is not the marker', async () => {
    const prodCa = await createCa({ commonName: 'prod', organization: 'PropDevelopment' });
    const csr = await createCsr({ commonName: 'a + O=smart-home development' });
    assert.equal(isDevelopmentCert(await issueClientCertFromCsr(prodCa, csr.csrPem)), false);
  });

  test('what is not a certificate is not a development certificate', () => {
    assert.equal(isDevelopmentCert(''), false);
    assert.equal(isDevelopmentCert('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), false);
  });
});
