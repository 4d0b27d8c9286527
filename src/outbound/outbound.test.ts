import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createPartnerIdentity, type PartnerIdentity } from '../../simulator/identity.ts';
import { createTestDb } from '../../test/support/test-db.ts';
import { FieldCipher } from '../crypto/field-cipher.ts';
import { kekFromBytes } from '../crypto/kek.ts';
import { pseudonym } from '../crypto/partner-keys.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { loadSigningKey } from '../keys/service-keys.ts';
import { createLogger } from '../logger.ts';
import { PartnerDirectory } from '../partners/partner-directory.ts';
import { createCa, issueClientCert } from '../pki/certificates.ts';
import { applyDocument } from '../registry/apply.ts';
import { DATA_KEY_PURPOSES } from '../registry/data-key-purposes.ts';
import { type ProvisioningDocument, validateDocument } from '../registry/document.ts';
import { addPartnerSecret, loadPartnerKeys } from '../registry/partner-secrets.ts';
import { isUuidV7, uuidv7Time } from '../util/uuid.ts';
import { OutboundError } from './errors.ts';
import { Outbound, type OutboundOptions } from './outbound.ts';

let db: Db;
let cipher: FieldCipher;
let directory: PartnerDirectory;
let ids: Map<string, PartnerIdentity>;
let serverCaPem: string;
let clientTls: { cert: string; key: string };
let outbound: Outbound;
const OPTIONS: OutboundOptions = {
  connectTimeoutMs: 1000,
  timeoutMs: 1000,
  connections: 1,
  tokenRefreshMarginSeconds: 60,
  retryDelayMs: 10,
  doorCommandTtlMs: 8000,
};

function world(): ProvisioningDocument {
  const partner = (code: string, outboundToo: boolean) => {
    const id = ids.get(code)!;
    return {
      code,
      name: code,
      scopes: ['events:write' as const],
      complexes: ['north'],
      networks: ['127.0.0.1/32'],
      certificates: [id.thumbprint],
      signingKeys: [id.signing.publicJwk as never],
      encryptionKeys: [],
      baseUrl: `https://${code}.example`,
      ...(outboundToo ? { outbound: { serverCa: serverCaPem, clientId: `sh-at-${code}` } } : {}),
    };
  };
  return {
    version: 1,
    complexes: [{ code: 'north', name: 'North', buildings: [] }],
    partners: [partner('intercom-a', true), partner('intercom-b', true), partner('no-commands', false)],
    devices: [
      { partner: 'intercom-a', externalId: 'd1', kind: 'door', name: 'D1', complex: 'north' },
      { partner: 'no-commands', externalId: 'd2', kind: 'door', name: 'D2', complex: 'north' },
    ],
  };
}

before(async () => {
  db = await createTestDb();
  cipher = await FieldCipher.open(db, kekFromBytes(randomBytes(32)), DATA_KEY_PURPOSES);
  const ca = await createCa({ commonName: 'test CA' });
  serverCaPem = ca.certPem;
  const client = await issueClientCert(ca, { commonName: 'smart-home' });
  clientTls = { cert: client.certPem, key: client.keyPem };
  ids = new Map();
  for (const code of ['intercom-a', 'intercom-b', 'no-commands'])
    ids.set(code, await createPartnerIdentity(code, ca));
  await applyDocument({ db, cipher }, world(), { type: 'system', id: 'test' });
  directory = await PartnerDirectory.load(db);
  const { mkdtemp } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const { ensureJwkFile } = await import('../keys/service-keys.ts');
  const keyFile = path.join(await mkdtemp(path.join(tmpdir(), 'outbound-')), 'signing.jwk');
  await ensureJwkFile(keyFile, 'Ed25519');
  outbound = new Outbound({
    db,
    cipher,
    directory: () => directory,
    clientTls,
    signingKey: await loadSigningKey(keyFile, 'Ed25519'),
    options: OPTIONS,
  });
});
after(async () => {
  await outbound.close();
  await db.close();
});

const partnerId = (code: string) => directory.byCode.get(code)!.id;

describe('the subject of a door command (contract §7)', () => {
  test('is base64url(HMAC-SHA256(pseudonymKey, "subject/v1|" + residentId)) under the current key', async () => {
    const residentId = '0190f0f0-1111-7000-8000-000000000001';
    const [current] = await loadPartnerKeys(db, cipher, partnerId('intercom-a'));
    const expected = createHmac('sha256', current!.pseudonymKey)
      .update(`subject/v1|${residentId}`, 'utf8')
      .digest('base64url');
    assert.equal(await outbound.subject(partnerId('intercom-a'), residentId), expected);
    assert.match(expected, /^[A-Za-z0-9_-]{43}$/, 'unpadded base64url of 32 bytes');
  });

  test('the formula on a fixed key gives the contract value', () => {
    const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
    const expected = createHmac('sha256', key).update('subject/v1|resident-1').digest('base64url');
    assert.equal(pseudonym(key, 'resident-1'), expected);
  });

  test('differs from one partner to another, and is stable for one', async () => {
    const r = '0190f0f0-1111-7000-8000-000000000002';
    const a1 = await outbound.subject(partnerId('intercom-a'), r);
    const a2 = await outbound.subject(partnerId('intercom-a'), r);
    const b = await outbound.subject(partnerId('intercom-b'), r);
    assert.equal(a1, a2);
    assert.notEqual(a1, b);
    assert.notEqual(a1, await outbound.subject(partnerId('intercom-a'), `${r.slice(0, -1)}3`));
  });

  test("follows a rotation of the partner's secret", async () => {
    const r = '0190f0f0-1111-7000-8000-000000000004';
    const before = await outbound.subject(partnerId('intercom-b'), r);
    await db.transaction((tx) =>
      addPartnerSecret(tx, cipher, { id: partnerId('intercom-b'), code: 'intercom-b' }),
    );
    directory = await PartnerDirectory.load(db);
    const after = await outbound.subject(partnerId('intercom-b'), r);
    const [newest] = await loadPartnerKeys(db, cipher, partnerId('intercom-b'));
    assert.equal(newest!.version, 2);
    assert.notEqual(after, before);
    assert.equal(after, pseudonym(newest!.pseudonymKey, r));
  });
});

