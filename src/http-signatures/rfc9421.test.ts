import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, verify } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { contentDigest } from './content-digest.ts';
import { MemoryReplayCache, type ReplayCache } from './replay-cache.ts';
import {
  createSignature,
  type HeaderMap,
  parseSignatureHeaders,
  REQUEST_COMPONENTS_WITH_BODY,
  REQUEST_COMPONENTS_WITHOUT_BODY,
  SignatureBaseError,
  type SignatureErrorCode,
  signatureBase,
  signRequest,
  signResponse,
  type VerifyRequestOptions,
  verifyRequest,
  verifyResponse,
} from './rfc9421.ts';

// ---------------------------------------------------------------------------------------------
// RFC 9421 Appendix B vectors
// ---------------------------------------------------------------------------------------------

// B.1.4 test-key-ed25519: the RFC's published test key (not a secret of ours), as a JWK so that no
// PEM private-key block sits in the repository.
const ED25519_PRIVATE = createPrivateKey({
  format: 'jwk',
  key: {
    kty: 'OKP',
    crv: 'Ed25519',
    d: 'n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU',
    x: 'JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs',
  },
});
const ED25519_PUBLIC = createPublicKey(
  '-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n',
);
// B.1.3 test-key-ecc-p256 (public half): verifies the RFC's own response signatures over our bases.
const ECC_P256_PUBLIC = createPublicKey(
  '-----BEGIN PUBLIC KEY-----\n' +
    'MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqIVYZVLCrPZHGHjP17CTW0/+D9Lf\n' +
    'w0EkjqF7xB4FivAxzic30tMM4GF+hR6Dxh71Z50VGGdldkkDXZCnTNnoXQ==\n' +
    '-----END PUBLIC KEY-----\n',
);

// B.2 test-request
const RFC_TARGET_URI = 'https://example.com/foo?param=Value&Pet=dog';
const RFC_REQUEST_DIGEST =
  'sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:';
const RFC_REQUEST_HEADERS = {
  host: 'example.com',
  date: 'Tue, 20 Apr 2021 02:07:55 GMT',
  'content-type': 'application/json',
  'content-digest': RFC_REQUEST_DIGEST,
  'content-length': '18',
};

// B.2.6 Signing a Request Using ed25519
const B26_BASE = [
  '"date": Tue, 20 Apr 2021 02:07:55 GMT',
  '"@method": POST',
  '"@path": /foo',
  '"@authority": example.com',
  '"content-type": application/json',
  '"content-length": 18',
  '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"',
].join('\n');
const B26_SIGNATURE_INPUT =
  'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"';
const B26_SIGNATURE =
  'sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:';

// §2.4: the request sig1 that the example responses are bound to.
const RFC_REQUEST_SIG1 =
  'sig1=:LAH8BjcfcOcLojiuOBFWn0P5keD3xAOuJRGziCLuD8r5MW9S0RoXXLzLSRfGY/3SF8kVIkHjE13SEFdTo4Af/fJ/Pu9wheqoLVdwXyY/UkBIS1M8Brc8IODsn5DFIrG0IrburbLi0uCc+E2ZIIb6HbUJ+o+jP58JelMTe0QE3IpWINTEzpxjqDf5/Df+InHCAkQCTuKsamjWXUpyOT1Wkxi7YPVNOjW4MfNuTZ9HdbD2Tr65+BXeTG9ZS/9SWuXAc+BZ8WyPz0QRz//ec3uWXd7bYYODSjRAxHqX+S1ag3LZElYyUKaAIjZ8MGOt4gXEwCSLDv/zqxZeWLj/PDkn6w==:';
const RFC_SIGNED_REQUEST = {
  method: 'POST',
  targetUri: RFC_TARGET_URI,
  headers: {
    ...RFC_REQUEST_HEADERS,
    'signature-input':
      'sig1=("@method" "@authority" "@path" "content-digest" "content-length" "content-type");created=1618884475;keyid="test-key-rsa-pss"',
    signature: RFC_REQUEST_SIG1,
  },
};
const RFC_503_HEADERS = {
  date: 'Tue, 20 Apr 2021 02:07:56 GMT',
  'content-type': 'application/json',
  'content-length': '62',
  'content-digest':
    'sha-512=:0Y6iCBzGg5rZtoXS95Ijz03mslf6KAMCloESHObfwnHJDbkkWWQz6PhhU9kxsTbARtY2PTBOzq24uJFpHsMuAg==:',
};

function params(entries: Array<[string, string | number]>): Map<string, string | number> {
  return new Map(entries);
}

function verifyP1363(base: string, signatureB64: string): boolean {
  return verify(
    'sha256',
    Buffer.from(base),
    { key: ECC_P256_PUBLIC, dsaEncoding: 'ieee-p1363' },
    Buffer.from(signatureB64, 'base64'),
  );
}

