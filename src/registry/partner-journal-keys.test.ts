import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createPartnerIdentity, type PartnerIdentity } from '../../simulator/identity.ts';
import { createTestDb } from '../../test/support/test-db.ts';
import { standardWorld } from '../../test/support/world.ts';
import { FieldCipher } from '../crypto/field-cipher.ts';
import { kekFromBytes } from '../crypto/kek.ts';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { PartnerDirectory } from '../partners/partner-directory.ts';
import { createCa } from '../pki/certificates.ts';
import { cosigner, noteSigner } from '../tlog/note.ts';
import { applyDocument } from './apply.ts';
import { DATA_KEY_PURPOSES } from './data-key-purposes.ts';
import { type DocumentError, type ProvisioningDocument, validateDocument } from './document.ts';

let db: Db;
let cipher: FieldCipher;
let world: ProvisioningDocument;
const actor = { type: 'operator' as const, id: 'test' };
const ed25519 = () => generateKeyPairSync('ed25519').privateKey;
const northLog = noteSigner('north.example/journal', ed25519());
const northWitness = cosigner('north.example/witness', ed25519());
const southLog = noteSigner('south.example/journal', ed25519());

before(async () => {
  db = await createTestDb();
  cipher = await FieldCipher.open(db, kekFromBytes(randomBytes(32)), DATA_KEY_PURPOSES);
  const ca = await createCa({ commonName: 'test issuing CA' });
  const ids = new Map<string, PartnerIdentity>();
  for (const code of ['barrier-north', 'barrier-south']) ids.set(code, await createPartnerIdentity(code, ca));
  world = standardWorld(ids);
  world.partners![0]!.logKey = northLog.verifierKey;
  world.partners![0]!.witnessKey = northWitness.verifierKey;
  world.partners![1]!.logKey = southLog.verifierKey;
  await applyDocument({ db, cipher }, world, actor);
});
after(() => db.close());

const keysOf = (code: string) =>
  db.one<{ log_key: string | null; log_origin: string | null; witness_key: string | null }>(
    sql`select log_key, log_origin, witness_key from partners where code = ${code}`,
  );

describe("a partner's journal log and witness keys (contract §8.2)", () => {
  test('are registered with the log origin, and the directory verifies with them', async () => {
    assert.deepEqual(await keysOf('barrier-north'), {
      log_key: northLog.verifierKey,
      log_origin: 'north.example/journal',
      witness_key: northWitness.verifierKey,
    });
    const dir = await PartnerDirectory.load(db);
    const north = dir.byCode.get('barrier-north')!;
    assert.equal(dir.byLogOrigin.get('north.example/journal'), north);
    assert.equal(dir.byLogOrigin.get('south.example/journal')?.code, 'barrier-south');
    assert.equal(north.log?.name, 'north.example/journal');
    const text = 'north.example/journal\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n';
    const sig = northLog.sign(Buffer.from(text));
    assert.ok(north.log?.verifier.verify(Buffer.from(text), sig));
    assert.ok(!dir.byCode.get('barrier-south')!.log?.verifier.verify(Buffer.from(text), sig));
    assert.equal(north.witness?.verifier.keyId, northWitness.keyId);
    assert.equal(dir.byCode.get('barrier-south')!.witness, undefined);
  });

  test('applying the same keys again changes nothing', async () => {
    const s = await applyDocument({ db, cipher }, world, actor);
    assert.deepEqual([s.created, s.updated], [0, 0]);
  });

  test('a key of the wrong type, or one whose id does not match, is refused at its path', async () => {
    const swapped = structuredClone(world);
    swapped.partners![0]!.logKey = northWitness.verifierKey; // a cosignature/v1 key as the log key
    await assert.rejects(
      applyDocument({ db, cipher }, swapped, actor),
      (e: DocumentError) => e.path === '/partners/0/logKey' && /Ed25519/.test(e.message),
    );
    const asWitness = structuredClone(world);
    asWitness.partners![0]!.witnessKey = northLog.verifierKey;
    await assert.rejects(
      applyDocument({ db, cipher }, asWitness, actor),
      (e: DocumentError) => e.path === '/partners/0/witnessKey',
    );
    const badId = structuredClone(world);
    badId.partners![0]!.logKey = northLog.verifierKey.replace(/\+[0-9a-f]{8}\+/, '+00000000+');
    await assert.rejects(
      applyDocument({ db, cipher }, badId, actor),
      (e: DocumentError) => e.path === '/partners/0/logKey' && /key id/.test(e.message),
    );
    const garbage = structuredClone(world) as unknown as { partners: Array<Record<string, unknown>> };
    garbage.partners[0]!['logKey'] = 'not a key';
    assert.throws(
      () => validateDocument(garbage),
      (e: DocumentError) => e.path === '/partners/0/logKey',
    );
    assert.deepEqual((await keysOf('barrier-north'))?.log_key, northLog.verifierKey, 'nothing changed');
  });

  test('one log origin belongs to one partner', async () => {
    const doc = structuredClone(world);
    doc.partners![1]!.logKey = noteSigner('north.example/journal', ed25519()).verifierKey;
    await assert.rejects(
      applyDocument({ db, cipher }, doc, actor),
      (e: DocumentError) => e.path === '/partners/1/logKey' && /origin/.test(e.message),
    );
  });

  test('a new log key is an update with a journal entry; leaving the keys out removes them', async () => {
    const before = (await db.one<{ n: number }>(sql`select count(*)::int as n from journal`))!.n;
    const rotated = noteSigner('north.example/journal', ed25519());
    const doc = structuredClone(world);
    doc.partners![0]!.logKey = rotated.verifierKey;
    assert.equal((await applyDocument({ db, cipher }, doc, actor)).updated, 1);
    assert.equal((await keysOf('barrier-north'))?.log_key, rotated.verifierKey);
    const after = (await db.one<{ n: number }>(sql`select count(*)::int as n from journal`))!.n;
    assert.equal(after, before + 1);
    delete doc.partners![0]!.logKey;
    delete doc.partners![0]!.witnessKey;
    await applyDocument({ db, cipher }, doc, actor);
    assert.deepEqual(await keysOf('barrier-north'), { log_key: null, log_origin: null, witness_key: null });
    const dir = await PartnerDirectory.load(db);
    assert.equal(dir.byLogOrigin.get('north.example/journal'), undefined);
    // The origin is free again: the other partner may take it.
    const moved = structuredClone(doc);
    moved.partners![1]!.logKey = noteSigner('north.example/journal', ed25519()).verifierKey;
    await applyDocument({ db, cipher }, moved, actor);
    assert.equal((await keysOf('barrier-south'))?.log_origin, 'north.example/journal');
  });
});
