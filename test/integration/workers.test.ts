/**
 * `smart-home start` with SMART_HOME_WORKERS=2 on real PostgreSQL and Redis: both processes serve the
 * partner port, and a signature nonce used on one connection is refused on another, because the
 * nonces live in Redis. Registered only in CI's PostgreSQL + Redis run (the embedded database belongs
 * to one process).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { JWK } from 'jose';
import { serveWithWorkers, startLocalStack } from '../../simulator/local-stack.ts';
import { PartnerClient } from '../../simulator/partner-client.ts';
import type { Harness } from '../support/harness.ts';
import { createTestDb } from '../support/test-db.ts';
import { PLATES, standardWorld } from '../support/world.ts';

const DATABASE_URL = process.env['DATABASE_URL'];
const REDIS_URL = process.env['REDIS_URL'];

if (DATABASE_URL && REDIS_URL) {
  let h: Harness;
  let cluster: Awaited<ReturnType<typeof serveWithWorkers>>;
  let partnerUrl: string;

  before(async () => {
    // Provision through the in-process stack, then serve the same schema and keys from two processes.
    const db = await createTestDb();
    h = await startLocalStack({
      partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
      document: (ids) => standardWorld(ids),
      db,
    });
    cluster = await serveWithWorkers(h, { databaseUrl: DATABASE_URL, schema: db.schema!, workers: 2 });
    partnerUrl = cluster.partnerUrl;
  });
  after(async () => {
    await cluster.stop();
    await h.close();
  });

  test('two processes serve one port and share signature nonces through Redis', async () => {
    const smartHomeKey = JSON.parse(
      await readFile(path.join(h.dataDir, 'keys', 'response-signing.jwk'), 'utf8'),
    ) as JWK;
    delete smartHomeKey.d;
    const jwe = await h.exportKeys('barrier-north');
    const client = async () => {
      const c = new PartnerClient({
        identity: h.identities.get('barrier-north')!,
        baseUrl: partnerUrl,
        serverCa: h.serverCa,
        smartHomeKey,
        connections: 1,
      });
      await c.importKeys(jwe);
      return c;
    };
    const [a, b] = [await client(), await client()];
    try {
      const first = await a.barrierRead('gate-1', PLATES.anna);
      assert.deepEqual([first.status, first.body['decision'], first.signatureValid], [200, 'open', true]);

      const nonce = randomBytes(16).toString('base64url');
      const body = {
        eventId: '01930000-0000-7000-8000-000000000001',
        capturedAt: new Date().toISOString(),
        direction: 'entry',
        candidates: [{ ...a.plateCandidate(PLATES.anna), confidence: 0.9 }],
      };
      const ok = await a.send('POST', '/partner/v1/barriers/gate-1/decisions', {
        scope: 'barrier:decide',
        body,
        nonce,
      });
      assert.equal(ok.status, 200);
      const redis = new Redis(REDIS_URL);
      try {
        assert.ok((await redis.keys(`smart-home:sig-nonce:*${nonce}`)).length === 1, 'the nonce is in Redis');
      } finally {
        redis.disconnect();
      }
      const replay = await b.send('POST', '/partner/v1/barriers/gate-1/decisions', {
        scope: 'barrier:decide',
        body,
        nonce,
      });
      assert.equal(replay.status, 401, 'replayed on another connection (and, round-robin, another process)');
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
}
