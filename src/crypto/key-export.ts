import { CompactEncrypt, calculateJwkThumbprint, compactDecrypt, importJWK, type JWK } from 'jose';

export interface ExportedKey {
  kid: string;
  key: Uint8Array;
}

export class KeyExportError extends Error {
  readonly code = 'ERR_KEY_EXPORT';
}

/**
 * The key ceremony (DESIGN §5): a partner's secret keys as a compact JWE (ECDH-ES+A256KW, A256GCM) to
 * the partner's own registered encryption key, written to a file for delivery on another channel —
 * never an API. The RFC 7638 thumbprints are read back over a second channel to confirm that both
 * sides hold the same keys.
 */
export async function exportPartnerKeysAsJwe(opts: {
  plateKeys: ExportedKey[];
  pseudonymKey?: ExportedKey | undefined;
  recipient: JWK;
  partnerId: string;
}): Promise<{
  jwe: string;
  recipientThumbprint: string;
  keyThumbprints: Array<{ kid: string; thumbprint: string }>;
}> {
  if (opts.plateKeys.length === 0) throw new KeyExportError('no plate key to export');
  if (opts.recipient.kty !== 'EC' || opts.recipient.crv !== 'P-256' || opts.recipient.d) {
    throw new KeyExportError('the recipient must be a public P-256 JWK');
  }
  const keys: JWK[] = [
    ...opts.plateKeys.map((k) => ({
      kty: 'oct',
      kid: k.kid,
      use: 'plate-token',
      alg: 'HS256',
      k: Buffer.from(k.key).toString('base64url'),
    })),
    ...(opts.pseudonymKey
      ? [
          {
            kty: 'oct',
            kid: `${opts.pseudonymKey.kid}.subject`,
            use: 'pseudonym',
            alg: 'HS256',
            k: Buffer.from(opts.pseudonymKey.key).toString('base64url'),
          },
        ]
      : []),
  ];
  const payload = new TextEncoder().encode(JSON.stringify({ partner: opts.partnerId, keys }));
  const jwe = await new CompactEncrypt(payload)
    .setProtectedHeader({
      alg: 'ECDH-ES+A256KW',
      enc: 'A256GCM',
      cty: 'jwk-set+json',
      ...(opts.recipient.kid ? { kid: opts.recipient.kid } : {}),
    })
    .encrypt(await importJWK(opts.recipient, 'ECDH-ES+A256KW'));
  return {
    jwe,
    recipientThumbprint: await calculateJwkThumbprint(opts.recipient, 'sha256'),
    keyThumbprints: await Promise.all(
      keys.map(async (k) => ({ kid: k.kid!, thumbprint: await calculateJwkThumbprint(k, 'sha256') })),
    ),
  };
}

/** The partner's side of the ceremony: decrypt with algorithm allowlists, validate strictly. */
export async function importPartnerKeysFromJwe(
  jwe: string,
  privateJwk: JWK,
): Promise<{ partner: string; plateKeys: ExportedKey[]; pseudonymKey: ExportedKey | undefined }> {
  let plaintext: Uint8Array;
  try {
    ({ plaintext } = await compactDecrypt(jwe, await importJWK(privateJwk, 'ECDH-ES+A256KW'), {
      keyManagementAlgorithms: ['ECDH-ES+A256KW'],
      contentEncryptionAlgorithms: ['A256GCM'],
    }));
  } catch (err) {
    throw new KeyExportError(
      `the key package does not decrypt with this key: ${(err as { code?: string }).code ?? 'error'}`,
    );
  }
  const body = JSON.parse(new TextDecoder().decode(plaintext)) as { partner?: unknown; keys?: unknown };
  if (typeof body.partner !== 'string' || !Array.isArray(body.keys))
    throw new KeyExportError('malformed key package');
  const plateKeys: ExportedKey[] = [];
  let pseudonymKey: ExportedKey | undefined;
  for (const k of body.keys as JWK[]) {
    if (k.kty !== 'oct' || typeof k.kid !== 'string' || typeof k.k !== 'string')
      throw new KeyExportError('malformed key');
    const key = Buffer.from(k.k, 'base64url');
    if (key.length !== 32) throw new KeyExportError('keys must be 32 bytes');
    if (k.use === 'plate-token') plateKeys.push({ kid: k.kid, key });
    else if (k.use === 'pseudonym') pseudonymKey = { kid: k.kid, key };
    else throw new KeyExportError('unknown key use');
  }
  return { partner: body.partner, plateKeys, pseudonymKey };
}
