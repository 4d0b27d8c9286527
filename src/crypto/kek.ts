import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** The key-encryption key: wraps data keys (never data). */
export interface Kek {
  /** First 8 bytes (hex) of SHA-256 of the key: shows which KEK wrapped a data key, reveals nothing. */
  readonly id: string;
  wrap(dataKey: Buffer): Buffer;
  unwrap(wrapped: Buffer): Buffer;
}

export class KekError extends Error {
  readonly code: 'ERR_KEK' | 'ERR_KEK_UNWRAP';
  constructor(code: KekError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

// RFC 3394 §2.2.3.1 default initial value.
const IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');

/** AES-256 key wrap (RFC 3394): integrity-checked, so a wrong KEK is detected on unwrap. */
export function kekFromBytes(bytes: Uint8Array, id?: string): Kek {
  if (bytes.length !== 32) throw new KekError('ERR_KEK', 'the key-encryption key must be 32 bytes');
  const key = Buffer.from(bytes);
  return {
    id: id ?? createHash('sha256').update(key).digest('hex').slice(0, 16),
    wrap(dataKey) {
      const c = createCipheriv('id-aes256-wrap', key, IV);
      return Buffer.concat([c.update(dataKey), c.final()]);
    },
    unwrap(wrapped) {
      try {
        const d = createDecipheriv('id-aes256-wrap', key, IV);
        return Buffer.concat([d.update(wrapped), d.final()]);
      } catch {
        throw new KekError('ERR_KEK_UNWRAP', 'a data key does not unwrap with this key-encryption key');
      }
    },
  };
}

export function kekFromBase64(text: string): Kek {
  const bytes = Buffer.from(text.trim(), 'base64');
  if (bytes.length !== 32) throw new KekError('ERR_KEK', 'SMART_HOME_KEK must be the base64 of 32 bytes');
  return kekFromBytes(bytes);
}

export async function loadKekFromFile(file: string): Promise<Kek> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new KekError('ERR_KEK', `cannot read the key-encryption key file ${file}`);
  }
  const bytes = Buffer.from(text.trim(), 'base64');
  if (bytes.length !== 32) throw new KekError('ERR_KEK', `${file} must hold the base64 of 32 bytes`);
  return kekFromBytes(bytes);
}

/** Creates a new KEK file (0600, written atomically); refuses to overwrite one. */
export async function createKekFile(file: string): Promise<void> {
  if (existsSync(file))
    throw new KekError('ERR_KEK', `${file} exists; refusing to overwrite a key-encryption key`);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
  await rename(tmp, file);
}
