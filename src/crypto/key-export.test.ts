import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { CompactEncrypt, calculateJwkThumbprint, decodeProtectedHeader, importJWK, type JWK } from 'jose';
import { exportPartnerKeysAsJwe, importPartnerKeysFromJwe, KeyExportError } from './key-export.ts';

const code = (c: KeyExportError['code'], message?: RegExp) => (e: unknown) =>
  e instanceof KeyExportError && e.code === c && (!message || message.test(e.message));

function pair(kind: 'p256' | 'x25519' = 'p256', kid = `enc-${randomBytes(4).toString('hex')}`) {
  const { privateKey } =
    kind === 'p256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('x25519');
  const priv = { ...(privateKey.export({ format: 'jwk' }) as JWK), kid };
  const { d: _d, ...pub } = priv;
  return { priv, pub: pub as JWK & { kid: string }, keyObject: privateKey };
}

const plate1 = { kid: 'acme-v1', key: randomBytes(32) };
const plate2 = { kid: 'acme-v2', key: randomBytes(32) };
const subject = { kid: 'acme-v2-subject', key: randomBytes(32) };

/** A package with a chosen header and payload, encrypted for `pub` (to test what import refuses). */
async function seal(pub: JWK, payload: unknown, header: Record<string, unknown> = {}): Promise<string> {
  const h = { alg: 'ECDH-ES+A256KW', enc: 'A256GCM', cty: 'jwk-set+json', kid: pub.kid, ...header };
  const bytes =
    payload instanceof Uint8Array
      ? payload
      : new TextEncoder().encode(typeof payload === 'string' ? payload : JSON.stringify(payload));
  return new CompactEncrypt(bytes)
    .setProtectedHeader(h as { alg: string; enc: string })
    .encrypt(await importJWK(pub, h.alg as string));
}
const oct = (k: { kid: string; key: Uint8Array }, use = 'plate-token') => ({
  kty: 'oct',
  kid: k.kid,
  use,
  alg: 'HS256',
  k: Buffer.from(k.key).toString('base64url'),
});

