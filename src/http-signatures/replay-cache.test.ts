import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { contentDigest } from './content-digest.ts';
import {
  MemoryReplayCache,
  RedisReplayCache,
  type ReplayCache,
  ReplayCacheFullError,
} from './replay-cache.ts';
import { REQUEST_COMPONENTS_WITH_BODY, signRequest, verifyRequest } from './rfc9421.ts';

/**
 * The same contract for every backend. Without REDIS_URL the Redis backend is simply not registered;
 * CI sets REDIS_URL, so there it runs against a real Redis.
 */
interface Backend {
  name: string;
  /** Real time passes for Redis; the memory cache gets an injected clock instead. */
  make(): { cache: ReplayCache; advance: (seconds: number) => Promise<void> };
  cleanup?: () => Promise<void>;
}

const backends: Backend[] = [
  {
    name: 'MemoryReplayCache',
    make() {
      let now = 0;
      return {
        cache: new MemoryReplayCache({ now: () => now }),
        advance: async (seconds) => {
          now += seconds * 1000;
        },
      };
    },
  },
];

const REDIS_URL = process.env['REDIS_URL'];
if (REDIS_URL) {
  const clients: Redis[] = [];
  backends.push({
    name: 'RedisReplayCache',
    make() {
      const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      clients.push(redis);
      // A fresh prefix per cache: runs never see each other's nonces.
      return {
        cache: new RedisReplayCache(redis, { prefix: `test:sig-nonce:${randomUUID()}:` }),
        advance: sleepFor,
      };
    },
    async cleanup() {
      for (const c of clients) if (c.status !== 'end') c.disconnect();
    },
  });
}

async function sleepFor(seconds: number): Promise<void> {
  await sleep(seconds * 1000);
}

for (const backend of backends) {
  describe(`${backend.name} (ReplayCache contract)`, () => {
    after(async () => backend.cleanup?.());

    it('first sighting is new, the second within the TTL is a replay', async () => {
      const { cache } = backend.make();
      assert.equal(await cache.remember('k1', 'nonce-a', 120), true);
      assert.equal(await cache.remember('k1', 'nonce-a', 120), false);
      assert.equal(await cache.remember('k1', 'nonce-b', 120), true);
      await cache.close();
    });

    it('scopes nonces per keyid, without ambiguity between keyid and nonce characters', async () => {
      const { cache } = backend.make();
      assert.equal(await cache.remember('k1', 'n', 120), true);
      assert.equal(await cache.remember('k2', 'n', 120), true);
      assert.equal(await cache.remember('a:b', 'c', 120), true);
      assert.equal(await cache.remember('a', 'b:c', 120), true);
      assert.equal(await cache.remember('a', 'b:c', 120), false);
      await cache.close();
    });

    it('forgets a nonce once its TTL has passed', async () => {
      const { cache, advance } = backend.make();
      assert.equal(await cache.remember('k1', 'short', 1), true);
      await advance(0.5);
      assert.equal(await cache.remember('k1', 'short', 1), false);
      await advance(0.7);
      assert.equal(await cache.remember('k1', 'short', 1), true, 'usable again after expiry');
      assert.equal(await cache.remember('k1', 'short', 1), false, 'and tracked again');
      await cache.close();
    });

    it('rejects a non-positive TTL', async () => {
      const { cache } = backend.make();
      await assert.rejects(cache.remember('k1', 'n', 0), RangeError);
      await assert.rejects(cache.remember('k1', 'n', Number.NaN), RangeError);
      await cache.close();
    });

    it('backs verifyRequest: a replayed request is refused', async () => {
      const { cache } = backend.make();
      const keys = generateKeyPairSync('ed25519');
      const body = Buffer.from('{}');
      const targetUri = 'https://smart-home.example/partner/v1/events';
      const headers: Record<string, string> = {
        authorization: 'Bearer t',
        'content-digest': contentDigest(body),
      };
      const now = Math.floor(Date.now() / 1000);
      Object.assign(
        headers,
        signRequest({
          method: 'POST',
          targetUri,
          headers,
          components: REQUEST_COMPONENTS_WITH_BODY,
          privateKey: keys.privateKey,
          keyid: 'p1',
          created: now,
        }),
      );
      const opts = {
        method: 'POST',
        targetUri,
        headers,
        body,
        requiredComponents: REQUEST_COMPONENTS_WITH_BODY,
        resolveKey: () => keys.publicKey,
        replayCache: cache,
        now,
      };
      assert.equal((await verifyRequest(opts)).ok, true);
      const replay = await verifyRequest(opts);
      assert.equal(replay.ok, false);
      if (!replay.ok) assert.equal(replay.code, 'ERR_SIG_REPLAY');
      await cache.close();
    });
  });
}

