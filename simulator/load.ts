/**
 * The simulator's load generator: many barrier cameras at once. Runs as its own process (so that the
 * service under test has its own core), keeps `--connections` keep-alive mTLS connections busy, signs
 * every request with a fresh nonce, and reports throughput and latency percentiles as JSON.
 *
 *   node simulator/load.ts --url https://localhost:9443 --identity <dir> --barrier gate-1 \
 *     --connections 64 --seconds 10 [--plain]
 *
 * `--plain` sends the same request shape without token or signature (for the bare-TLS ceiling).
 */

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createHistogram } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { canonicalisePlate, plateToken } from '../src/crypto/plate.ts';
import { contentDigest } from '../src/http-signatures/content-digest.ts';
import { signRequest } from '../src/http-signatures/rfc9421.ts';
import { uuidv7 } from '../src/util/uuid.ts';
import { loadIdentity } from './identity.ts';
import { PartnerClient } from './partner-client.ts';

export interface LoadResult {
  requests: number;
  errors: number;
  statuses: Record<string, number>;
  seconds: number;
  perSecond: number;
  p50ms: number;
  p90ms: number;
  p99ms: number;
  maxms: number;
}

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    ca: { type: 'string' },
    identity: { type: 'string' },
    barrier: { type: 'string', default: 'gate-1' },
    plates: { type: 'string', default: '' },
    connections: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    plain: { type: 'boolean', default: false },
    path: { type: 'string', default: '' },
  },
});

if (!args.url || !args.ca || !args.identity) {
  process.stderr.write(
    'usage: load.ts --url URL --ca CA.pem --identity DIR [--barrier ID] [--connections N] [--seconds S] [--plain]\n',
  );
  process.exit(2);
}

const identity = await loadIdentity(args.identity);
const ca = await readFile(args.ca, 'utf8');
const connections = Number(args.connections);
const url = new URL(args.url);
const routePath = args.path || `/partner/v1/barriers/${encodeURIComponent(args.barrier!)}/decisions`;
const targetUri = `${url.origin}${routePath}`;

// A mix of reads: registered residents' cars, guests, unknown cars (as a real gate sees them).
const plates = (args.plates || 'А123ВС77,Х001ХХ99,М999ММ99,В456ОР199').split(',');
let token = '';
let kid = 'none';
let tokens: string[];
if (args.plain) {
  tokens = plates.map((p) => plateToken(Buffer.alloc(32), canonicalisePlate(p)));
} else {
  const client = new PartnerClient({ identity, baseUrl: args.url, serverCa: ca });
  await client.importKeys(await readFile(path.join(args.identity, 'keys.jwe'), 'utf8'));
  token = await client.token('barrier:decide');
  const candidates = plates.map((p) => client.plateCandidate(p));
  kid = candidates[0]!.kid;
  tokens = candidates.map((c) => c.token);
  await client.close();
}

const pool = new Pool(url.origin, {
  connections,
  pipelining: 1,
  connect: { cert: identity.certPem, key: identity.keyPem, ca, servername: url.hostname },
});

function buildRequest(i: number) {
  const body = Buffer.from(
    JSON.stringify({
      eventId: uuidv7(),
      capturedAt: new Date().toISOString(),
      direction: 'entry',
      candidates: [{ kid, token: tokens[i % tokens.length], confidence: 0.9 }],
    }),
  );
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (!args.plain) {
    headers['authorization'] = `Bearer ${token}`;
    headers['content-digest'] = contentDigest(body);
    const sig = signRequest({
      method: 'POST',
      targetUri,
      headers,
      components: ['@method', '@target-uri', 'authorization', 'content-digest'],
      privateKey: identity.signing.privateKey,
      keyid: identity.signing.kid,
    });
    headers['signature-input'] = sig['signature-input'];
    headers['signature'] = sig.signature;
  }
  return { body, headers };
}

async function run(seconds: number, record: boolean): Promise<LoadResult> {
  const hist = createHistogram();
  const statuses: Record<string, number> = {};
  let requests = 0;
  let errors = 0;
  let i = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  const worker = async () => {
    while (performance.now() < deadline) {
      const { body, headers } = buildRequest(i++);
      const t0 = process.hrtime.bigint();
      try {
        const res = await pool.request({ method: 'POST', path: routePath, headers, body });
        await res.body.dump();
        const dt = process.hrtime.bigint() - t0;
        if (record) {
          hist.record(dt > 0n ? dt : 1n);
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          requests++;
        }
      } catch {
        if (record) errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: connections }, worker));
  const elapsed = (performance.now() - started) / 1000;
  const ms = (n: number) => Math.round((n / 1e6) * 100) / 100;
  return {
    requests,
    errors,
    statuses,
    seconds: Math.round(elapsed * 100) / 100,
    perSecond: Math.round(requests / elapsed),
    p50ms: ms(hist.percentile(50)),
    p90ms: ms(hist.percentile(90)),
    p99ms: ms(hist.percentile(99)),
    maxms: ms(hist.max),
  };
}

await run(Number(args.warmup), false);
const result = await run(Number(args.seconds), true);
await pool.close();
process.stdout.write(`${JSON.stringify(result)}\n`);
