/**
 * C2SP signed notes (signed-note), checkpoints (tlog-checkpoint) and Ed25519 cosignatures
 * (tlog-cosignature, `cosignature/v1`): the formats of contract §8.1 and §8.2.
 *
 *   const signer = noteSigner('smart-home.example/journal', privateKey);
 *   const note = signNote(formatCheckpoint({ origin, size, root }), [signer]);
 *   const { text } = openNote(note, [signer.verifier]);          // throws NoteError when not verified
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';

/** Signature type bytes of signed-note. */
export const SIG_ED25519 = 0x01;
export const SIG_COSIGNATURE_V1 = 0x04;

/** Signatures a note may carry here (the spec asks to accept at least 16). */
export const MAX_SIGNATURES = 32;
/** Largest note accepted, bytes. */
export const MAX_NOTE_BYTES = 16 * 1024;

const EM_DASH = '\u2014';

export class NoteError extends Error {
  override readonly name = 'NoteError';
}

export function keyId(name: string, type: number, publicKey: Uint8Array): number {
  const h = createHash('sha256')
    .update(name, 'utf8')
    .update(Buffer.from([0x0a, type]))
    .update(publicKey)
    .digest();
  return h.readUInt32BE(0);
}

function checkKeyName(name: string): void {
  if (name === '' || /[\s+]/u.test(name)) throw new NoteError(`bad key name ${JSON.stringify(name)}`);
}

export function rawEd25519Public(key: KeyObject): Buffer {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new NoteError('not an Ed25519 key');
  return Buffer.from(jwk.x, 'base64url');
}

/** An Ed25519 private key from its 32-byte RFC 8032 seed. */
export function ed25519FromSeed(seed: Uint8Array): KeyObject {
  if (seed.length !== 32) throw new NoteError('an Ed25519 seed is 32 bytes');
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

/** An Ed25519 public key from its 32 raw bytes. */
export function ed25519Public(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new NoteError('an Ed25519 public key is 32 bytes');
  return createPublicKey({
    key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(raw).toString('base64url') },
    format: 'jwk',
  });
}

export interface NoteVerifier {
  name: string;
  keyId: number;
  /** Checks `sig` (without the key id) over the note text. */
  verify(text: Buffer, sig: Buffer): boolean;
}

export interface NoteSigner {
  name: string;
  keyId: number;
  sign(text: Buffer): Buffer;
  verifier: NoteVerifier;
  /** The verifier key string others configure to check this signer (`name+id+key`). */
  verifierKey: string;
}

/** A key id as signed-note writes it: 8 lowercase hex digits. */
export const keyIdHex = (id: number): string => id.toString(16).padStart(8, '0');

/** The `<name>+<hex key id>+<base64(type ‖ key)>` verifier key string of signed-note. */
export function verifierKeyString(name: string, publicKey: Uint8Array, type = SIG_ED25519): string {
  checkKeyName(name);
  const id = keyIdHex(keyId(name, type, publicKey));
  return `${name}+${id}+${Buffer.concat([Buffer.from([type]), publicKey]).toString('base64')}`;
}

/** Parses a verifier key string of type Ed25519 (0x01) or cosignature/v1 (0x04). */
export function parseVerifierKey(vkey: string): {
  name: string;
  type: number;
  publicKey: Buffer;
  keyId: number;
} {
  const first = vkey.indexOf('+');
  const second = vkey.indexOf('+', first + 1);
  if (first <= 0 || second < 0) throw new NoteError('a verifier key is name+id+key');
  const name = vkey.slice(0, first);
  const idHex = vkey.slice(first + 1, second);
  const b64 = vkey.slice(second + 1);
  if (!/^[0-9a-f]{8}$/.test(idHex) || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64))
    throw new NoteError('malformed verifier key');
  checkKeyName(name);
  const raw = Buffer.from(b64, 'base64');
  const type = raw[0];
  const publicKey = raw.subarray(1);
  if ((type !== SIG_ED25519 && type !== SIG_COSIGNATURE_V1) || publicKey.length !== 32) {
    throw new NoteError('unsupported verifier key type');
  }
  const id = keyId(name, type, publicKey);
  if (id !== Number.parseInt(idHex, 16)) throw new NoteError('verifier key id does not match its key');
  return { name, type, publicKey, keyId: id };
}

