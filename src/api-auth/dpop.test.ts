import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { DpopNonces, normaliseHtu } from './dpop.ts';

test('DPoP nonces are the ones oidc-provider issues from the same secret, and only those', async () => {
  const secret = randomBytes(32);
  // oidc-provider's own implementation (lib/helpers/challenge.js, used for features.dPoP.nonceSecret).
  const specifier = 'oidc-provider/lib/helpers/challenge.js';
  const { default: ServerChallenge } = (await import(specifier)) as {
    default: new (
      secret: Buffer,
      info: string,
    ) => { nextChallenge(): string; checkChallenge(c: string): boolean };
  };
  const theirs = new ServerChallenge(secret, 'DPoP');
  const ours = new DpopNonces(secret);
  assert.equal(ours.next(), theirs.nextChallenge());
  assert.ok(ours.check(theirs.nextChallenge()));
  assert.ok(theirs.checkChallenge(ours.next()));
  assert.ok(!new DpopNonces(randomBytes(32)).check(theirs.nextChallenge()));
  assert.ok(!ours.check(''));
});

test('nonces expire after their five-step window', () => {
  let t = 1_800_000_000;
  const nonces = new DpopNonces(randomBytes(32), () => t);
  const n = nonces.next();
  t += 120;
  assert.ok(nonces.check(n));
  t += 240;
  assert.ok(!nonces.check(n));
});

test('htu is compared without query and fragment, after URL normalisation', () => {
  assert.equal(normaliseHtu('https://Example.TEST:443/a/b?x=1#f'), 'https://example.test/a/b');
  assert.equal(normaliseHtu('ftp://example.test/'), undefined);
  assert.equal(normaliseHtu('not a url'), undefined);
});