describe('key ceremony: export and import', () => {
  for (const kind of ['p256', 'x25519'] as const) {
    test(`round trip to a ${kind} recipient`, async () => {
      const r = pair(kind);
      const out = await exportPartnerKeysAsJwe({
        plateKeys: [plate1, plate2],
        pseudonymKey: subject,
        recipient: r.pub,
        partnerId: 'acme',
      });
      assert.equal(out.jwe.split('.').length, 5);
      assert.deepEqual(decodeProtectedHeader(out.jwe), {
        alg: 'ECDH-ES+A256KW',
        enc: 'A256GCM',
        cty: 'jwk-set+json',
        kid: r.pub.kid,
        epk: decodeProtectedHeader(out.jwe).epk,
      });
      const epk = decodeProtectedHeader(out.jwe).epk as JWK | undefined;
      assert.equal(epk?.crv, kind === 'p256' ? 'P-256' : 'X25519');
      for (const k of [plate1, plate2, subject]) {
        assert.ok(!out.jwe.includes(Buffer.from(k.key).toString('base64url')), 'no key in the clear');
      }
      const back = await importPartnerKeysFromJwe(out.jwe, r.priv, { expectedPartnerId: 'acme' });
      assert.equal(back.partner, 'acme');
      assert.deepEqual(
        back.plateKeys.map((k) => [k.kid, Buffer.from(k.key)]),
        [
          [plate1.kid, plate1.key],
          [plate2.kid, plate2.key],
        ],
      );
      assert.deepEqual(
        [back.pseudonymKey?.kid, Buffer.from(back.pseudonymKey!.key)],
        [subject.kid, subject.key],
      );
      assert.deepEqual(back.keyThumbprints, out.keyThumbprints, 'both sides read the same thumbprints');
      // A KeyObject works as the private key too.
      assert.equal((await importPartnerKeysFromJwe(out.jwe, r.keyObject)).plateKeys.length, 2);
    });
  }

  test('the pseudonym key is optional', async () => {
    const r = pair();
    const out = await exportPartnerKeysAsJwe({ plateKeys: [plate1], recipient: r.pub, partnerId: 'acme' });
    const back = await importPartnerKeysFromJwe(out.jwe, r.priv);
    assert.equal(back.pseudonymKey, undefined);
    assert.equal(out.keyThumbprints.length, 1);
  });

  test('RFC 7638 thumbprints: equal to jose’s, stable across exports, the recipient’s too', async () => {
    const r = pair();
    const a = await exportPartnerKeysAsJwe({
      plateKeys: [plate1],
      pseudonymKey: subject,
      recipient: r.pub,
      partnerId: 'acme',
    });
    const b = await exportPartnerKeysAsJwe({
      plateKeys: [plate1],
      pseudonymKey: subject,
      recipient: r.pub,
      partnerId: 'acme',
    });
    assert.notEqual(a.jwe, b.jwe, 'a fresh ephemeral key and IV each time');
    assert.deepEqual(a.keyThumbprints, b.keyThumbprints);
    assert.equal(a.recipientThumbprint, b.recipientThumbprint);
    assert.equal(a.recipientThumbprint, await calculateJwkThumbprint(r.pub, 'sha256'));
    assert.equal(
      a.recipientThumbprint,
      await calculateJwkThumbprint(r.priv, 'sha256'),
      'the partner computes it from its own key',
    );
    assert.deepEqual(a.keyThumbprints, [
      {
        kid: plate1.kid,
        thumbprint: await calculateJwkThumbprint(
          { kty: 'oct', k: plate1.key.toString('base64url') },
          'sha256',
        ),
      },
      {
        kid: subject.kid,
        thumbprint: await calculateJwkThumbprint(
          { kty: 'oct', k: subject.key.toString('base64url') },
          'sha256',
        ),
      },
    ]);
    for (const t of a.keyThumbprints) assert.match(t.thumbprint, /^[A-Za-z0-9_-]{43}$/);
  });
});

describe('key ceremony: what export refuses', () => {
  const r = pair();
  const cases: Array<[string, Parameters<typeof exportPartnerKeysAsJwe>[0], RegExp]> = [
    ['no plate key', { plateKeys: [], recipient: r.pub, partnerId: 'acme' }, /no plate key/],
    ['a private recipient', { plateKeys: [plate1], recipient: r.priv, partnerId: 'acme' }, /private/],
    [
      'an RSA recipient',
      { plateKeys: [plate1], recipient: rsaPublic(), partnerId: 'acme' },
      /P-256 or X25519/,
    ],
    [
      'an Ed25519 recipient',
      { plateKeys: [plate1], recipient: { ...ed25519Public(), kid: 'x' }, partnerId: 'acme' },
      /P-256 or X25519/,
    ],
    [
      'a recipient without kid',
      { plateKeys: [plate1], recipient: { ...r.pub, kid: undefined }, partnerId: 'acme' },
      /kid/,
    ],
    [
      'a recipient for another alg',
      { plateKeys: [plate1], recipient: { ...r.pub, alg: 'ECDH-ES' }, partnerId: 'acme' },
      /alg/,
    ],
    [
      'a signing recipient',
      { plateKeys: [plate1], recipient: { ...r.pub, use: 'sig' }, partnerId: 'acme' },
      /use/,
    ],
    [
      'a recipient not for key agreement',
      { plateKeys: [plate1], recipient: { ...r.pub, key_ops: ['verify'] }, partnerId: 'acme' },
      /key_ops/,
    ],
    [
      'a point off the curve',
      { plateKeys: [plate1], recipient: { ...r.pub, y: r.pub.x! }, partnerId: 'acme' },
      /not a valid public key/,
    ],
    [
      'a short key',
      { plateKeys: [{ kid: 'k', key: randomBytes(16) }], recipient: r.pub, partnerId: 'acme' },
      /32 bytes/,
    ],
    [
      'an empty kid',
      { plateKeys: [{ kid: '', key: randomBytes(32) }], recipient: r.pub, partnerId: 'acme' },
      /key id/,
    ],
    [
      'duplicate kids',
      {
        plateKeys: [plate1],
        pseudonymKey: { ...subject, kid: plate1.kid },
        recipient: r.pub,
        partnerId: 'acme',
      },
      /own kid/,
    ],
    ['no partner', { plateKeys: [plate1], recipient: r.pub, partnerId: '' }, /partner/],
  ];
  for (const [name, opts, message] of cases) {
    test(name, async () => {
      await assert.rejects(exportPartnerKeysAsJwe(opts), code('ERR_KEY_EXPORT', message));
    });
  }
});