/** A plain Ed25519 note signer (type 0x01): checkpoints. */
export function noteSigner(name: string, privateKey: KeyObject): NoteSigner {
  checkKeyName(name);
  const pub = rawEd25519Public(createPublicKey(privateKey));
  const verifier = noteVerifier(name, pub);
  return {
    name,
    keyId: verifier.keyId,
    sign: (text) => sign(null, text, privateKey),
    verifier,
    verifierKey: verifierKeyString(name, pub, SIG_ED25519),
  };
}

export function noteVerifier(name: string, publicKey: Uint8Array): NoteVerifier {
  checkKeyName(name);
  const key = ed25519Public(publicKey);
  return {
    name,
    keyId: keyId(name, SIG_ED25519, publicKey),
    verify: (text, sig) => sig.length === 64 && verify(null, text, key, sig),
  };
}

/** A verifier from a verifier key string (either type). */
export function verifierFromKeyString(vkey: string): NoteVerifier {
  const k = parseVerifierKey(vkey);
  return k.type === SIG_ED25519
    ? noteVerifier(k.name, k.publicKey)
    : cosignatureVerifier(k.name, k.publicKey);
}

// ---- the note ---------------------------------------------------------------------------------------

export interface NoteSignature {
  name: string;
  keyId: number;
  /** The signature bytes after the key id. */
  sig: Buffer;
  /** The whole line, without its newline. */
  line: string;
}

export function signatureLine(name: string, id: number, sig: Uint8Array): string {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(id >>> 0);
  return `${EM_DASH} ${name} ${Buffer.concat([head, sig]).toString('base64')}`;
}

/** One signature line (without its newline); nothing is verified. */
export function parseSignatureLine(line: string): NoteSignature {
  const m = /^\u2014 (\S+) ([A-Za-z0-9+/]+={0,2})$/u.exec(line);
  if (!m) throw new NoteError('malformed signature line');
  const raw = Buffer.from(m[2]!, 'base64');
  if (raw.length < 5) throw new NoteError('signature too short');
  return { name: m[1]!, keyId: raw.readUInt32BE(0), sig: raw.subarray(4), line };
}

function checkText(text: string): void {
  if (!text.endsWith('\n')) throw new NoteError('the note text must end in a newline');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the format forbids them
  if (/[\u0000-\u0009\u000b-\u001f]/.test(text)) throw new NoteError('the note holds a control character');
}

/** The note text signed by each signer: `text ‖ "\n" ‖ signature lines`. */
export function signNote(text: string, signers: readonly NoteSigner[]): string {
  checkText(text);
  const bytes = Buffer.from(text, 'utf8');
  const lines = signers.map((s) => `${signatureLine(s.name, s.keyId, s.sign(bytes))}\n`);
  return `${text}\n${lines.join('')}`;
}

/** Splits a signed note into its text and signature lines; nothing is verified. */
export function parseNote(note: string | Uint8Array): { text: string; signatures: NoteSignature[] } {
  const buf = typeof note === 'string' ? Buffer.from(note, 'utf8') : Buffer.from(note);
  if (buf.length > MAX_NOTE_BYTES) throw new NoteError('note too large');
  const s = buf.toString('utf8');
  if (!Buffer.from(s, 'utf8').equals(buf)) throw new NoteError('the note is not valid UTF-8');
  const split = s.lastIndexOf('\n\n');
  if (split < 0) throw new NoteError('no blank line before the signatures');
  const text = s.slice(0, split + 1);
  checkText(text);
  const rest = s.slice(split + 2);
  if (!rest.endsWith('\n')) throw new NoteError('the signatures must end in a newline');
  const signatures: NoteSignature[] = [];
  for (const line of rest.slice(0, -1).split('\n')) signatures.push(parseSignatureLine(line));
  if (signatures.length === 0) throw new NoteError('no signatures');
  if (signatures.length > MAX_SIGNATURES) throw new NoteError('too many signatures');
  return { text, signatures };
}

/**
 * Opens a note: every signature by a known key (name and id) must verify, and at least one does.
 * Signatures by unknown keys are ignored (returned in `unknown`).
 */