describe('RFC 9421 Appendix B vectors', () => {
  it('B.1.4: the Ed25519 test key pair belongs together', () => {
    assert.deepEqual(
      createPublicKey(ED25519_PRIVATE).export({ format: 'jwk' }),
      ED25519_PUBLIC.export({ format: 'jwk' }),
    );
  });

  it('B.2.6: same signature base, Signature-Input and signature, byte for byte (Ed25519 is deterministic)', () => {
    const signed = createSignature({
      message: { method: 'POST', targetUri: RFC_TARGET_URI, headers: RFC_REQUEST_HEADERS },
      components: ['date', '@method', '@path', '@authority', 'content-type', 'content-length'],
      params: params([
        ['created', 1618884473],
        ['keyid', 'test-key-ed25519'],
      ]),
      privateKey: ED25519_PRIVATE,
      label: 'sig-b26',
    });
    assert.equal(signed.base, B26_BASE);
    assert.equal(signed['signature-input'], B26_SIGNATURE_INPUT);
    assert.equal(signed.signature, B26_SIGNATURE);
  });

  it('B.2.6: the RFC Signature-Input parses back into the RFC base, and its signature verifies', () => {
    const parsed = parseSignatureHeaders(
      { 'signature-input': B26_SIGNATURE_INPUT, signature: B26_SIGNATURE },
      'sig-b26',
    );
    assert.ok(!('ok' in parsed), 'parsed');
    const base = signatureBase(
      { method: 'POST', targetUri: RFC_TARGET_URI, headers: RFC_REQUEST_HEADERS },
      parsed.components,
      parsed.params,
    );
    assert.equal(base, B26_BASE);
    assert.equal(verify(null, Buffer.from(base), ED25519_PUBLIC, parsed.signature), true);
  });

  it('B.2.6 content: the test-request body digests to the RFC 9530 sha-256 value', () => {
    assert.equal(
      contentDigest(Buffer.from('{"hello": "world"}')),
      'sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:',
    );
  });

  it('§2.4: response base with "signature";req;key="sig1" matches the RFC and its ECDSA signature verifies', () => {
    const base = signatureBase(
      { status: 503, headers: RFC_503_HEADERS, request: RFC_SIGNED_REQUEST },
      [
        '@status',
        'content-length',
        'content-type',
        '"signature";req;key="sig1"',
        '"@authority";req',
        '"@method";req',
      ],
      params([
        ['created', 1618884479],
        ['keyid', 'test-key-ecc-p256'],
      ]),
    );
    assert.equal(
      base,
      [
        '"@status": 503',
        '"content-length": 62',
        '"content-type": application/json',
        `"signature";req;key="sig1": ${RFC_REQUEST_SIG1.slice('sig1='.length)}`,
        '"@authority";req: example.com',
        '"@method";req: POST',
        '"@signature-params": ("@status" "content-length" "content-type" "signature";req;key="sig1" "@authority";req "@method";req);created=1618884479;keyid="test-key-ecc-p256"',
      ].join('\n'),
    );
    assert.equal(
      verifyP1363(
        base,
        'mh17P4TbYYBmBwsXPT4nsyVzW4Rp9Fb8WcvnfqKCQLoMvzOBLD/n32tL/GPW6XE5GAS5bdsg1khK6lBzV1Cx/Q==',
      ),
      true,
    );
  });

  it('§2.4: response base covering request @path and content-digest with ;req matches and verifies', () => {
    const base = signatureBase(
      { status: 503, headers: RFC_503_HEADERS, request: RFC_SIGNED_REQUEST },
      [
        '@status',
        'content-digest',
        'content-type',
        '"@authority";req',
        '"@method";req',
        '"@path";req',
        '"content-digest";req',
      ],
      params([
        ['created', 1618884479],
        ['keyid', 'test-key-ecc-p256'],
      ]),
    );
    assert.equal(
      base,
      [
        '"@status": 503',
        `"content-digest": ${RFC_503_HEADERS['content-digest']}`,
        '"content-type": application/json',
        '"@authority";req: example.com',
        '"@method";req: POST',
        '"@path";req: /foo',
        `"content-digest";req: ${RFC_REQUEST_DIGEST}`,
        '"@signature-params": ("@status" "content-digest" "content-type" "@authority";req "@method";req "@path";req "content-digest";req);created=1618884479;keyid="test-key-ecc-p256"',
      ].join('\n'),
    );
    assert.equal(
      verifyP1363(
        base,
        'dMT/A/76ehrdBTD/2Xx8QuKV6FoyzEP/I9hdzKN8LQJLNgzU4W767HK05rx1i8meNQQgQPgQp8wq2ive3tV5Ag==',
      ),
      true,
    );
  });

  it('B.2.3: @query and the other derived components of the full-coverage example', () => {
    const base = signatureBase(
      { method: 'POST', targetUri: RFC_TARGET_URI, headers: RFC_REQUEST_HEADERS },
      [
        'date',
        '@method',
        '@path',
        '@query',
        '@authority',
        'content-type',
        'content-digest',
        'content-length',
      ],
      params([
        ['created', 1618884473],
        ['keyid', 'test-key-rsa-pss'],
      ]),
    );
    assert.equal(
      base,
      [
        '"date": Tue, 20 Apr 2021 02:07:55 GMT',
        '"@method": POST',
        '"@path": /foo',
        '"@query": ?param=Value&Pet=dog',
        '"@authority": example.com',
        '"content-type": application/json',
        `"content-digest": ${RFC_REQUEST_DIGEST}`,
        '"content-length": 18',
        '"@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss"',
      ].join('\n'),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Signature base details (RFC 9421 §2)
// ---------------------------------------------------------------------------------------------

describe('signatureBase', () => {
  const p = params([['created', 1]]);
  const base = (targetUri: string, components: string[], headers: HeaderMap = {}) =>
    signatureBase({ method: 'GET', targetUri, headers }, components, p).split('\n').slice(0, -1);

  it('@authority is lower-cased without the default port; @path "/" and @query "?" when empty (§2.2)', () => {
    assert.deepEqual(base('https://Example.COM:443', ['@authority', '@path', '@query', '@scheme']), [
      '"@authority": example.com',
      '"@path": /',
      '"@query": ?',
      '"@scheme": https',
    ]);
    assert.deepEqual(
      base('HTTP://h:8080/a%2Fb/../c?', ['@authority', '@path', '@query', '@request-target']),
      [
        '"@authority": h:8080',
        '"@path": /a%2Fb/../c', // as sent: not decoded, dot segments kept
        '"@query": ?',
        '"@request-target": /a%2Fb/../c?',
      ],
    );
  });

  it('@target-uri is the URI as given', () => {
    assert.deepEqual(base('https://h:9443/partner/v1/x?b=2&a=1', ['@target-uri']), [
      '"@target-uri": https://h:9443/partner/v1/x?b=2&a=1',
    ]);
  });

  it('field values: name lower-cased, SP/HTAB trimmed, lines joined with ", ", obs-fold folded (§2.1)', () => {
    const headers = { 'x-list': ['  a ', '\tb'], 'x-fold': 'one\r\n  two', 'Cache-Control': 'max-age=60' };
    assert.deepEqual(base('https://h/', ['X-List', 'x-fold', 'cache-control'], headers), [
      '"x-list": a, b',
      '"x-fold": one two',
      '"cache-control": max-age=60',
    ]);
  });

  it('does not read inherited object properties as fields', () => {
    for (const name of ['constructor', '__proto__', 'tostring']) {
      assert.throws(
        () => base('https://h/', [name]),
        (err: unknown) => err instanceof SignatureBaseError && err.code === 'ERR_SIG_COMPONENT_MISSING',
      );
    }
  });

  it('finds a field under a mixed-case key when no lower-case key exists', () => {
    assert.deepEqual(base('https://h/', ['content-digest'], { 'Content-Digest': 'sha-256=:x:' }), [
      '"content-digest": sha-256=:x:',
    ]);
  });

  it('an empty field value is present, with an empty value', () => {
    assert.deepEqual(base('https://h/', ['x-empty'], { 'x-empty': '' }), ['"x-empty": ']);
  });

  it(';key serializes the dictionary member again (§2.1.2)', () => {
    const headers = { 'example-dict': ' a=1,    b=2;x=1;y=2,   c=(a   b   c)  ' };
    assert.deepEqual(
      base(
        'https://h/',
        ['"example-dict";key="a"', '"example-dict";key="b"', '"example-dict";key="c"'],
        headers,
      ),
      ['"example-dict";key="a": 1', '"example-dict";key="b": 2;x=1;y=2', '"example-dict";key="c": (a b c)'],
    );
  });

  const errors: Array<[string, () => unknown, SignatureErrorCode]> = [
    ['a missing field', () => base('https://h/', ['authorization']), 'ERR_SIG_COMPONENT_MISSING'],
    [
      'a missing dictionary member',
      () => base('https://h/', ['"d";key="z"'], { d: 'a=1' }),
      'ERR_SIG_COMPONENT_MISSING',
    ],
    [
      'a non-dictionary ;key field',
      () => base('https://h/', ['"d";key="a"'], { d: 'a=1,' }),
      'ERR_SIG_MALFORMED',
    ],
    [
      'a CR/LF in a field value (line injection)',
      () => base('https://h/', ['x'], { x: 'a\n"@method": GET' }),
      'ERR_SIG_MALFORMED',
    ],
    ['a non-ASCII field value', () => base('https://h/', ['x'], { x: 'é' }), 'ERR_SIG_MALFORMED'],
    ['an unknown derived component', () => base('https://h/', ['@foo']), 'ERR_SIG_MALFORMED'],
    ['an unsupported parameter', () => base('https://h/', ['"x";bs'], { x: 'a' }), 'ERR_SIG_MALFORMED'],
    [';req on a request (§2.4)', () => base('https://h/', ['"@method";req']), 'ERR_SIG_MALFORMED'],
    ['@status on a request', () => base('https://h/', ['@status']), 'ERR_SIG_COMPONENT_MISSING'],
    ['a repeated component', () => base('https://h/', ['@method', '@method']), 'ERR_SIG_MALFORMED'],
    [
      '@signature-params as a component',
      () => base('https://h/', ['@signature-params']),
      'ERR_SIG_MALFORMED',
    ],
    ['userinfo in the target URI', () => base('https://u@h/', ['@authority']), 'ERR_SIG_MALFORMED'],
    ['a relative target URI', () => base('/foo', ['@path']), 'ERR_SIG_MALFORMED'],
  ];
  for (const [what, run, code] of errors) {
    it(`fails with ${code} on ${what}`, () => {
      assert.throws(run, (err: unknown) => err instanceof SignatureBaseError && err.code === code);
    });
  }

  it(';req on a response without the related request is an error', () => {
    assert.throws(
      () => signatureBase({ status: 200, headers: {} }, ['"@method";req'], p),
      (err: unknown) => err instanceof SignatureBaseError && err.code === 'ERR_SIG_COMPONENT_MISSING',
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Contract §3 requests and responses
// ---------------------------------------------------------------------------------------------

const NOW = 1_700_000_000;
const partner = generateKeyPairSync('ed25519');
const smartHome = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
const TARGET = 'https://smart-home.example:9443/partner/v1/barriers/gate-1/decisions';
const BODY = Buffer.from('{"eventId":"0190c6d4-0000-7000-8000-000000000000","direction":"entry"}');

function signedPost(overrides: Partial<Parameters<typeof signRequest>[0]> = {}) {
  const headers: Record<string, string> = {
    host: 'smart-home.example:9443',
    authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig',
    'content-type': 'application/json',
    'content-digest': contentDigest(BODY),
  };
  const sig = signRequest({
    method: 'POST',
    targetUri: TARGET,
    headers,
    components: REQUEST_COMPONENTS_WITH_BODY,
    privateKey: partner.privateKey,
    keyid: 'partner-k1',
    created: NOW,
    ...overrides,
  });
  return { ...headers, ...sig } as Record<string, string>;
}

function verifyOpts(headers: HeaderMap, extra: Partial<VerifyRequestOptions> = {}): VerifyRequestOptions {
  return {
    method: 'POST',
    targetUri: TARGET,
    headers,
    body: BODY,
    requiredComponents: REQUEST_COMPONENTS_WITH_BODY,
    resolveKey: (kid) => (kid === 'partner-k1' ? partner.publicKey : undefined),
    replayCache: new MemoryReplayCache(),
    now: NOW,
    ...extra,
  };
}

async function expectCode(opts: VerifyRequestOptions, code: SignatureErrorCode): Promise<void> {
  const result = await verifyRequest(opts);
  assert.equal(result.ok, false, `expected ${code}`);
  if (!result.ok) assert.equal(result.code, code, result.message);
}

describe('signRequest', () => {
  it('writes the contract §3 Signature-Input with parameters in order created, keyid, nonce, alg', () => {
    const headers = signedPost({ nonce: 'AAAAAAAAAAAAAAAAAAAAAA', created: 1700000000, keyid: 'k1' });
    assert.equal(
      headers['signature-input'],
      'sig1=("@method" "@target-uri" "authorization" "content-digest");created=1700000000;keyid="k1";nonce="AAAAAAAAAAAAAAAAAAAAAA";alg="ed25519"',
    );
    assert.match(headers.signature!, /^sig1=:[A-Za-z0-9+/]{86}==:$/);
  });

  it('defaults: a fresh 16-byte base64url nonce each time, created = now, label sig1', () => {
    const before = Math.floor(Date.now() / 1000);
    const a = signedPost({ created: undefined });
    const b = signedPost({ created: undefined });
    const nonceOf = (h: Record<string, string>) => /;nonce="([^"]+)"/.exec(h['signature-input']!)![1]!;
    assert.match(nonceOf(a), /^[A-Za-z0-9_-]{22}$/);
    assert.equal(Buffer.from(nonceOf(a), 'base64url').length, 16);
    assert.notEqual(nonceOf(a), nonceOf(b));
    const created = Number(/;created=(\d+)/.exec(a['signature-input']!)![1]);
    assert.ok(created >= before && created <= Math.floor(Date.now() / 1000) + 1);
    assert.ok(a['signature-input']!.startsWith('sig1=('));
  });

  it('refuses a key that is not an Ed25519 private key, and a header missing from the message', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    assert.throws(() => signedPost({ privateKey: rsa.privateKey }), TypeError);
    assert.throws(() => signedPost({ privateKey: partner.publicKey as KeyObject }), TypeError);
    assert.throws(() => signedPost({ components: ['@method', 'x-absent'] }), SignatureBaseError);
  });
});

describe('verifyRequest', () => {
  it('round trip with a body', async () => {
    const headers = signedPost({ nonce: 'n-000000000000000000000001' });
    const result = await verifyRequest(verifyOpts(headers));
    assert.deepEqual(result, {
      ok: true,
      keyid: 'partner-k1',
      created: NOW,
      nonce: 'n-000000000000000000000001',
      label: 'sig1',
    });
  });

  it('round trip without a body (GET), with an async key resolver', async () => {
    const target = 'https://smart-home.example:9443/partner/v1/journal/checkpoint';
    const headers = { authorization: 'Bearer t' };
    const sig = signRequest({
      method: 'GET',
      targetUri: target,
      headers,
      components: REQUEST_COMPONENTS_WITHOUT_BODY,
      privateKey: partner.privateKey,
      keyid: 'partner-k1',
      created: NOW,
    });
    const result = await verifyRequest({
      ...verifyOpts({ ...headers, ...sig }),
      method: 'GET',
      targetUri: target,
      body: undefined,
      requiredComponents: REQUEST_COMPONENTS_WITHOUT_BODY,
      resolveKey: async () => partner.publicKey,
    });
    assert.equal(result.ok, true);
  });

  it('accepts created exactly 60 s old or ahead (the window is inclusive)', async () => {
    assert.equal((await verifyRequest(verifyOpts(signedPost({ created: NOW - 60 })))).ok, true);
    assert.equal((await verifyRequest(verifyOpts(signedPost({ created: NOW + 60 })))).ok, true);
  });

  it('accepts header values given as arrays (several field lines)', async () => {
    const headers: Record<string, string | string[]> = signedPost();
    headers['signature-input'] = [headers['signature-input'] as string];
    headers['signature'] = ['other=:AAAA:', headers['signature'] as string];
    assert.equal((await verifyRequest(verifyOpts(headers))).ok, true);
  });

  describe('rejections', () => {
    it('ERR_SIG_MISSING: no signature fields', async () => {
      const { signature: _s, 'signature-input': _i, ...unsigned } = signedPost();
      await expectCode(verifyOpts(unsigned), 'ERR_SIG_MISSING');
    });

    it('ERR_SIG_MISSING: Signature without Signature-Input, and the reverse', async () => {
      const { signature: _s, ...noSignature } = signedPost();
      await expectCode(verifyOpts(noSignature), 'ERR_SIG_MISSING');
      const { 'signature-input': _i, ...noInput } = signedPost();
      await expectCode(verifyOpts(noInput), 'ERR_SIG_MISSING');
    });

    it('ERR_SIG_MISSING: no sig1 label (another label only)', async () => {
      const headers = signedPost({ label: 'sig2' });
      await expectCode(verifyOpts(headers), 'ERR_SIG_MISSING');
      // Both labels must match: sig1 in Signature-Input but only sig2 in Signature.
      const mixed = { ...signedPost(), signature: signedPost({ label: 'sig2' }).signature! };
      await expectCode(verifyOpts(mixed), 'ERR_SIG_MISSING');
    });

    const malformed: Array<[string, (h: Record<string, string>) => void]> = [
      ['Signature-Input not a dictionary', (h) => (h['signature-input'] = 'sig1=("@method"')],
      ['Signature not a byte sequence', (h) => (h['signature'] = 'sig1="abc"')],
      [
        'Signature of the wrong length',
        (h) => (h['signature'] = `sig1=:${Buffer.alloc(63).toString('base64')}:`),
      ],
      ['Signature-Input member not an inner list', (h) => (h['signature-input'] = 'sig1="@method"')],
      ['a repeated sig1 label', (h) => (h['signature'] = `${h['signature']}, ${h['signature']}`)],
      ['created missing', (h) => (h['signature-input'] = h['signature-input']!.replace(/;created=\d+/, ''))],
      [
        'created not an integer',
        (h) => (h['signature-input'] = h['signature-input']!.replace(/created=\d+/, 'created="1"')),
      ],
      ['keyid missing', (h) => (h['signature-input'] = h['signature-input']!.replace(/;keyid="[^"]*"/, ''))],
      ['nonce missing', (h) => (h['signature-input'] = h['signature-input']!.replace(/;nonce="[^"]*"/, ''))],
      [
        'nonce shorter than 16 bytes',
        (h) => (h['signature-input'] = h['signature-input']!.replace(/nonce="[^"]*"/, 'nonce="short"')),
      ],
      [
        'a component identifier that is not a string',
        (h) => (h['signature-input'] = h['signature-input']!.replace('"@method"', 'method')),
      ],
      [
        'an upper-case field name',
        (h) => (h['signature-input'] = h['signature-input']!.replace('"authorization"', '"Authorization"')),
      ],
      [
        ';req on a request component',
        (h) => (h['signature-input'] = h['signature-input']!.replace('"@method"', '"@method";req')),
      ],
      [
        'a CR/LF injected in a signature field',
        (h) => (h['signature-input'] = `${h['signature-input']}\r\nx`),
      ],
    ];
    for (const [what, mutate] of malformed) {
      it(`ERR_SIG_MALFORMED: ${what}`, async () => {
        const headers = signedPost();
        mutate(headers);
        await expectCode(verifyOpts(headers), 'ERR_SIG_MALFORMED');
      });
    }

    it('ERR_SIG_UNKNOWN_KEY: keyid not registered for this partner, or resolver failure', async () => {
      await expectCode(verifyOpts(signedPost({ keyid: 'someone-else' })), 'ERR_SIG_UNKNOWN_KEY');
      await expectCode(
        verifyOpts(signedPost(), {
          resolveKey: () => {
            throw new Error('directory down');
          },
        }),
        'ERR_SIG_UNKNOWN_KEY',
      );
    });

    it('ERR_SIG_COMPONENT_MISSING: a required component is not covered', async () => {
      const headers = signedPost({ components: ['@method', '@target-uri', 'content-digest'] });
      await expectCode(verifyOpts(headers), 'ERR_SIG_COMPONENT_MISSING');
    });

    it('ERR_SIG_COMPONENT_MISSING: a covered field is absent from the message', async () => {
      const { authorization: _a, ...headers } = signedPost();
      await expectCode(verifyOpts(headers), 'ERR_SIG_COMPONENT_MISSING');
    });

    it('ERR_SIG_COMPONENT_MISSING: a body without content-digest covered, whatever the policy says', async () => {
      const headers = signedPost({ components: REQUEST_COMPONENTS_WITHOUT_BODY });
      await expectCode(
        verifyOpts(headers, { requiredComponents: REQUEST_COMPONENTS_WITHOUT_BODY }),
        'ERR_SIG_COMPONENT_MISSING',
      );
    });

    it('ERR_SIG_ALG: alg other than ed25519', async () => {
      const headers = signedPost();
      headers['signature-input'] = headers['signature-input']!.replace(
        'alg="ed25519"',
        'alg="rsa-pss-sha512"',
      );
      await expectCode(verifyOpts(headers), 'ERR_SIG_ALG');
    });

    it('ERR_SIG_ALG: the registered key is not an Ed25519 key', async () => {
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      await expectCode(verifyOpts(signedPost(), { resolveKey: () => ec.publicKey }), 'ERR_SIG_ALG');
    });

    it('ERR_SIG_CREATED_SKEW: created 61 s old, or 61 s ahead', async () => {
      await expectCode(verifyOpts(signedPost({ created: NOW - 61 })), 'ERR_SIG_CREATED_SKEW');
      await expectCode(verifyOpts(signedPost({ created: NOW + 61 })), 'ERR_SIG_CREATED_SKEW');
      await expectCode(
        verifyOpts(signedPost({ created: NOW - 10 }), { maxSkewSeconds: 5 }),
        'ERR_SIG_CREATED_SKEW',
      );
    });

    it('ERR_SIG_EXPIRED: an expires parameter in the past', async () => {
      const headers = createSignature({
        message: { method: 'POST', targetUri: TARGET, headers: signedPost() },
        components: REQUEST_COMPONENTS_WITH_BODY,
        params: params([
          ['created', NOW - 30],
          ['expires', NOW - 1],
          ['keyid', 'partner-k1'],
          ['nonce', 'AAAAAAAAAAAAAAAAAAAAAA'],
        ]),
        privateKey: partner.privateKey,
      });
      await expectCode(verifyOpts({ ...signedPost(), ...headers }), 'ERR_SIG_EXPIRED');
    });

    it('ERR_SIG_REPLAY: the same nonce twice for the same keyid', async () => {
      const replayCache = new MemoryReplayCache();
      const headers = signedPost();
      assert.equal((await verifyRequest(verifyOpts(headers, { replayCache }))).ok, true);
      await expectCode(verifyOpts(headers, { replayCache }), 'ERR_SIG_REPLAY');
      // Even re-signed (new signature, same nonce): the nonce is what is tracked.
      const nonce = /;nonce="([^"]+)"/.exec(headers['signature-input']!)![1]!;
      await expectCode(
        verifyOpts(signedPost({ nonce, created: NOW + 1 }), { replayCache }),
        'ERR_SIG_REPLAY',
      );
    });

    it('ERR_SIG_REPLAY_CACHE: the cache cannot answer (fail closed)', async () => {
      const broken: ReplayCache = {
        remember: () => Promise.reject(new Error('redis down')),
        close: async () => {},
      };
      await expectCode(verifyOpts(signedPost(), { replayCache: broken }), 'ERR_SIG_REPLAY_CACHE');
      const full = new MemoryReplayCache({ maxEntries: 1 });
      assert.equal((await verifyRequest(verifyOpts(signedPost(), { replayCache: full }))).ok, true);
      await expectCode(verifyOpts(signedPost(), { replayCache: full }), 'ERR_SIG_REPLAY_CACHE');
    });

    it('ERR_SIG_DIGEST: body altered after signing', async () => {
      const altered = Buffer.from(BODY.toString().replace('entry', 'exit!'));
      await expectCode(verifyOpts(signedPost(), { body: altered }), 'ERR_SIG_DIGEST');
      await expectCode(
        verifyOpts(signedPost(), { body: Buffer.concat([BODY, Buffer.from(' ')]) }),
        'ERR_SIG_DIGEST',
      );
    });

    it('ERR_SIG_INVALID: Content-Digest and body both replaced (the digest is covered, so the signature breaks)', async () => {
      const altered = Buffer.from('{"evil":true}');
      const headers = { ...signedPost(), 'content-digest': contentDigest(altered) };
      await expectCode(verifyOpts(headers, { body: altered }), 'ERR_SIG_INVALID');
    });

    it('ERR_SIG_INVALID: signature bytes altered', async () => {
      const headers = signedPost();
      const sig = Buffer.from(/:(.*):/.exec(headers['signature']!)![1]!, 'base64');
      sig[10] = sig[10]! ^ 0x01;
      headers['signature'] = `sig1=:${sig.toString('base64')}:`;
      await expectCode(verifyOpts(headers), 'ERR_SIG_INVALID');
    });

    it('ERR_SIG_INVALID: a covered header value altered after signing', async () => {
      const headers = { ...signedPost(), authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.e30.other' };
      await expectCode(verifyOpts(headers), 'ERR_SIG_INVALID');
    });

    it('ERR_SIG_INVALID: target URI or method altered', async () => {
      await expectCode(
        verifyOpts(signedPost(), { targetUri: TARGET.replace('gate-1', 'gate-2') }),
        'ERR_SIG_INVALID',
      );
      await expectCode(verifyOpts(signedPost(), { targetUri: `${TARGET}?x=1` }), 'ERR_SIG_INVALID');
      await expectCode(verifyOpts(signedPost(), { method: 'PUT' }), 'ERR_SIG_INVALID');
    });

    it('ERR_SIG_INVALID: signed by another key under the partner keyid', async () => {
      await expectCode(verifyOpts(signedPost({ privateKey: other.privateKey })), 'ERR_SIG_INVALID');
    });

    it('ERR_SIG_INVALID: signature parameters altered (created moved within the window)', async () => {
      const headers = signedPost();
      headers['signature-input'] = headers['signature-input']!.replace(
        `created=${NOW}`,
        `created=${NOW - 1}`,
      );
      await expectCode(verifyOpts(headers), 'ERR_SIG_INVALID');
    });
  });

  it('records the nonce only after the signature is valid', async () => {
    const replayCache = new MemoryReplayCache();
    const headers = signedPost();
    await expectCode(verifyOpts(headers, { replayCache, method: 'PUT' }), 'ERR_SIG_INVALID');
    await expectCode(verifyOpts(headers, { replayCache, body: Buffer.from('x') }), 'ERR_SIG_DIGEST');
    assert.equal(replayCache.size, 0);
    assert.equal((await verifyRequest(verifyOpts(headers, { replayCache }))).ok, true);
    assert.equal(replayCache.size, 1);
  });

  it('remembers the nonce for nonceTtlSeconds (120 by default), never less than 2 x maxSkewSeconds', async () => {
    const ttls: number[] = [];
    const spy: ReplayCache = {
      remember: async (_keyid, _nonce, ttl) => {
        ttls.push(ttl);
        return true;
      },
      close: async () => {},
    };
    await verifyRequest(verifyOpts(signedPost(), { replayCache: spy }));
    await verifyRequest(verifyOpts(signedPost(), { replayCache: spy, nonceTtlSeconds: 300 }));
    await verifyRequest(verifyOpts(signedPost(), { replayCache: spy, nonceTtlSeconds: 30 }));
    await verifyRequest(verifyOpts(signedPost(), { replayCache: spy, maxSkewSeconds: 90 }));
    assert.deepEqual(ttls, [120, 300, 120, 180]);
  });

  it('scopes nonces per keyid', async () => {
    const replayCache = new MemoryReplayCache();
    const resolveKey = (kid: string) => (kid === 'other-k' ? other.publicKey : partner.publicKey);
    const nonce = 'BBBBBBBBBBBBBBBBBBBBBB';
    assert.equal(
      (await verifyRequest(verifyOpts(signedPost({ nonce }), { replayCache, resolveKey }))).ok,
      true,
    );
    const fromOther = signedPost({ nonce, keyid: 'other-k', privateKey: other.privateKey });
    assert.equal((await verifyRequest(verifyOpts(fromOther, { replayCache, resolveKey }))).ok, true);
  });

  it('never throws, whatever the signature fields hold', async () => {
    const replayCache = new MemoryReplayCache();
    await fc.assert(
      fc.asyncProperty(fc.string(), fc.string(), fc.option(fc.uint8Array()), async (input, sig, body) => {
        const headers = { ...signedPost(), 'signature-input': `sig1=${input}`, signature: `sig1=${sig}` };
        const result = await verifyRequest(verifyOpts(headers, { replayCache, ...(body ? { body } : {}) }));
        assert.equal(result.ok, false);
      }),
      { numRuns: 300 },
    );
    // Junk of every other shape, through the public API.
    const junk = [null, 42, {}, { 'signature-input': 7 }, { signature: ['x', 8] }] as unknown as HeaderMap[];
    for (const headers of junk) {
      const result = await verifyRequest(verifyOpts(headers));
      assert.equal(result.ok, false);
    }
    assert.equal(replayCache.size, 0);
  });
});

describe('signResponse / verifyResponse', () => {
  const RESPONSE_BODY = Buffer.from('{"decision":"open"}');

  function signedExchange() {
    const requestHeaders = signedPost();
    const responseHeaders: Record<string, string> = {
      'content-type': 'application/json',
      'content-digest': contentDigest(RESPONSE_BODY),
    };
    const sig = signResponse({
      status: 200,
      headers: responseHeaders,
      request: { headers: requestHeaders },
      privateKey: smartHome.privateKey,
      keyid: 'smart-home-1',
      created: NOW,
    });
    return { requestHeaders, responseHeaders: { ...responseHeaders, ...sig } };
  }

  function verifyResponseOpts(ex: ReturnType<typeof signedExchange>) {
    return {
      status: 200,
      headers: ex.responseHeaders as HeaderMap,
      body: RESPONSE_BODY,
      request: { headers: ex.requestHeaders },
      resolveKey: (kid: string) => (kid === 'smart-home-1' ? smartHome.publicKey : undefined),
      now: NOW,
    };
  }

  it('covers "@status" "content-digest" "signature";req;key="sig1" (contract §3)', () => {
    const { responseHeaders } = signedExchange();
    assert.equal(
      responseHeaders['signature-input'],
      `sig1=("@status" "content-digest" "signature";req;key="sig1");created=${NOW};keyid="smart-home-1";alg="ed25519"`,
    );
  });

  it('round trip', async () => {
    const result = await verifyResponse(verifyResponseOpts(signedExchange()));
    assert.deepEqual(result, {
      ok: true,
      keyid: 'smart-home-1',
      created: NOW,
      nonce: undefined,
      label: 'sig1',
    });
  });

  it('a response bound to another request does not verify', async () => {
    const ex = signedExchange();
    const otherRequest = signedPost();
    const result = await verifyResponse({ ...verifyResponseOpts(ex), request: { headers: otherRequest } });
    assert.equal(result.ok, false);
    if (!result.ok) assert.equal(result.code, 'ERR_SIG_INVALID');
  });

  it('rejects an altered status, body, missing request signature, stale created, unknown key', async () => {
    const ex = signedExchange();
    const base = verifyResponseOpts(ex);
    const cases: Array<[Partial<typeof base>, SignatureErrorCode]> = [
      [{ status: 500 }, 'ERR_SIG_INVALID'],
      [{ body: Buffer.from('{"decision":"deny"}') }, 'ERR_SIG_DIGEST'],
      [{ body: undefined }, 'ERR_SIG_DIGEST'],
      [{ request: { headers: { authorization: 'x' } } }, 'ERR_SIG_COMPONENT_MISSING'],
      [{ now: NOW + 61 }, 'ERR_SIG_CREATED_SKEW'],
      [{ resolveKey: () => undefined }, 'ERR_SIG_UNKNOWN_KEY'],
      [{ headers: { ...ex.responseHeaders, signature: undefined } }, 'ERR_SIG_MISSING'],
    ];
    for (const [change, code] of cases) {
      const result = await verifyResponse({ ...base, ...change });
      assert.equal(result.ok, false, code);
      if (!result.ok) assert.equal(result.code, code, `${code}: ${result.message}`);
    }
  });

  it('requires the request binding: a response signed without it is refused', async () => {
    const responseHeaders = { 'content-digest': contentDigest(RESPONSE_BODY) };
    const sig = signResponse({
      status: 200,
      headers: responseHeaders,
      request: { headers: {} },
      components: ['@status', 'content-digest'],
      privateKey: smartHome.privateKey,
      keyid: 'smart-home-1',
      created: NOW,
    });
    const result = await verifyResponse({
      ...verifyResponseOpts(signedExchange()),
      headers: { ...responseHeaders, ...sig },
    });
    assert.equal(result.ok, false);
    if (!result.ok) assert.equal(result.code, 'ERR_SIG_COMPONENT_MISSING');
  });

  it('signResponse throws ERR_SIG_COMPONENT_MISSING when the request carries no sig1', () => {
    assert.throws(
      () =>
        signResponse({
          status: 401,
          headers: { 'content-digest': contentDigest(RESPONSE_BODY) },
          request: { headers: {} },
          privateKey: smartHome.privateKey,
          keyid: 'smart-home-1',
        }),
      (err: unknown) => err instanceof SignatureBaseError && err.code === 'ERR_SIG_COMPONENT_MISSING',
    );
  });
});