describe('MemoryReplayCache bounds (fail closed)', () => {
  it('refuses new nonces when full of live entries, rather than forgetting one', async () => {
    let now = 0;
    const cache = new MemoryReplayCache({ maxEntries: 3, now: () => now });
    for (const n of ['a', 'b', 'c']) assert.equal(await cache.remember('k', n, 120), true);
    await assert.rejects(cache.remember('k', 'd', 120), ReplayCacheFullError);
    // The live entries are all still remembered: nothing was evicted to make room.
    for (const n of ['a', 'b', 'c']) assert.equal(await cache.remember('k', n, 120), false);
    assert.equal(cache.size, 3);
    now += 120_001;
    assert.equal(await cache.remember('k', 'd', 120), true, 'room again once entries expire');
    assert.equal(cache.size, 1);
  });

  it('frees expired entries that sit behind a longer-lived one (mixed TTLs)', async () => {
    let now = 0;
    const cache = new MemoryReplayCache({ maxEntries: 3, now: () => now });
    assert.equal(await cache.remember('k', 'long', 600), true);
    assert.equal(await cache.remember('k', 'short-1', 10), true);
    assert.equal(await cache.remember('k', 'short-2', 10), true);
    now += 5_000;
    await assert.rejects(cache.remember('k', 'x', 10), ReplayCacheFullError);
    now += 6_000;
    assert.equal(await cache.remember('k', 'x', 10), true);
    assert.equal(await cache.remember('k', 'long', 600), false, 'the long-lived entry survives the sweep');
    assert.equal(cache.size, 2);
  });

  it('treats an expired entry as new even when a longer-lived entry is ahead of it', async () => {
    let now = 0;
    const cache = new MemoryReplayCache({ now: () => now });
    assert.equal(await cache.remember('k', 'long', 600), true);
    assert.equal(await cache.remember('k', 'short', 10), true);
    now += 11_000;
    assert.equal(await cache.remember('k', 'short', 10), true);
    assert.equal(await cache.remember('k', 'short', 10), false);
  });

  it('validates maxEntries and empties on close', async () => {
    assert.throws(() => new MemoryReplayCache({ maxEntries: 0 }), RangeError);
    assert.throws(() => new MemoryReplayCache({ maxEntries: 1.5 }), RangeError);
    const cache = new MemoryReplayCache();
    await cache.remember('k', 'n', 1);
    await cache.close();
    assert.equal(cache.size, 0);
  });
});

describe('RedisReplayCache command shape (stub client)', () => {
  function stub(reply: 'OK' | null | Error) {
    const calls: unknown[][] = [];
    let quits = 0;
    const client = {
      status: 'ready',
      set: async (...args: unknown[]) => {
        calls.push(args);
        if (reply instanceof Error) throw reply;
        return reply;
      },
      quit: async () => {
        quits++;
        return 'OK';
      },
    };
    return { client: client as unknown as Redis, calls, quits: () => quits };
  }

  it('uses SET <prefix><keyid>:<nonce> 1 EX <ttl> NX, rounding the TTL up to whole seconds', async () => {
    const s = stub('OK');
    const cache = new RedisReplayCache(s.client, { prefix: 'p:' });
    assert.equal(await cache.remember('kid', 'nonce', 120), true);
    assert.equal(await cache.remember('kid', 'nonce', 0.2), true);
    assert.deepEqual(s.calls, [
      ['p:3:kid:nonce', '1', 'EX', 120, 'NX'],
      ['p:3:kid:nonce', '1', 'EX', 1, 'NX'],
    ]);
  });

  it('maps a NX miss to a replay and propagates errors (the verifier fails closed)', async () => {
    assert.equal(await new RedisReplayCache(stub(null).client).remember('k', 'n', 1), false);
    await assert.rejects(new RedisReplayCache(stub(new Error('down')).client).remember('k', 'n', 1), /down/);
  });

  it('quits the client on close unless told it does not own it', async () => {
    const owned = stub('OK');
    await new RedisReplayCache(owned.client).close();
    assert.equal(owned.quits(), 1);
    const shared = stub('OK');
    await new RedisReplayCache(shared.client, { closeClient: false }).close();
    assert.equal(shared.quits(), 0);
  });
});

if (REDIS_URL) {
  describe('RedisReplayCache against Redis', () => {
    let redis: Redis;
    before(() => {
      redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    });
    after(() => {
      redis.disconnect();
    });

    it('stores the key under the prefix with the TTL, shared by two cache instances', async () => {
      const prefix = `test:sig-nonce:${randomUUID()}:`;
      const a = new RedisReplayCache(redis, { prefix, closeClient: false });
      const b = new RedisReplayCache(redis, { prefix, closeClient: false });
      assert.equal(await a.remember('kid', 'nonce-1', 120), true);
      assert.equal(await b.remember('kid', 'nonce-1', 120), false, 'another instance sees the replay');
      const ttl = await redis.ttl(`${prefix}3:kid:nonce-1`);
      assert.ok(ttl > 110 && ttl <= 120, `ttl ${ttl}`);
      await redis.del(`${prefix}3:kid:nonce-1`);
    });

    it('exactly one of many concurrent remembers wins (SET NX is atomic)', async () => {
      const cache = new RedisReplayCache(redis, {
        prefix: `test:sig-nonce:${randomUUID()}:`,
        closeClient: false,
      });
      const results = await Promise.all(Array.from({ length: 20 }, () => cache.remember('kid', 'race', 5)));
      assert.equal(results.filter(Boolean).length, 1);
    });
  });
}
