import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCa, type KeyPairPem } from '../src/pki/certificates.ts';
import { formatCheckpoint, openNote, signNote, verifierFromKeyString } from '../src/tlog/note.ts';
import {
  createPartnerIdentity,
  journalSigner,
  journalVerifierKey,
  loadIdentity,
  saveIdentity,
  witnessVerifierKey,
} from './identity.ts';

let ca: KeyPairPem;
let dir: string;
before(async () => {
  ca = await createCa({ commonName: 'issuing' });
  dir = await mkdtemp(path.join(tmpdir(), 'sim-identity-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('a partner identity’s journal keys', () => {
  test('each partner has its own journal origin, log key and witness key, distinct verifier keys', async () => {
    const a = await createPartnerIdentity('intercom-a', ca);
    const b = await createPartnerIdentity('intercom-b', ca);
    assert.equal(a.journal.origin, 'intercom-a.partner.test/journal');
    assert.match(journalVerifierKey(a), /^intercom-a\.partner\.test\/journal\+[0-9a-f]{8}\+/);
    assert.match(witnessVerifierKey(a), /^intercom-a\.partner\.test\/witness\+[0-9a-f]{8}\+/);
    assert.notEqual(journalVerifierKey(a), journalVerifierKey(b));
    // A checkpoint signed by the journal key opens with the verifier key string, and not with another's.
    const text = formatCheckpoint({ origin: a.journal.origin, size: 0, root: Buffer.alloc(32) });
    const note = signNote(text, [journalSigner(a)]);
    assert.equal(openNote(note, [verifierFromKeyString(journalVerifierKey(a))]).text, text);
    assert.throws(() => openNote(note, [verifierFromKeyString(journalVerifierKey(b))]));
  });

  test('saved and loaded with the other keys; an identity saved without them gets them once, kept after', async () => {
    const a = await createPartnerIdentity('intercom-a', ca);
    await saveIdentity(dir, a);
    const loaded = await loadIdentity(dir);
    assert.equal(journalVerifierKey(loaded), journalVerifierKey(a));
    assert.equal(witnessVerifierKey(loaded), witnessVerifierKey(a));
    assert.equal(
      (await readFile(path.join(dir, 'public', 'journal.vkey'), 'utf8')).trim(),
      journalVerifierKey(a),
    );
    await unlink(path.join(dir, 'journal.jwk'));
    await unlink(path.join(dir, 'witness.jwk'));
    const upgraded = await loadIdentity(dir);
    assert.notEqual(journalVerifierKey(upgraded), journalVerifierKey(a));
    const again = await loadIdentity(dir);
    assert.equal(journalVerifierKey(again), journalVerifierKey(upgraded));
    assert.equal(witnessVerifierKey(again), witnessVerifierKey(upgraded));
  });
});