describe('key ceremony: what import refuses', () => {
  const r = pair();
  const valid = { partner: 'acme', keys: [oct(plate1)] };

  test('a package for another recipient', async () => {
    const out = await exportPartnerKeysAsJwe({ plateKeys: [plate1], recipient: r.pub, partnerId: 'acme' });
    // Another key under the same kid: the key agreement fails.
    await assert.rejects(
      importPartnerKeysFromJwe(out.jwe, pair('p256', r.pub.kid).priv),
      code('ERR_KEY_IMPORT', /does not decrypt/),
    );
    // Another key with its own kid: refused by name before trying.
    await assert.rejects(
      importPartnerKeysFromJwe(out.jwe, pair().priv),
      code('ERR_KEY_IMPORT', /is for key/),
    );
    // Another curve.
    await assert.rejects(
      importPartnerKeysFromJwe(out.jwe, pair('x25519', r.pub.kid).priv),
      code('ERR_KEY_IMPORT'),
    );
    // A public key cannot decrypt anything.
    await assert.rejects(importPartnerKeysFromJwe(out.jwe, r.pub), code('ERR_KEY_IMPORT', /no private part/));
  });

  test('algorithms outside the allowlist, even when they would decrypt', async () => {
    const secret = randomBytes(32);
    const sym = async (alg: string, enc = 'A256GCM') =>
      new CompactEncrypt(new TextEncoder().encode(JSON.stringify(valid)))
        .setProtectedHeader({ alg, enc, cty: 'jwk-set+json' })
        .encrypt(secret);
    const refused = [
      await sym('A256KW'),
      await sym('dir'),
      await sym('A256GCMKW'),
      await seal(r.pub, valid, { alg: 'ECDH-ES' }),
      await seal(r.pub, valid, { alg: 'ECDH-ES+A128KW' }),
      await seal(r.pub, valid, { enc: 'A128GCM' }),
      await seal(r.pub, valid, { enc: 'A256CBC-HS512' }),
    ];
    for (const jwe of refused) {
      const h = decodeProtectedHeader(jwe);
      await assert.rejects(
        importPartnerKeysFromJwe(jwe, r.priv),
        code('ERR_KEY_IMPORT_ALG'),
        `${h.alg} ${h.enc}`,
      );
    }
  });

  test('an altered package', async () => {
    const jwe = await seal(r.pub, valid);
    const parts = jwe.split('.');
    const ct = Buffer.from(parts[3]!, 'base64url');
    ct[0]! ^= 1;
    parts[3] = ct.toString('base64url');
    await assert.rejects(
      importPartnerKeysFromJwe(parts.join('.'), r.priv),
      code('ERR_KEY_IMPORT', /does not decrypt/),
    );
    // The protected header is authenticated as AAD: changing cty breaks it too.
    const header = { ...decodeProtectedHeader(jwe), cty: 'json' };
    const swapped = [
      Buffer.from(JSON.stringify(header)).toString('base64url'),
      ...jwe.split('.').slice(1),
    ].join('.');
    await assert.rejects(importPartnerKeysFromJwe(swapped, r.priv), code('ERR_KEY_IMPORT'));
    for (const bad of ['', 'a.b.c', `${jwe}.x`, 'x'.repeat(70_000)]) {
      await assert.rejects(importPartnerKeysFromJwe(bad, r.priv), code('ERR_KEY_IMPORT'));
    }
  });

  test('a package for another partner, when the partner is known', async () => {
    await assert.rejects(
      importPartnerKeysFromJwe(await seal(r.pub, valid), r.priv, { expectedPartnerId: 'other' }),
      code('ERR_KEY_IMPORT', /for partner acme/),
    );
  });

  test('payloads that are not exactly a key package', async () => {
    const bad: Array<[string, unknown, Record<string, unknown>?]> = [
      ['another content type', valid, { cty: 'json' }],
      ['no content type', valid, { cty: undefined }],
      ['not JSON', '{"keys": ['],
      ['not UTF-8', Buffer.from([0x7b, 0xff, 0x7d])],
      ['an array', [oct(plate1)]],
      ['no partner', { keys: [oct(plate1)] }],
      ['no keys', { partner: 'acme', keys: [] }],
      ['keys not an array', { partner: 'acme', keys: { a: 1 } }],
      ['only a pseudonym key', { partner: 'acme', keys: [oct(subject, 'pseudonym')] }],
      [
        'two pseudonym keys',
        { partner: 'acme', keys: [oct(plate1), oct(subject, 'pseudonym'), oct({ ...plate2 }, 'pseudonym')] },
      ],
      ['duplicate kids', { partner: 'acme', keys: [oct(plate1), oct({ ...plate2, kid: plate1.kid })] }],
      ['an unknown use', { partner: 'acme', keys: [oct(plate1, 'enc')] }],
      ['another kty', { partner: 'acme', keys: [{ ...oct(plate1), kty: 'EC' }] }],
      ['another alg', { partner: 'acme', keys: [{ ...oct(plate1), alg: 'HS512' }] }],
      ['no kid', { partner: 'acme', keys: [{ ...oct(plate1), kid: undefined }] }],
      ['a 16-byte key', { partner: 'acme', keys: [oct({ kid: 'k', key: randomBytes(16) })] }],
      ['a 33-byte key', { partner: 'acme', keys: [oct({ kid: 'k', key: randomBytes(33) })] }],
      ['padding in k', { partner: 'acme', keys: [{ ...oct(plate1), k: `${oct(plate1).k}=` }] }],
      [
        'base64 alphabet in k',
        { partner: 'acme', keys: [{ ...oct(plate1), k: `+${oct(plate1).k.slice(1)}` }] },
      ],
      [
        'non-canonical k',
        { partner: 'acme', keys: [{ ...oct(plate1), k: `${oct(plate1).k.slice(0, 42)}B` }] },
      ],
      ['a null key', { partner: 'acme', keys: [null] }],
    ];
    for (const [name, payload, header] of bad) {
      const jwe = await seal(r.pub, payload, header);
      await assert.rejects(importPartnerKeysFromJwe(jwe, r.priv), code('ERR_KEY_IMPORT'), name);
    }
  });

  test('members it does not know are ignored (RFC 7517 §4, §5)', async () => {
    const jwe = await seal(r.pub, {
      partner: 'acme',
      issued: '2025-01-01',
      keys: [{ ...oct(plate1), x5t: 'ignored' }],
    });
    const back = await importPartnerKeysFromJwe(jwe, r.priv);
    assert.deepEqual(Buffer.from(back.plateKeys[0]!.key), plate1.key);
  });
});

function rsaPublic(): JWK {
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...(publicKey.export({ format: 'jwk' }) as JWK), kid: 'rsa' };
}
function ed25519Public(): JWK {
  const { publicKey } = generateKeyPairSync('ed25519');
  return publicKey.export({ format: 'jwk' }) as JWK;
}
