import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contentDigest, verifyContentDigest } from './content-digest.ts';

// RFC 9530 Appendix B.1 / RFC 9421 Appendix B.2 test body and its digests.
const BODY = Buffer.from('{"hello": "world"}');
const SHA256 = 'X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=';
const SHA512 = 'WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==';

describe('contentDigest', () => {
  it('matches the RFC 9530 sha-256 example', () => {
    assert.equal(contentDigest(BODY), `sha-256=:${SHA256}:`);
  });

  it('hashes exactly the viewed bytes of a Uint8Array view', () => {
    const backing = Buffer.from(`xx${BODY.toString()}yy`);
    const view = new Uint8Array(backing.buffer, backing.byteOffset + 2, BODY.length);
    assert.equal(contentDigest(view), `sha-256=:${SHA256}:`);
  });

  it('digests the empty body (SHA-256 of zero bytes)', () => {
    assert.equal(contentDigest(new Uint8Array(0)), 'sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:');
  });
});

describe('verifyContentDigest', () => {
  it('accepts the RFC digest, alone or next to a matching sha-512', () => {
    assert.equal(verifyContentDigest(`sha-256=:${SHA256}:`, BODY), true);
    assert.equal(verifyContentDigest(`sha-512=:${SHA512}:, sha-256=:${SHA256}:`, BODY), true);
    assert.equal(verifyContentDigest(`sha-256=:${SHA256}:, unixsum=42`, BODY), true);
  });

  it('requires sha-256 (contract §3): the RFC sha-512 alone is not enough', () => {
    assert.equal(verifyContentDigest(`sha-512=:${SHA512}:`, BODY), false);
  });

  it('rejects a body that differs by one byte, or trailing whitespace', () => {
    assert.equal(verifyContentDigest(`sha-256=:${SHA256}:`, Buffer.from('{"hello": "World"}')), false);
    assert.equal(verifyContentDigest(`sha-256=:${SHA256}:`, Buffer.from('{"hello": "world"}\n')), false);
    assert.equal(verifyContentDigest(`sha-256=:${SHA256}:`, Buffer.from('{"hello":"world"}')), false);
  });

  it('rejects a sha-512 that does not match even when sha-256 does', () => {
    const wrong512 = Buffer.alloc(64).toString('base64');
    assert.equal(verifyContentDigest(`sha-256=:${SHA256}:, sha-512=:${wrong512}:`, BODY), false);
  });

  it('rejects absent, malformed, ambiguous or mistyped values', () => {
    assert.equal(verifyContentDigest(undefined, BODY), false);
    assert.equal(verifyContentDigest('', BODY), false);
    assert.equal(verifyContentDigest(`sha-256=${SHA256}`, BODY), false); // not a byte sequence
    assert.equal(verifyContentDigest(`sha-256="${SHA256}"`, BODY), false); // string, not bytes
    assert.equal(verifyContentDigest(`sha-256=(:${SHA256}:)`, BODY), false); // inner list
    assert.equal(verifyContentDigest(`SHA-256=:${SHA256}:`, BODY), false); // keys are lower-case
    assert.equal(verifyContentDigest(`sha-256=:${SHA256.slice(0, -1)}:`, BODY), false); // bad base64
    assert.equal(verifyContentDigest(`sha-256=:${Buffer.alloc(31).toString('base64')}:`, BODY), false);
    assert.equal(verifyContentDigest(`sha-256=:${SHA256}:,`, BODY), false); // trailing comma
    // A repeated key would be "last wins" in RFC 8941; here it is refused as ambiguous.
    assert.equal(
      verifyContentDigest(`sha-256=:${Buffer.alloc(32).toString('base64')}:, sha-256=:${SHA256}:`, BODY),
      false,
    );
  });
});
