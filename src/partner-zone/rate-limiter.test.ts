import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { after, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { registry } from '../metrics/registry.ts';
import { RateLimiterUnavailableError, RedisRateLimiter, TokenBucketLimiter } from './rate-limiter.ts';

const REDIS_URL = process.env['REDIS_URL'];
const clients: Redis[] = [];
after(async () => {
  for (const c of clients) c.disconnect();
});

describe('in-memory token bucket', () => {
  test('burst, then a Retry-After until a token is back; per key', () => {
    let t = 0;
    const l = new TokenBucketLimiter({ ratePerSecond: 2, burst: 3, now: () => t });
    assert.deepEqual([l.take('a'), l.take('a'), l.take('a')], [0, 0, 0]);
    assert.equal(l.take('a'), 1);
    assert.equal(l.take('b'), 0, 'another partner has its own bucket');
    t = 500; // one token back at 2/s
    assert.equal(l.take('a'), 0);
    assert.equal(l.take('a'), 1);
  });
});

describe('Redis token bucket shared by instances', { skip: REDIS_URL ? false : 'needs REDIS_URL' }, () => {
  const connect = async () => {
    const r = new Redis(REDIS_URL!, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await r.connect();
    clients.push(r);
    return r;
  };

  test('two limiters on two connections see ONE budget per partner', async () => {
    const prefix = `test:rate:${randomBytes(6).toString('hex')}:`;
    const opts = { ratePerSecond: 1, burst: 5, onBackendError: 'closed' as const, timeoutMs: 1000, prefix };
    const a = new RedisRateLimiter(await connect(), opts);
    const b = new RedisRateLimiter(await connect(), opts);
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) waits.push(await (i % 2 === 0 ? a : b).take('partner-1'));
    assert.equal(waits.filter((w) => w === 0).length, 5, 'the burst is shared, not 5 per instance');
    assert.ok(
      waits.slice(5).every((w) => w >= 1),
      'then Retry-After seconds',
    );
    assert.equal(await b.take('partner-2'), 0, 'another partner is untouched');
  });
});

describe('Redis failing mid-flight', () => {
  /** A Redis client aimed at a port nothing listens on: every command fails. */
  const deadRedis = async () => {
    const port = await new Promise<number>((resolve) => {
      const srv = createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as { port: number };
        srv.close(() => resolve(port));
      });
    });
    const r = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    r.on('error', () => {}); // the refused connection is the point
    clients.push(r);
    return r;
  };

  test('fail open: each instance limits with its own bucket, and it is counted', async () => {
    const l = new RedisRateLimiter(await deadRedis(), {
      ratePerSecond: 1,
      burst: 2,
      onBackendError: 'open',
      timeoutMs: 200,
    });
    assert.deepEqual([await l.take('p'), await l.take('p')], [0, 0]);
    assert.ok((await l.take('p')) >= 1, 'still limited, locally');
    assert.match(
      await registry.getSingleMetricAsString('smart_home_rate_limiter_backend_errors_total'),
      /mode="open"\} [1-9]/,
    );
  });

  test('fail closed: the request is refused with a clear error', async () => {
    const l = new RedisRateLimiter(await deadRedis(), {
      ratePerSecond: 1,
      burst: 2,
      onBackendError: 'closed',
      timeoutMs: 200,
    });
    await assert.rejects(l.take('p'), RateLimiterUnavailableError);
  });

  test('a Redis that does not answer in time counts as failed', async () => {
    // A server that accepts the connection and never answers.
    const silent = createServer(() => {}).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    const r = new Redis({
      port: (silent.address() as { port: number }).port,
      host: '127.0.0.1',
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    clients.push(r);
    try {
      const l = new RedisRateLimiter(r, {
        ratePerSecond: 1,
        burst: 1,
        onBackendError: 'closed',
        timeoutMs: 50,
      });
      await assert.rejects(l.take('p'), RateLimiterUnavailableError);
    } finally {
      r.disconnect();
      silent.close();
    }
  });
});
