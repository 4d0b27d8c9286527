/**
 * `npm run bench:barrier` — the barrier decision pipeline under load (issue: p99 ≤ 20 ms and ≥ 50 % of
 * the ceiling's throughput on PostgreSQL, 64 connections).
 *
 * Three processes at a time: smart-home (bench/barrier-server.ts), the simulator's load generator
 * (simulator/load.ts, unique nonce per request), and for the ceiling a bare Fastify route over the same
 * mutual TLS (bench/ceiling-server.ts). Results go to docs/benchmarks.md.
 *
 * Options (env): BENCH_SECONDS (default 15), BENCH_CONNECTIONS (64), BENCH_RESIDENTS (2000),
 * BENCH_ENGINES (pglite,postgres,postgres-workers: the last runs `smart-home start` with
 * SMART_HOME_WORKERS=2 and the Redis nonce cache), BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test; the PostgreSQL run is skipped
 * with a note when it is unreachable).
 */
import pg from 'pg';
import type { LoadResult } from '../simulator/load.ts';
import { benchPlate } from './barrier-world.ts';
import { machine, writeSection } from './report.ts';
import { runJsonProcess, startJsonProcess, stop } from './run-process.ts';

const seconds = process.env['BENCH_SECONDS'] ?? '15';
const connections = process.env['BENCH_CONNECTIONS'] ?? '64';
const residents = Number(process.env['BENCH_RESIDENTS'] ?? 2000);
const pgUrl =
  process.env['BENCH_DATABASE_URL'] ??
  process.env['DATABASE_URL'] ??
  'postgres://postgres@127.0.0.1:5432/test';
const script = (f: string) => new URL(f, import.meta.url).pathname;

// Reads a real gate sees: 60 % residents' cars, 10 % guests, 30 % unknown cars.
const plates: string[] = [];
for (let i = 0; i < 100; i++) {
  if (i < 60) plates.push(benchPlate((i * 37) % residents));
  else if (i < 70) plates.push(benchPlate(residents + ((i * 7) % Math.floor(residents / 10))));
  else plates.push(`T${String(i).padStart(3, '0')}TT99`);
}

async function pgReachable(): Promise<boolean> {
  const c = new pg.Client({ connectionString: pgUrl, connectionTimeoutMillis: 2000 });
  try {
    await c.connect();
    await c.end();
    return true;
  } catch {
    return false;
  }
}

interface Row {
  name: string;
  r: LoadResult;
  /** A latency run: its throughput is not compared with the ceiling. */
  unloaded?: boolean;
}
const rows: Row[] = [];
const log = (s: string) => process.stderr.write(`${s}\n`);

const wanted = (process.env['BENCH_ENGINES'] ?? 'pglite,postgres,postgres-workers').split(',');
const engines: Array<'pglite' | 'postgres' | 'postgres-workers'> = [];
if (wanted.includes('pglite')) engines.push('pglite');
const pgOk = await pgReachable();
for (const e of ['postgres', 'postgres-workers'] as const) {
  if (!wanted.includes(e)) continue;
  if (pgOk) engines.push(e);
  else log(`PostgreSQL at ${pgUrl} is unreachable: ${e} not measured`);
}
const LABELS = {
  pglite: 'PGlite (embedded)',
  postgres: 'PostgreSQL 15',
  'postgres-workers': 'PostgreSQL 15 + Redis, 2 processes',
} as const;

/** One run of the simulator's load generator (its own process) against `url`. */
function load(
  url: string,
  info: { caFile: string; identityDir: string },
  conns: string,
  secs: string,
  plain = false,
) {
  return runJsonProcess<LoadResult>(script('../simulator/load.ts'), [
    ...['--url', url, '--ca', info.caFile, '--identity', info.identityDir, '--plates', plates.join(',')],
    ...['--connections', conns, '--seconds', secs, ...(plain ? ['--plain'] : [])],
  ]);
}

let ceiling: LoadResult | undefined;
for (const engine of engines) {
  log(`[${engine}] provisioning ${residents} residents…`);
  const server = startJsonProcess<{ url: string; identityDir: string; caFile: string; dataDir: string }>(
    script('./barrier-server.ts'),
    [engine, String(residents)],
    { ...process.env, DATABASE_URL: engine === 'pglite' ? '' : pgUrl },
  );
  try {
    const info = await server.ready;
    if (!ceiling) {
      const c = startJsonProcess<{ url: string }>(script('./ceiling-server.ts'), [info.dataDir]);
      try {
        const { url } = await c.ready;
        log(`[ceiling] bare Fastify mTLS route, ${connections} connections, ${seconds} s…`);
        ceiling = await load(url, info, connections, seconds, true);
        rows.push({ name: 'ceiling: bare Fastify route, same mTLS', r: ceiling });
      } finally {
        await stop(c.child);
      }
    }
    log(`[${engine}] full decision pipeline, ${connections} connections, ${seconds} s…`);
    const r = await load(info.url, info, connections, seconds);
    const label = LABELS[engine];
    rows.push({ name: `decision pipeline on ${label}, ${connections} connections`, r });
    log(`[${engine}] one connection (the pipeline's own latency)…`);
    const single = await load(info.url, info, '1', String(Math.min(5, Number(seconds))));
    rows.push({ name: `decision pipeline on ${label}, 1 connection`, r: single, unloaded: true });
  } finally {
    await stop(server.child);
  }
}

const fmt = (row: Row) => {
  const ratio =
    ceiling && row.r !== ceiling && !row.unloaded
      ? `${Math.round((row.r.perSecond / ceiling.perSecond) * 100)} %`
      : '—';
  const codes = Object.entries(row.r.statuses)
    .map(([k, v]) => `${k}×${v}`)
    .join(' ');
  return `| ${row.name} | ${row.r.perSecond} | ${row.r.p50ms} | ${row.r.p90ms} | ${row.r.p99ms} | ${ratio} | ${codes}${row.r.errors ? `, ${row.r.errors} errors` : ''} |`;
};
const body = [
  '## Barrier decisions (`npm run bench:barrier`)',
  '',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}. ${connections} keep-alive mTLS connections from the`,
  `simulator's load generator in its own process, ${seconds} s after a 2 s warm-up, every request signed with a fresh nonce`,
  `and a cached certificate-bound token; ${residents} residents with one car each and ${Math.floor(residents / 10)} guest passes;`,
  'reads mixed 60 % residents, 10 % guests, 30 % unknown. Each decision is the full pipeline: pre-TLS address filter,',
  'mTLS, certificate → partner, address list, rate limit, token check (cached), Ed25519 signature and digest check,',
  'nonce recorded, schema, perimeter, one look-up statement, one write statement (idempotency record + journal',
  'entry, atomically), signed response. Targets: p99 ≤ 20 ms and ≥ 50 % of the ceiling on PostgreSQL.',
  '',
  '| run | decisions/s | p50 ms | p90 ms | p99 ms | of ceiling | statuses |',
  '|---|---|---|---|---|---|---|',
  ...rows.map(fmt),
  '',
  `Command: \`npm run bench:barrier\` (BENCH_SECONDS=${seconds}, BENCH_CONNECTIONS=${connections}, BENCH_RESIDENTS=${residents}).`,
].join('\n');
await writeSection('bench:barrier', body);
process.stdout.write(`${body}\n`);
