import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseOAuthClients } from './clients.ts';
import { pickLocale, renderPage } from './pages.ts';
import { normalizePhone } from './resident-otp.ts';

test('phone numbers are normalised to the E.164 form the registry indexes', () => {
  assert.equal(normalizePhone('+7 (912) 345-67-89'), '+79123456789');
  assert.equal(normalizePhone('8 912 345 67 89'), '+79123456789');
  assert.equal(normalizePhone('79123456789'), '+79123456789');
  assert.equal(normalizePhone('+44 20 7946 0958'), '+442079460958');
  for (const bad of ['', '12ab', '+0123456789', '912', '+7912345678901234567', 'x'.repeat(40)]) {
    assert.equal(normalizePhone(bad), undefined, bad);
  }
});

test('the page language: query, then cookie, then Accept-Language with q-values, Russian by default', () => {
  assert.equal(pickLocale('en', 'ru', 'ru'), 'en');
  assert.equal(pickLocale(undefined, 'en', 'ru'), 'en');
  assert.equal(pickLocale(undefined, undefined, 'ru;q=0.4, en-GB;q=0.8'), 'en');
  assert.equal(pickLocale(undefined, undefined, 'de, fr'), 'ru');
  assert.equal(pickLocale('xx', 'yy', undefined), 'ru');
});

test('pages escape what they print', () => {
  const html = renderPage({
    locale: 'en',
    action: '',
    uid: 'u"><script>',
    csrf: '"><b>',
    form: { kind: 'phone' },
  });
  assert.ok(!html.includes('<script>'));
  assert.ok(!html.includes('"><b>'));
});

test('client declarations are validated: unknown fields, duplicates, fragments, plain http off loopback', () => {
  const ok = { clientId: 'mobile-app', role: 'resident', redirectUris: ['https://a.example/cb'] };
  assert.equal(parseOAuthClients({ clients: [ok] }).length, 1);
  assert.throws(() => parseOAuthClients({ clients: [{ ...ok, extra: 1 }] }), /OAuth clients/);
  assert.throws(() => parseOAuthClients({ clients: [ok, ok] }), /twice/);
  assert.throws(
    () => parseOAuthClients({ clients: [{ ...ok, redirectUris: ['https://a.example/cb#x'] }] }),
    /fragment/,
  );
  assert.throws(
    () => parseOAuthClients({ clients: [{ ...ok, redirectUris: ['http://a.example/cb'] }] }),
    /loopback/,
  );
  assert.throws(() => parseOAuthClients({ clients: [{ ...ok, role: 'admin' }] }), /OAuth clients/);
});