export function openNote(
  note: string | Uint8Array,
  verifiers: readonly NoteVerifier[],
): { text: string; verified: NoteSignature[]; unknown: NoteSignature[] } {
  const { text, signatures } = parseNote(note);
  const bytes = Buffer.from(text, 'utf8');
  const verified: NoteSignature[] = [];
  const unknown: NoteSignature[] = [];
  for (const s of signatures) {
    const v = verifiers.find((x) => x.name === s.name && x.keyId === s.keyId);
    if (!v) {
      unknown.push(s);
      continue;
    }
    if (!v.verify(bytes, s.sig)) throw new NoteError(`signature by ${s.name} does not verify`);
    verified.push(s);
  }
  if (verified.length === 0) throw new NoteError('no signature by a known key');
  return { text, verified, unknown };
}

// ---- checkpoints --------------------------------------------------------------------------------------

export interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
  extensions: string[];
}

export function formatCheckpoint(c: {
  origin: string;
  size: number;
  root: Uint8Array;
  extensions?: string[];
}): string {
  if (c.origin === '' || c.origin.includes('\n')) throw new NoteError('bad origin');
  if (!Number.isSafeInteger(c.size) || c.size < 0) throw new NoteError('bad tree size');
  if (c.root.length !== 32) throw new NoteError('a root hash is 32 bytes');
  const ext = (c.extensions ?? []).map((e) => {
    if (e === '' || e.includes('\n')) throw new NoteError('bad extension line');
    return `${e}\n`;
  });
  return `${c.origin}\n${c.size}\n${Buffer.from(c.root).toString('base64')}\n${ext.join('')}`;
}

export function parseCheckpoint(text: string): Checkpoint {
  const lines = text.split('\n');
  if (lines.length < 4 || lines[lines.length - 1] !== '')
    throw new NoteError('a checkpoint has three lines at least');
  const [origin, sizeLine, rootLine] = lines as [string, string, string];
  if (origin === '') throw new NoteError('empty origin');
  if (!/^(0|[1-9][0-9]{0,15})$/.test(sizeLine) || !Number.isSafeInteger(Number(sizeLine))) {
    throw new NoteError('bad tree size');
  }
  if (!/^[A-Za-z0-9+/]{43}=$/.test(rootLine)) throw new NoteError('bad root hash');
  const extensions = lines.slice(3, -1);
  if (extensions.some((e) => e === '')) throw new NoteError('empty extension line');
  return { origin, size: Number(sizeLine), root: Buffer.from(rootLine, 'base64'), extensions };
}

// ---- cosignature/v1 -------------------------------------------------------------------------------------

function cosignedMessage(checkpointText: string, time: bigint): Buffer {
  return Buffer.from(`cosignature/v1\ntime ${time}\n${checkpointText}`, 'utf8');
}

/** A witness's Ed25519 cosigner (key id type 0x04, timestamped signatures). */
export function cosigner(name: string, privateKey: KeyObject, now: () => number = Date.now): NoteSigner {
  checkKeyName(name);
  const pub = rawEd25519Public(createPublicKey(privateKey));
  const verifier = cosignatureVerifier(name, pub);
  return {
    name,
    keyId: verifier.keyId,
    sign(text) {
      const time = BigInt(Math.floor(now() / 1000));
      const head = Buffer.alloc(8);
      head.writeBigUInt64BE(time);
      return Buffer.concat([head, sign(null, cosignedMessage(text.toString('utf8'), time), privateKey)]);
    },
    verifier,
    verifierKey: verifierKeyString(name, pub, SIG_COSIGNATURE_V1),
  };
}

export function cosignatureVerifier(name: string, publicKey: Uint8Array): NoteVerifier {
  checkKeyName(name);
  const key = ed25519Public(publicKey);
  return {
    name,
    keyId: keyId(name, SIG_COSIGNATURE_V1, publicKey),
    verify(text, sig) {
      if (sig.length !== 72) return false;
      const time = sig.readBigUInt64BE(0);
      if (time > 2n ** 63n - 1n) return false;
      return verify(null, cosignedMessage(text.toString('utf8'), time), key, sig.subarray(8));
    },
  };
}

/** The POSIX time inside a cosignature/v1 signature (after its key id). */
export function cosignatureTime(sig: Buffer): number {
  if (sig.length !== 72) throw new NoteError('not a cosignature/v1 signature');
  return Number(sig.readBigUInt64BE(0));
}
