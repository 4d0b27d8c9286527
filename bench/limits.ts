/**
 * `npm run bench:limits`: what the per-partner rate limit costs a partner request (issue 5). The
 * in-memory bucket, and with REDIS_URL the shared one (one Lua script round trip per request): latency
 * of one take in sequence, and throughput with 50 requests in flight (what the partner listener sees
 * under load). Writes its section of docs/benchmarks.md.
 */
import { Redis } from 'ioredis';
import { RedisRateLimiter, TokenBucketLimiter } from '../src/partner-zone/rate-limiter.ts';
import { machine, writeSection } from './report.ts';

const SEQUENTIAL = 20_000;
const CONCURRENT = 50;
const PER_WORKER = 1_000;
const PARTNERS = 10;

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

async function measure(take: (key: string) => number | Promise<number>) {
  for (let i = 0; i < 2_000; i++) await take(`warm-${i % PARTNERS}`);
  const lat: number[] = [];
  let t0 = performance.now();
  for (let i = 0; i < SEQUENTIAL; i++) {
    const s = performance.now();
    await take(`p${i % PARTNERS}`);
    lat.push(performance.now() - s);
  }
  const sequentialPerS = (SEQUENTIAL / (performance.now() - t0)) * 1000;
  lat.sort((a, b) => a - b);
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENT }, async (_, c) => {
      for (let i = 0; i < PER_WORKER; i++) await take(`p${c % PARTNERS}`);
    }),
  );
  const concurrentPerS = ((CONCURRENT * PER_WORKER) / (performance.now() - t0)) * 1000;
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), sequentialPerS, concurrentPerS };
}

// A budget nobody reaches: the cost of deciding, not of refusing.
const bucket = { ratePerSecond: 1e6, burst: 1e7 };
const rows: string[] = [];
const row = (name: string, m: Awaited<ReturnType<typeof measure>>) =>
  `| ${name} | ${m.p50.toFixed(3)} | ${m.p99.toFixed(3)} | ${Math.round(m.sequentialPerS).toLocaleString('en')} | ${Math.round(m.concurrentPerS).toLocaleString('en')} |`;

const memory = new TokenBucketLimiter(bucket);
rows.push(row('in memory (`TokenBucketLimiter`)', await measure((k) => memory.take(k))));
const url = process.env['REDIS_URL'];
if (url) {
  const redis = new Redis(url);
  const shared = new RedisRateLimiter(redis, {
    ...bucket,
    onBackendError: 'closed',
    timeoutMs: 1000,
    prefix: `bench:rate:${process.pid}:`,
  });
  rows.push(
    row('Redis, shared (`RedisRateLimiter`, Lua token bucket)', await measure((k) => shared.take(k))),
  );
  redis.disconnect();
}
const body = `## Per-partner rate limit (\`npm run bench:limits\`)

One token taken per partner request, before any token or signature work (${machine()}${url ? '; Redis on loopback' : '; without REDIS_URL: memory only'}).
Latency of one take in sequence (ms), and takes per second in sequence and with ${CONCURRENT} in flight.

| limiter | p50 ms | p99 ms | takes/s, sequential | takes/s, ${CONCURRENT} in flight |
|---|---|---|---|---|
${rows.join('\n')}

The shared limit costs one Redis round trip per partner request, a fraction of a millisecond; compare
its throughput with the ingest target of 3,000 requests/s per deployment (batches of 1). When Redis
fails, the instance keeps serving with per-instance buckets (\`SMART_HOME_PARTNER_RATE_LIMIT_ON_REDIS_ERROR=open\`).`;
await writeSection('limits', body);
process.stdout.write(`${body}\n`);