describe('preparing a door command', () => {
  test('UUIDv7 commandId of requestedAt, expiresAt = requestedAt + the configured validity', async () => {
    const now = new Date('2026-12-01T10:00:00.000Z');
    const c = await outbound.prepareDoorOpen({
      partner: partnerId('intercom-a'),
      doorExternalId: 'd1',
      residentId: 'r-1',
      now,
    });
    assert.ok(isUuidV7(c.commandId));
    assert.equal(uuidv7Time(c.commandId), now.getTime());
    assert.equal(c.requestedAt, '2026-12-01T10:00:00.000Z');
    assert.equal(c.expiresAt, '2026-12-01T10:00:08.000Z');
    assert.equal(c.subject, await outbound.subject(partnerId('intercom-a'), 'r-1'));
    const again = await outbound.prepareDoorOpen({
      partner: partnerId('intercom-a'),
      doorExternalId: 'd1',
      residentId: 'r-1',
      now,
    });
    assert.notEqual(again.commandId, c.commandId, 'each command has its own id');
  });

  test('refuses a partner without an outbound registration, and a device that is not its door', async () => {
    await assert.rejects(
      outbound.prepareDoorOpen({ partner: partnerId('no-commands'), doorExternalId: 'd2', residentId: 'r' }),
      (e: OutboundError) => e instanceof OutboundError && e.code === 'ERR_OUTBOUND_NOT_CONFIGURED',
    );
    await assert.rejects(
      outbound.prepareDoorOpen({ partner: partnerId('intercom-a'), doorExternalId: 'd2', residentId: 'r' }),
      (e: OutboundError) => e.code === 'ERR_OUTBOUND_UNKNOWN_DOOR',
    );
  });

  test('a validity above the 10 s of contract §7 is refused', () => {
    assert.throws(
      () =>
        new Outbound({
          db,
          cipher,
          directory: () => directory,
          clientTls,
          signingKey: undefined as never,
          options: { ...OPTIONS, doorCommandTtlMs: 10_001 },
        }),
      RangeError,
    );
  });
});

describe('the outbound registration in the provisioning document', () => {
  test('is stored once and read by the directory, with the default token endpoint', async () => {
    const p = directory.byCode.get('intercom-a')!;
    assert.deepEqual(p.outbound, {
      baseUrl: 'https://intercom-a.example',
      tokenEndpoint: 'https://intercom-a.example/oauth/token',
      clientId: 'sh-at-intercom-a',
      serverCa: serverCaPem.trim(),
    });
    assert.equal(directory.byCode.get('no-commands')!.outbound, undefined);
    const s = await applyDocument({ db, cipher }, world(), { type: 'system', id: 'test' });
    assert.equal(s.created + s.updated, 0, 'applying it again changes nothing');
  });

  test('a token endpoint can be registered, and a change is an update', async () => {
    const doc = world();
    doc.partners![0]!.outbound!.tokenEndpoint = 'https://as.intercom-a.example/token';
    const s = await applyDocument({ db, cipher }, doc, { type: 'system', id: 'test' });
    assert.equal(s.updated, 1);
    const row = await db.one<{ token_endpoint: string }>(
      sql`select token_endpoint from partners where code = 'intercom-a'`,
    );
    assert.equal(row!.token_endpoint, 'https://as.intercom-a.example/token');
    await applyDocument({ db, cipher }, world(), { type: 'system', id: 'test' });
  });

  test('needs a base URL and a PEM certificate', () => {
    const noBase = world();
    delete noBase.partners![0]!.baseUrl;
    assert.throws(() => validateDocument(noBase), /\/partners\/0\/baseUrl/);
    const notPem = world();
    notPem.partners![0]!.outbound!.serverCa =
      '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----';
    assert.throws(() => validateDocument(notPem), /\/partners\/0\/outbound\/serverCa/);
    const extra = world() as unknown as { partners: Array<{ outbound: Record<string, unknown> }> };
    extra.partners[0]!.outbound['password'] = 'x';
    assert.throws(() => validateDocument(extra), /outbound/);
  });
});

test('a logged door command or outcome never shows the pseudonym', async () => {
  const command = await outbound.prepareDoorOpen({
    partner: partnerId('intercom-a'),
    doorExternalId: 'd1',
    residentId: 'r-log',
  });
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', destination: { write: (s: string) => lines.push(s) } });
  logger.info({ command }, 'prepared');
  logger.info({ result: { status: 'opened', command } }, 'done');
  const text = lines.join('');
  assert.ok(text.includes(command.commandId), 'the command id stays (the journal correlates by it)');
  assert.ok(!text.includes(command.subject));
});
