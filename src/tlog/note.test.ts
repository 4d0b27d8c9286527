import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import {
  cosignatureTime,
  cosigner,
  ed25519FromSeed,
  formatCheckpoint,
  NoteError,
  noteSigner,
  openNote,
  parseCheckpoint,
  parseNote,
  parseVerifierKey,
  rawEd25519Public,
  signNote,
  verifierFromKeyString,
  verifierKeyString,
} from './note.ts';

// golang.org/x/mod sumdb/note (note_test.go, example_test.go) and C2SP signed-note's own example.
const PETER_SKEY = 'PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const TEXT =
  "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG =
  '\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const ENOCH_SIG =
  '\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';
const SPEC_VKEY = 'example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k';
const SPEC_NOTE =
  'This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n';
// transparency-dev/formats note_cosigv1_test.go: a cosignature/v1 signature and its time.
const COSIG_B64 =
  'ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==';

describe('signed-note against the Go reference vectors', () => {
  const seed = Buffer.from(PETER_SKEY.split('+').slice(4).join('+'), 'base64');
  test('the signing key reproduces the verifier key and the exact signature', () => {
    assert.equal(seed[0], 0x01);
    const key = ed25519FromSeed(seed.subarray(1));
    const signer = noteSigner('PeterNeumann', key);
    assert.equal(signer.keyId, 0xc74f20a3);
    assert.equal(verifierKeyString('PeterNeumann', rawEd25519Public(key)), PETER_VKEY);
    assert.equal(signNote(TEXT, [signer]), `${TEXT}\n${PETER_SIG}`);
  });
  test('notes signed by one, two or unknown keys open as the spec says', () => {
    const peter = verifierFromKeyString(PETER_VKEY);
    const enoch = verifierFromKeyString(ENOCH_VKEY);
    const both = `${TEXT}\n${PETER_SIG}${ENOCH_SIG}`;
    assert.equal(openNote(both, [peter, enoch]).verified.length, 2);
    const onlyPeter = openNote(both, [peter]);
    assert.equal(onlyPeter.text, TEXT);
    assert.deepEqual(
      onlyPeter.unknown.map((s) => s.name),
      ['EnochRoot'],
    );
    assert.throws(() => openNote(`${TEXT}\n${ENOCH_SIG}`, [peter]), NoteError, 'no known key → refused');
    const spec = verifierFromKeyString(SPEC_VKEY);
    assert.equal(openNote(SPEC_NOTE, [spec]).text, 'This is an example message.\n');
  });
  test('a changed text, a changed signature, or a known key failing rejects the whole note', () => {
    const peter = verifierFromKeyString(PETER_VKEY);
    assert.throws(() => openNote(`${TEXT.replace('answer', 'Answer')}\n${PETER_SIG}`, [peter]), NoteError);
    const badSig = PETER_SIG.replace('x08go', 'x08gp');
    assert.throws(() => openNote(`${TEXT}\n${badSig}`, [peter]), NoteError);
    // Same name, other id: not a known key; alone it is refused.
    const other = generateKeyPairSync('ed25519').privateKey;
    const imposter = signNote(TEXT, [noteSigner('PeterNeumann', other)]);
    assert.throws(() => openNote(imposter, [peter]), /no signature by a known key/);
  });
  test('malformed notes and keys are refused', () => {
    for (const bad of [
      TEXT, // no signatures
      `${TEXT}\n`, // blank line, nothing after
      `${TEXT}\n\u2014 PeterNeumann\n`,
      `${TEXT}\n${PETER_SIG.slice(0, -1)}`, // no final newline
      `${TEXT.slice(0, -1)}\u0007\n\n${PETER_SIG}`, // control character
      `${TEXT}\n- PeterNeumann AAAAAAA=\n`,
    ]) {
      assert.throws(() => parseNote(bad), NoteError, JSON.stringify(bad));
    }
    assert.throws(() => parseVerifierKey(PETER_VKEY.replace('c74f20a3', 'c74f20a4')), /does not match/);
    assert.throws(() => parseVerifierKey('PeterNeumann+c74f20a3'), NoteError);
    assert.throws(() => noteSigner('has space', generateKeyPairSync('ed25519').privateKey), NoteError);
    assert.throws(() => noteSigner('has+plus', generateKeyPairSync('ed25519').privateKey), NoteError);
  });
});

describe('checkpoints and cosignatures', () => {
  const root = Buffer.alloc(32, 7);
  test('checkpoint text round-trips, extensions included; bad ones are refused', () => {
    const text = formatCheckpoint({
      origin: 'example.com/log',
      size: 20852163,
      root,
      extensions: ['ext one'],
    });
    assert.equal(text, `example.com/log\n20852163\n${root.toString('base64')}\next one\n`);
    assert.deepEqual(parseCheckpoint(text), {
      origin: 'example.com/log',
      size: 20852163,
      root,
      extensions: ['ext one'],
    });
    for (const bad of [
      'a\n1\n',
      'a\n01\nAAAA\n',
      `a\n-1\n${root.toString('base64')}\n`,
      `a\n1\n${root.toString('base64')}`,
      `\n1\n${root.toString('base64')}\n`,
    ]) {
      assert.throws(() => parseCheckpoint(bad), NoteError, JSON.stringify(bad));
    }
  });
  test('the reference cosignature carries its key id and time', () => {
    const raw = Buffer.from(COSIG_B64, 'base64');
    assert.equal(raw.readUInt32BE(0), 0x646846b9);
    assert.equal(cosignatureTime(raw.subarray(4)), 1727964367);
    assert.throws(() => cosignatureTime(Buffer.alloc(64)), NoteError);
  });
  test('a checkpoint signed by the log and cosigned by a witness opens with both; the cosignature binds its time', () => {
    const logKey = generateKeyPairSync('ed25519').privateKey;
    const witnessKey = generateKeyPairSync('ed25519').privateKey;
    const log = noteSigner('smart-home.test/journal', logKey);
    const witness = cosigner('partner.test/witness', witnessKey, () => 1_700_000_000_500);
    const text = formatCheckpoint({ origin: 'smart-home.test/journal', size: 5, root });
    const note = signNote(text, [log, witness]);
    const opened = openNote(note, [log.verifier, witness.verifier]);
    assert.equal(opened.verified.length, 2);
    assert.equal(cosignatureTime(opened.verified[1]!.sig), 1_700_000_000);
    // The witness's key as a plain Ed25519 verifier has another key id: the cosignature is unknown to it.
    assert.notEqual(witness.keyId, noteSigner('partner.test/witness', witnessKey).keyId);
    // Another time in the signature breaks it.
    const parsed = parseNote(note);
    const sig = Buffer.from(parsed.signatures[1]!.sig);
    sig.writeBigUInt64BE(1_700_000_001n, 0);
    const forged = note.replace(
      parsed.signatures[1]!.line,
      `\u2014 partner.test/witness ${Buffer.concat([Buffer.from(witness.keyId.toString(16).padStart(8, '0'), 'hex'), sig]).toString('base64')}`,
    );
    assert.throws(() => openNote(forged, [log.verifier, witness.verifier]), NoteError);
    // A cosigner's verifier key string has type 0x04 and round-trips.
    const vkey = verifierKeyString('partner.test/witness', rawEd25519Public(witnessKey), 0x04);
    assert.equal(verifierFromKeyString(vkey).keyId, witness.keyId);
  });
});
