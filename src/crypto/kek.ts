import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createSecretKey,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import { constants } from 'node:fs';
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';

/** The key-encryption key (DESIGN §5): wraps data keys, never data. */
export interface Kek {
  /**
   * Names the KEK in `data_keys.kek_id`, so a rotation is visible. By default the first 8 bytes (hex)
   * of SHA-256 of the key: a 64-bit fingerprint of 256 random bits tells nothing about them.
   */
  readonly id: string;
  wrap(dataKey: Buffer): Buffer;
  unwrap(wrapped: Buffer): Buffer;
}

export type KekErrorCode =
  /** The key material or its source is unusable (size, encoding, unreadable file). */
  | 'ERR_KEK'
  /** createKekFile found a file already there. */
  | 'ERR_KEK_EXISTS'
  /** What was given to wrap is not key data RFC 3394 can wrap. */
  | 'ERR_KEK_WRAP'
  /** The integrity check failed: another KEK wrapped it, or the wrapped bytes were altered. */
  | 'ERR_KEK_UNWRAP';

export class KekError extends Error {
  readonly code: KekErrorCode;
  constructor(code: KekErrorCode, message: string) {
    super(message);
    this.name = 'KekError';
    this.code = code;
  }
}

// RFC 3394 §2.2.3.1: the default initial value, checked on unwrap (the wrap's integrity check).
const DEFAULT_IV = Buffer.from('A6A6A6A6A6A6A6A6', 'hex');
const KEK_BYTES = 32;

/** The default KEK id: first 8 bytes of SHA-256 of the key, hex. */
export function kekIdOf(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/**
 * A KEK from 32 raw bytes: AES-256 key wrap, RFC 3394 (OpenSSL's `id-aes256-wrap`). The wrap carries an
 * integrity check (§2.2.3), so a wrong KEK is detected on unwrap instead of yielding a garbage key.
 */
export function kekFromBytes(bytes: Uint8Array, id?: string): Kek {
  if (!(bytes instanceof Uint8Array) || bytes.length !== KEK_BYTES) {
    throw new KekError('ERR_KEK', `a key-encryption key must be ${KEK_BYTES} bytes`);
  }
  if (id !== undefined && !/^[A-Za-z0-9._:-]{1,64}$/.test(id)) {
    throw new KekError('ERR_KEK', 'a key-encryption key id must be 1–64 characters of [A-Za-z0-9._:-]');
  }
  // Held as a KeyObject (outside the JS heap, copied once) rather than the caller's array.
  const key: KeyObject = createSecretKey(Buffer.from(bytes));
  const kekId = id ?? kekIdOf(bytes);
  return {
    id: kekId,
    wrap(dataKey) {
      // RFC 3394 §2: key data of n ≥ 2 64-bit blocks.
      if (!(dataKey instanceof Uint8Array) || dataKey.length < 16 || dataKey.length % 8 !== 0) {
        throw new KekError('ERR_KEK_WRAP', 'key data to wrap must be a multiple of 8 bytes, at least 16');
      }
      const c = createCipheriv('id-aes256-wrap', key, DEFAULT_IV);
      return Buffer.concat([c.update(dataKey), c.final()]);
    },
    unwrap(wrapped) {
      if (!(wrapped instanceof Uint8Array) || wrapped.length < 24 || wrapped.length % 8 !== 0) {
        throw new KekError('ERR_KEK_UNWRAP', 'not RFC 3394 wrapped key data');
      }
      try {
        const d = createDecipheriv('id-aes256-wrap', key, DEFAULT_IV);
        return Buffer.concat([d.update(wrapped), d.final()]);
      } catch {
        throw new KekError(
          'ERR_KEK_UNWRAP',
          `a data key does not unwrap with the key-encryption key ${kekId} (another KEK, or altered)`,
        );
      }
    },
  };
}

/**
 * Decodes the text form of a KEK: the base64 (standard or URL-safe alphabet, padding optional) of
 * exactly 32 bytes, surrounded by white space at most. Node's own decoder skips characters outside the
 * alphabet, so a truncated or mangled value could otherwise decode to other bytes without a word.
 */
function decodeKekText(text: string): Buffer | undefined {
  const t = text.trim();
  if (!/^[A-Za-z0-9+/]{43}=?$/.test(t) && !/^[A-Za-z0-9_-]{43}=?$/.test(t)) return undefined;
  const bytes = Buffer.from(
    t.replace(/[-_]/g, (c) => (c === '-' ? '+' : '/')),
    'base64',
  );
  return bytes.length === KEK_BYTES ? bytes : undefined;
}

/** A KEK from its text form, e.g. the SMART_HOME_KEK environment variable. The message never shows it. */
export function kekFromBase64(text: string): Kek {
  const bytes = typeof text === 'string' ? decodeKekText(text) : undefined;
  if (!bytes) throw new KekError('ERR_KEK', 'the key-encryption key must be the base64 of 32 bytes');
  try {
    return kekFromBytes(bytes);
  } finally {
    bytes.fill(0);
  }
}

/** A KEK from a file holding its text form (see createKekFile). */
export async function loadKekFromFile(file: string): Promise<Kek> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new KekError('ERR_KEK', `cannot read the key-encryption key file ${file} (${why})`);
  }
  const bytes = decodeKekText(text);
  if (!bytes) throw new KekError('ERR_KEK', `${file} must hold the base64 of 32 bytes`);
  try {
    return kekFromBytes(bytes);
  } finally {
    bytes.fill(0);
  }
}

/**
 * Creates a new KEK file: 32 random bytes, base64, mode 0600 in a 0700 directory made if missing.
 * Written to a temporary file, flushed, then hard-linked into place: link(2) fails when the name
 * exists, so the file appears whole or not at all and an existing KEK — without which every encrypted
 * field is lost — is never replaced, even by a concurrent start (unlike an exists-check plus rename).
 */
export async function createKekFile(file: string): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const key = randomBytes(KEK_BYTES);
  try {
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await fh.writeFile(`${key.toString('base64')}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(tmp, file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new KekError('ERR_KEK_EXISTS', `${file} exists; refusing to overwrite a key-encryption key`);
      }
      throw err;
    }
    await syncDir(dir);
  } finally {
    key.fill(0);
    await unlink(tmp).catch(() => {});
  }
}

// The new directory entry survives a crash only once the directory itself is flushed.
async function syncDir(dir: string): Promise<void> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(dir, constants.O_RDONLY);
    await fh.sync();
  } catch {
    // Not supported everywhere (e.g. Windows); the file itself is already flushed.
  } finally {
    await fh?.close();
  }
}
