/**
 * `smart-home start` with SMART_HOME_WORKERS=2 on real PostgreSQL and Redis: both processes serve the
 * partner port, and a signature nonce used on one connection is refused on another, because the
 * nonces live in Redis. Registered only in CI's PostgreSQL + Redis run (the embedded database belongs
 * to one process).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Redis } from 'ioredis';
import type { JWK } from 'jose';
import { PartnerClient } from '../../simulator/partner-client.ts';
import type { Harness } from '../support/harness.ts';
import { createTestDb } from '../support/test-db.ts';
import { PLATES, standardWorld } from '../support/world.ts';

const DATABASE_URL = process.env['DATABASE_URL'];
const REDIS_URL = process.env['REDIS_URL'];

if (DATABASE_URL && REDIS_URL) {
  let h: Harness;
  let cluster: ChildProcess;
  let partnerUrl: string;
  let schema: string;

  const freePort = () =>
    new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });

  before(async () => {
    // Provision through the in-process stack, then serve the same schema and keys from two processes.
    const db = await createTestDb();
    schema = db.schema!;
    const { startLocalStack } = await import('../../simulator/local-stack.ts');
    h = await startLocalStack({
      partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
      document: (ids) => standardWorld(ids),
      db,
    });
    const [partnerPort, publicPort] = [await freePort(), await freePort()];
    const url = new URL(DATABASE_URL);
    url.searchParams.set('options', `-c search_path=${schema}`);
    cluster = spawn(process.execPath, [path.resolve('src/cli.ts'), 'start'], {
      env: {
        ...process.env,
        NODE_ENV: 'test',
        LOG_LEVEL: 'warn',
        DATABASE_URL: url.toString(),
        SMART_HOME_DATA_DIR: h.dataDir,
        SMART_HOME_WORKERS: '2',
        SMART_HOME_PARTNER_PORT: String(partnerPort),
        SMART_HOME_PUBLIC_PORT: String(publicPort),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    await new Promise<void>((resolve, reject) => {
      cluster.stderr!.on('data', (d) => {
        err += d;
        if (err.includes('smart-home is ready')) resolve();
      });
      cluster.once('exit', (code) => reject(new Error(`start exited with ${code}: ${err}`)));
    });
    partnerUrl = `https://localhost:${partnerPort}`;
    // The banner comes from the first worker; give the second a moment to bind too.
    await new Promise((r) => setTimeout(r, 1500));
  });
  after(async () => {
    const exited = new Promise((r) => cluster.once('exit', r));
    cluster.kill('SIGTERM');
    await exited;
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
