import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { type Harness, startHarness } from '../support/harness.ts';
import { standardWorld } from '../support/world.ts';

let h: Harness;
before(async () => {
  h = await startHarness({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => standardWorld(ids),
    env: { SMART_HOME_HEADERS_TIMEOUT_MS: '400', SMART_HOME_REQUEST_TIMEOUT_MS: '800' },
  });
});
after(() => h.close());

test('a client that never finishes its headers is answered 408 and disconnected (slow loris)', async () => {
  const id = h.identities.get('barrier-north')!;
  const port = Number(new URL(h.partnerUrl).port);
  const socket = tls.connect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    ca: h.serverCa,
    cert: id.certPem,
    key: id.keyPem,
  });
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject));
  const started = Date.now();
  socket.write('POST /partner/v1/barriers/gate-1/decisions HTTP/1.1\r\nHost: localhost\r\nX-Slow: ');
  let received = '';
  socket.on('data', (d) => {
    received += d;
  });
  await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const elapsed = Date.now() - started;
  assert.match(received, /^HTTP\/1\.1 408/);
  // Behaviour, not speed: the connection is cut by the header timeout, long before any default (60 s).
  assert.ok(elapsed < 10_000, `closed after ${elapsed} ms`);
});
