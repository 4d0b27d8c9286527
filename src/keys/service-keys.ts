import { createPrivateKey, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { calculateJwkThumbprint, type JWK } from 'jose';

export interface SigningKey {
  kid: string;
  privateKey: KeyObject;
  publicJwk: JWK;
}

async function writeAtomic(file: string, data: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, data, { mode: 0o600, flag: 'wx' });
  await rename(tmp, file);
}

/** Creates a private JWK file (Ed25519 or ES256) with an RFC 7638 thumbprint as kid, unless present. */
export async function ensureJwkFile(file: string, kind: 'Ed25519' | 'ES256'): Promise<boolean> {
  if (existsSync(file)) return false;
  const { privateKey } =
    kind === 'Ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  await writeAtomic(
    file,
    `${JSON.stringify({ ...jwk, kid, alg: kind === 'Ed25519' ? 'Ed25519' : 'ES256' }, null, 2)}\n`,
  );
  return true;
}

export class KeyFileError extends Error {
  readonly code = 'ERR_KEY_FILE';
}

/** Loads a private JWK file; the kid is required, the public half is derived. */
export async function loadSigningKey(
  file: string,
  kind: 'Ed25519' | 'ES256',
): Promise<SigningKey & { privateJwk: JWK }> {
  let jwk: JWK;
  try {
    jwk = JSON.parse(await readFile(file, 'utf8')) as JWK;
  } catch (err) {
    throw new KeyFileError(`${file}: cannot read a JWK (${(err as Error).message.split('\n')[0]})`);
  }
  const ok =
    kind === 'Ed25519' ? jwk.kty === 'OKP' && jwk.crv === 'Ed25519' : jwk.kty === 'EC' && jwk.crv === 'P-256';
  if (!ok || typeof jwk.d !== 'string' || typeof jwk.kid !== 'string') {
    throw new KeyFileError(`${file}: expected a private ${kind} JWK with a kid`);
  }
  const privateKey = createPrivateKey({ key: jwk as never, format: 'jwk' });
  const { d: _d, ...pub } = jwk;
  return { kid: jwk.kid, privateKey, publicJwk: pub, privateJwk: jwk };
}
