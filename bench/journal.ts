/**
 * `npm run bench:journal` — the journal as a Merkle log and its reconciliation (issue 4):
 *
 * 1. appends: concurrent writers append through the service's own multi-row write (`journalValues`,
 *    one INSERT per transaction) on PostgreSQL while the sequencer integrates every `--integrate-ms`
 *    (back to back on a backlog, as src/journal/log/runner.ts); each row's time from its commit to the
 *    commit of the first signed checkpoint that includes it; once flat out, once at `--rate` (open loop).
 *    Targets ≥ 10,000 entries/s, p99 ≤ 1 s.
 * 2. verify: the log topped up to `--verify-size` entries and integrated, then `verifyLog` over all of it.
 * 3. index: `ReconIndex.fromSorted` over `--index-size` items from in-memory columns (target ≤ 2 s).
 * 4. reconcile: `--recon-size` vs `--recon-size` items, Negentropy v1 over HTTPS on loopback against a
 *    responder in its own process (bench/journal-recon-server.ts): one difference (≤ 3 round trips,
 *    ≤ 4 KB, ≤ 50 ms), a contiguous gap of 10,000 (≤ 50 ms), 2,000 scattered differences (≤ 2 s); and
 *    the baseline — fetch the other side's full export, sort both, diff.
 *
 *   npm run bench:journal -- [--seconds 20] [--warmup 3] [--writers 8] [--batch 50] [--rate 10000] [--integrate-ms 500]
 *     [--batch-max 5000] [--verify-size 1000000] [--index-size 10000000] [--recon-size 1000000]
 *     [--runs 5] [--only appends,verify,index,reconcile] [--ab-schedule] [--no-write]
 *
 * PostgreSQL from BENCH_DATABASE_URL / DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test),
 * in a schema of its own, dropped afterwards. Results go to docs/benchmarks.md (section bench:journal).
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes, randomFillSync } from 'node:crypto';
import { Agent, request } from 'node:https';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { Db } from '../src/db/db.ts';
import { migrate } from '../src/db/migrate.ts';
import { openPgDb } from '../src/db/pg-db.ts';
import { sql } from '../src/db/sql.ts';
import { integrateBatch, type LogIdentity } from '../src/journal/log/sequencer.ts';
import { verifyLog } from '../src/journal/log/verify.ts';
import { ID_SIZE, ReconIndex } from '../src/reconcile/index.ts';
import { Negentropy } from '../src/reconcile/negentropy.ts';
import { noteSigner } from '../src/tlog/note.ts';
import { uuidv7 } from '../src/util/uuid.ts';
import { baseColumns, GAP, hexLines, indexOf, SCATTERED_EACH, type Scenario, T0 } from './journal-sets.ts';
import { machine, writeSection } from './report.ts';
import { startJsonProcess, stop } from './run-process.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    writers: { type: 'string', default: '8' },
    batch: { type: 'string', default: '50' },
    rate: { type: 'string', default: '10000' },
    'integrate-ms': { type: 'string', default: '500' },
    'batch-max': { type: 'string', default: '5000' },
    'verify-size': { type: 'string', default: '1000000' },
    'index-size': { type: 'string', default: '10000000' },
    'recon-size': { type: 'string', default: '1000000' },
    runs: { type: 'string', default: '5' },
    only: { type: 'string', default: 'appends,verify,index,reconcile' },
    /** Also a run with batches due every interval from the previous batch's start (runner.ts: after its end). */
    'ab-schedule': { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
  },
});
const num = (k: keyof typeof args) => {
  const n = Number(args[k]);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${k}: a number`);
  return n;
};
const seconds = num('seconds');
const warmup = num('warmup');
const writers = num('writers');
const batch = num('batch');
const rateArg = num('rate');
const integrateMs = num('integrate-ms');
const batchMax = num('batch-max');
const verifySize = num('verify-size');
const indexSize = num('index-size');
const reconSize = num('recon-size');
const runs = Math.max(1, num('runs'));
const only = new Set(String(args.only).split(','));
const pgUrl =
  process.env['BENCH_DATABASE_URL'] ??
  process.env['DATABASE_URL'] ??
  'postgres://postgres@127.0.0.1:5432/test';
const script = (f: string) => new URL(f, import.meta.url).pathname;
const log = (s: string) => process.stderr.write(`${s}\n`);
const fmt = (n: number) => Math.round(n).toLocaleString('en');
const ms = (n: number) => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : String(Math.round(n)));
const kb = (b: number) => (b < 10_240 ? `${(b / 1024).toFixed(2)} KB` : `${fmt(b / 1024)} KB`);
const verdict = (ok: boolean, text: string) => (ok ? `met (${text})` : `**missed** (${text})`);

function quantile(sorted: Float64Array | number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

const sections: string[] = [];
const loadBefore = os.loadavg()[0]!;
const verdicts: string[] = [];

// ---- PostgreSQL: appends, then verify ------------------------------------------------------------------

const PARTNERS = Array.from({ length: 4 }, () => uuidv7());
const DEVICES = Array.from({ length: 64 }, () => uuidv7());

async function withSchema(fn: (db: Db, schema: string) => Promise<void>): Promise<void> {
  const schema = `bench_journal_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: pgUrl });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  const db = await openPgDb({ connectionString: pgUrl, max: 4, schema });
  try {
    await migrate(db);
    await fn(db, schema);
  } finally {
    await db.close();
    await admin.query(`drop schema ${schema} cascade`);
    await admin.end();
  }
}

async function pgVersion(): Promise<string> {
  const c = new pg.Client({ connectionString: pgUrl });
  await c.connect();
  const r = await c.query<{ v: string }>(`select current_setting('server_version') as v`);
  await c.end();
  return `PostgreSQL ${r.rows[0]!.v}`;
}

/** Runs bench/journal-writers.ts: resolves `started` when it begins appending, `done` with its commits. */
function startWriters(schema: string, rate: number) {
  const child = spawn(
    process.execPath,
    [
      script('./journal-writers.ts'),
      ...[pgUrl, schema, String(writers), String(batch), String(warmup + seconds), String(rate)],
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines: string[] = [];
  const rl = createInterface({ input: child.stdout! });
  let onReady: () => void;
  const ready = new Promise<void>((r) => {
    onReady = r;
  });
  rl.on('line', (l) => {
    if (lines.length === 0) onReady();
    lines.push(l);
  });
  const done = new Promise<Array<[number, number[]]>>((resolve, reject) =>
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`journal-writers exited with ${code}`));
      else resolve((JSON.parse(lines.at(-1)!) as { commits: Array<[number, number[]]> }).commits);
    }),
  );
  return {
    ready,
    start: () => child.stdin!.end('go\n'),
    done,
  };
}

interface AppendRun {
  offered: string;
  appendRate: number;
  integrateRate: number;
  p50: number;
  p99: number;
  max: number;
  checkpoints: number;
  perCheckpoint: number;
  batchP50: number;
  batchP99: number;
}

/** One run of the writers (at `rate` entries/s, 0: flat out) with the sequencer going. */
/**
 * `fromStart`: the next batch is due `integrateMs` after the previous one *started* (a fixed schedule),
 * where src/journal/log/runner.ts waits `integrateMs` after it *ended* — the A/B row of the report.
 */
async function appendRun(
  db: Db,
  schema: string,
  identity: LogIdentity,
  rate: number,
  fromStart = false,
): Promise<AppendRun> {
  const offered = `${rate > 0 ? `${fmt(rate)}/s offered` : 'as fast as they can'}${fromStart ? '' : `; batches due ${integrateMs} ms after the previous one ended`}`;
  log(
    `[appends] ${writers} writers × ${batch} entries per INSERT, ${offered}, ${warmup} s warm-up + ${seconds} s…`,
  );
  const now = () => performance.timeOrigin + performance.now();
  const checkpoints: Array<{ t: number; size: number }> = [];
  const batchDurations: Array<{ t: number; d: number }> = [];
  const startSize = (await logStateSize(db)) ?? 0;
  let sequencing = true;
  const w = startWriters(schema, rate);
  await w.ready;
  const sequencer = (async () => {
    while (sequencing) {
      const s = now();
      const r = await integrateBatch(db, identity, batchMax);
      const t = now();
      if (r.integrated > 0) {
        checkpoints.push({ t, size: r.size });
        batchDurations.push({ t, d: t - s });
      }
      if (!(r.locked && r.integrated === batchMax))
        await sleep(fromStart ? Math.max(0, s + integrateMs - now()) : integrateMs);
    }
  })();
  const started = now();
  w.start();
  const ticker = setInterval(() => {
    const el = (now() - started) / 1000;
    const size = (checkpoints.at(-1)?.size ?? startSize) - startSize;
    log(`  ${el.toFixed(0)} s: ${fmt(size)} integrated (${fmt(size / el)}/s)`);
  }, 2000);
  const commits = (await w.done).map(([t, seqs]) => ({ t, seqs }));
  const ended = commits.reduce((m, c) => Math.max(m, c.t), 0);
  const appended = commits.reduce((n, c) => n + c.seqs.length, 0);
  // Let the sequencer take in everything written.
  while ((checkpoints.at(-1)?.size ?? startSize) < startSize + appended) await sleep(20);
  sequencing = false;
  clearInterval(ticker);
  await sequencer;

  const leaves = await db.query<{ journal_seq: number; leaf_index: number }>(
    sql`select journal_seq, leaf_index from journal_leaves where leaf_index >= ${String(startSize)}::bigint`,
  );
  const leafOf = new Map<number, number>();
  for (const l of leaves) leafOf.set(Number(l.journal_seq), Number(l.leaf_index));
  const from = started + warmup * 1000;
  const latencies: number[] = [];
  let measured = 0;
  for (const c of commits) {
    if (c.t < from) continue;
    measured += c.seqs.length;
    for (const seq of c.seqs) {
      const leaf = leafOf.get(seq);
      if (leaf === undefined) throw new Error(`row ${seq} was never integrated`);
      let lo = 0;
      let hi = checkpoints.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (checkpoints[mid]!.size > leaf) hi = mid;
        else lo = mid + 1;
      }
      latencies.push(checkpoints[lo]!.t - c.t);
    }
  }
  const sizeAt = (t: number) => {
    let size = startSize;
    for (const c of checkpoints) if (c.t <= t) size = c.size;
    return size;
  };
  const windowS = (ended - from) / 1000;
  const lat = Float64Array.from(latencies).sort();
  const inWindow = batchDurations.filter((b) => b.t >= from && b.t <= ended);
  const bd = Float64Array.from(inWindow.map((b) => b.d)).sort();
  const r: AppendRun = {
    offered,
    appendRate: measured / windowS,
    integrateRate: (sizeAt(ended) - sizeAt(from)) / windowS,
    p50: quantile(lat, 0.5),
    p99: quantile(lat, 0.99),
    max: lat[lat.length - 1] ?? 0,
    checkpoints: inWindow.length,
    perCheckpoint: (sizeAt(ended) - sizeAt(from)) / Math.max(1, inWindow.length),
    batchP50: quantile(bd, 0.5),
    batchP99: quantile(bd, 0.99),
  };
  log(
    `[appends] ${fmt(r.appendRate)} appended/s, ${fmt(r.integrateRate)} integrated/s; append → signed checkpoint p50 ${ms(r.p50)} ms, p99 ${ms(r.p99)} ms`,
  );
  return r;
}

async function logStateSize(db: Db): Promise<number | undefined> {
  const r = await db.one<{ size: string }>(sql`select size::text as size from journal_log_state`);
  return r ? Number(r.size) : undefined;
}

async function appends(db: Db, schema: string, identity: LogIdentity): Promise<void> {
  // As src/journal/log/runner.ts does: the next batch is due an interval after the last one started.
  const flat = await appendRun(db, schema, identity, 0, true);
  const paced = rateArg > 0 ? await appendRun(db, schema, identity, rateArg, true) : undefined;
  // --ab-schedule: also the old schedule (an interval after the last batch ended), for comparison.
  const fixed =
    rateArg > 0 && args['ab-schedule'] ? await appendRun(db, schema, identity, rateArg, false) : undefined;
  const row = (r: AppendRun) =>
    `| ${r.offered} | ${fmt(r.appendRate)} | ${fmt(r.integrateRate)} | ${ms(r.p50)} / ${ms(r.p99)} / ${ms(r.max)} | ${fmt(r.checkpoints)} | ${fmt(r.perCheckpoint)} | ${ms(r.batchP50)} / ${ms(r.batchP99)} |`;
  sections.push(
    [
      '### Appends and the sequencer',
      '',
      `${writers} concurrent writers in their own process (bench/journal-writers.ts), each appending ${batch} barrier-decision`,
      "entries per transaction through the service's own multi-row write (`journalValues` in one INSERT, committed on its own),",
      `for ${seconds} s after a ${warmup} s warm-up — first as fast as they can, then at a fixed offered rate (open loop) — while the`,
      'sequencer runs in this process as in the instance holding its lock: a batch (one transaction under the advisory lock: rows',
      `read, RFC 8785 entries, leaf hashes, tiles stored, checkpoint signed with Ed25519) due every ${integrateMs} ms from the previous batch's start (as runner.ts), at most`,
      `${fmt(batchMax)} rows, back to back while a full batch was found. Latency is per entry, from its INSERT's commit to the commit`,
      'of the first signed checkpoint that covers it (both processes read the same wall clock); "integrated/s" is how fast the',
      `log grew over the measured window; every entry was integrated before the figures were taken.${fixed ? ' The last row is an A/B of' : ''}`,
      ...(fixed
        ? [
            "the schedule: batches due an interval after the previous batch's end (the runner's former schedule).",
          ]
        : []),
      '',
      '| writers | appended entries/s | integrated entries/s | append → checkpoint p50 / p99 / max ms | checkpoints | entries per checkpoint | sequencer batch p50 / p99 ms |',
      '|---|---|---|---|---|---|---|',
      row(flat),
      ...(paced ? [row(paced)] : []),
      ...(fixed ? [row(fixed)] : []),
    ].join('\n'),
  );
  const sustained = paced ?? flat;
  // Sustained: the offered rate was carried (appended within 1 % of it, window edges) and the log kept up.
  const carried = paced ? paced.appendRate >= 0.99 * rateArg : true;
  // …and the log grew as fast, give or take two batches over the window (its edges fall between batches).
  const keptUp = sustained.integrateRate >= sustained.appendRate - (2 * batchMax) / seconds;
  const enough = paced ? rateArg >= 10_000 : flat.appendRate >= 10_000;
  verdicts.push(
    `Sustained appends ≥ 10,000 entries/s with the sequencer keeping up: ${verdict(carried && keptUp && enough, `${fmt(sustained.appendRate)} appended/s, ${fmt(sustained.integrateRate)} integrated/s at ${sustained.offered}; flat out ${fmt(flat.appendRate)} appended/s, ${fmt(flat.integrateRate)} integrated/s`)}.`,
  );
  verdicts.push(
    `Append → signed checkpoint p99 ≤ 1 s: ${verdict(sustained.p99 <= 1000, `${ms(sustained.p99)} ms at ${sustained.offered}`)}${fixed ? `; with batches due ${integrateMs} ms after the previous one ended (the former schedule): p99 ${ms(fixed.p99)} ms` : ''}.`,
  );
}

async function verify(db: Db, identity: LogIdentity): Promise<void> {
  const have = Number((await db.one<{ n: string }>(sql`select count(*)::text as n from journal`))?.n ?? 0);
  const chunk = 200_000;
  if (have < verifySize) log(`[verify] topping the journal up from ${fmt(have)} to ${fmt(verifySize)} rows…`);
  for (let n = have; n < verifySize; n += chunk) {
    const k = Math.min(chunk, verifySize - n);
    await db.query(sql`
      insert into journal (id, actor_type, actor_id, action, partner_id, device_id, subject_type, subject_id, result,
        request_id, details)
      select gen_random_uuid(), 'partner', ${PARTNERS[0]!}, 'barrier.decision', ${PARTNERS[0]!}::uuid, ${DEVICES[0]!}::uuid,
        'vehicle', gen_random_uuid()::text, case when g % 5 = 0 then 'deny' else 'allow' end, md5(g::text),
        jsonb_build_object('eventId', gen_random_uuid()::text, 'decisionId', gen_random_uuid()::text, 'reason', 'resident')
      from generate_series(1, ${k}) g`);
    log(`  ${fmt(n + k)} rows`);
  }
  log('[verify] integrating the backlog…');
  const s0 = performance.now();
  let size = 0;
  let backlog = 0;
  let last = s0;
  for (;;) {
    const r = await integrateBatch(db, identity, batchMax);
    backlog += r.integrated;
    if (r.integrated > 0) size = r.size;
    if (performance.now() - last > 2000) {
      last = performance.now();
      log(`  log size ${fmt(size)}`);
    }
    if (r.integrated < batchMax) break;
  }
  const integrateRate = backlog / ((performance.now() - s0) / 1000);
  log(`[verify] verifyLog over ${fmt(size)} entries…`);
  let lastLog = 0;
  const s1 = performance.now();
  const r = await verifyLog(db, {
    origin: identity.origin,
    verifiers: [identity.signer.verifier],
    onProgress: (done, total) => {
      if (performance.now() - lastLog > 2000) {
        lastLog = performance.now();
        log(`  ${fmt(done)}/${fmt(total)}`);
      }
    },
  });
  const secs = (performance.now() - s1) / 1000;
  if (!r.ok) throw new Error(`verifyLog failed: ${r.problems.slice(0, 3).join('; ')}`);
  log(`[verify] ${fmt(r.size)} entries, ${fmt(r.checkpoints)} checkpoints in ${secs.toFixed(1)} s`);
  sections.push(
    [
      '### Verify',
      '',
      `\`verifyLog\` (what \`smart-home journal verify\` runs) over the whole log: every row read back in leaf order, its`,
      "RFC 8785 entry rebuilt and hashed, the tree recomputed, each stored checkpoint's signature and root checked, the level-0",
      'tiles compared. The log was topped up with generated barrier decisions and integrated by the sequencer first',
      backlog > 0
        ? `(working off that backlog of ${fmt(backlog)} in ${fmt(batchMax)}-row batches: ${fmt(integrateRate)} entries/s, for scale).`
        : '(no backlog was left).',
      '',
      '| entries | signed checkpoints | seconds | entries/s |',
      '|---|---|---|---|',
      `| ${fmt(r.size)} | ${fmt(r.checkpoints)} | ${secs.toFixed(1)} | ${fmt(r.size / secs)} |`,
    ].join('\n'),
  );
  verdicts.push(
    `Verify of a ${fmt(r.size)}-entry log: ${fmt(r.size / secs)} entries/s (reported, no target).`,
  );
}

// ---- reconciliation --------------------------------------------------------------------------------------

function indexBuild(): void {
  log(`[index] ${fmt(indexSize)} items in memory…`);
  const times = new Float64Array(indexSize);
  const step = 86_400_000 / indexSize;
  for (let i = 0; i < indexSize; i++) times[i] = T0 + Math.floor(i * step);
  const ids = new Uint8Array(indexSize * ID_SIZE);
  for (let o = 0; o < ids.length; o += 1 << 30) randomFillSync(ids, o, Math.min(1 << 30, ids.length - o));
  const builds: number[] = [];
  let bytes = 0;
  for (let k = 0; k < 3; k++) {
    const s = performance.now();
    const index = ReconIndex.fromSorted(times, ids);
    builds.push(performance.now() - s);
    bytes = index.byteLength;
  }
  const best = Math.min(...builds);
  const prefix = bytes - times.byteLength - ids.byteLength;
  log(`[index] built in ${builds.map(ms).join(', ')} ms`);
  sections.push(
    [
      '### Building the reconciliation index',
      '',
      `\`ReconIndex.fromSorted\` over ${fmt(indexSize)} items (a Float64Array of times and one 32-byte element each, sorted,`,
      'as the database returns them): the order check and the block prefix sums; columns adopted without a copy.',
      '',
      '| items | build ms (3 runs) | prefix sums | columns |',
      '|---|---|---|---|',
      `| ${fmt(indexSize)} | ${builds.map(ms).join(' / ')} | ${(prefix / 2 ** 20).toFixed(1)} MiB | ${fmt((times.byteLength + ids.byteLength) / 2 ** 20)} MiB |`,
    ].join('\n'),
  );
  verdicts.push(
    `Index of ${fmt(indexSize)} entries ≤ 2 s: ${verdict(best <= 2000, `${ms(best)} ms, best of 3`)}.`,
  );
}

async function reconcile(): Promise<void> {
  log(`[reconcile] responder with ${fmt(reconSize)} items per scenario (its own process)…`);
  const server = startJsonProcess<{ url: string; ca: string }>(script('./journal-recon-server.ts'), [
    String(reconSize),
  ]);
  try {
    const base = baseColumns(reconSize);
    const ours = indexOf(base);
    const { url, ca } = await server.ready;
    const agent = new Agent({ keepAlive: true, ca, maxSockets: 1 });
    const call = (method: string, path: string, body?: Buffer) =>
      new Promise<Buffer>((resolve, reject) => {
        const req = request(`${url}${path}`, { method, agent }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const b = Buffer.concat(chunks);
            if (res.statusCode !== 200) reject(new Error(`${path}: ${res.statusCode} ${b.toString()}`));
            else resolve(b);
          });
          res.on('error', reject);
        });
        req.on('error', reject);
        if (body) req.setHeader('content-type', 'application/octet-stream');
        req.end(body);
      });

    const sync = async (scenario: Scenario) => {
      const s = performance.now();
      const neg = new Negentropy(ours);
      let msg: Buffer | null = neg.initiate();
      let rounds = 0;
      let bytes = 0;
      let have = 0;
      let need = 0;
      while (msg) {
        const answer = await call('POST', `/reconcile?scenario=${scenario}`, msg);
        rounds++;
        bytes += msg.length + answer.length;
        const r = neg.reconcileAsInitiator(answer);
        have += r.have.length;
        need += r.need.length;
        msg = r.next;
      }
      return { ms: performance.now() - s, rounds, bytes, have, need };
    };
    const expected: Record<Scenario, { have: number; need: number }> = {
      same: { have: 0, need: 0 },
      one: { have: 1, need: 0 },
      gap: { have: GAP, need: 0 },
      scattered: { have: 2 * SCATTERED_EACH, need: SCATTERED_EACH },
    };
    // Warm-up: the TLS connection, both processes' JIT.
    for (let k = 0; k < 3; k++) await sync('same');
    const table: string[] = [];
    const results = new Map<Scenario, { med: number; max: number; rounds: number; bytes: number }>();
    for (const scenario of ['same', 'one', 'gap', 'scattered'] as const) {
      const times: number[] = [];
      let last = { rounds: 0, bytes: 0 };
      for (let k = 0; k < runs; k++) {
        const r = await sync(scenario);
        const e = expected[scenario];
        if (r.have !== e.have || r.need !== e.need)
          throw new Error(`${scenario}: found have ${r.have} need ${r.need}, expected ${e.have} / ${e.need}`);
        times.push(r.ms);
        last = r;
      }
      const med = median(times);
      const max = Math.max(...times);
      results.set(scenario, { med, max, ...last });
      log(`[reconcile] ${scenario}: ${ms(med)} ms median, ${last.rounds} round trips, ${kb(last.bytes)}`);
    }

    // The baseline: the other side's full export over the same HTTPS, ours, both sorted, then compared.
    const baseline = async (scenario: Scenario) => {
      const s = performance.now();
      const theirs = (await call('GET', `/export?scenario=${scenario}`)).toString('latin1');
      const a = hexLines(base).trimEnd().split('\n').sort();
      const b = theirs.trimEnd().split('\n').sort();
      let i = 0;
      let j = 0;
      let onlyOurs = 0;
      let onlyTheirs = 0;
      while (i < a.length || j < b.length) {
        if (j >= b.length || (i < a.length && a[i]! < b[j]!)) {
          onlyOurs++;
          i++;
        } else if (i >= a.length || b[j]! < a[i]!) {
          onlyTheirs++;
          j++;
        } else {
          i++;
          j++;
        }
      }
      return { ms: performance.now() - s, bytes: theirs.length, onlyOurs, onlyTheirs };
    };
    const baseTimes: number[] = [];
    let baseBytes = 0;
    const baseRuns = Math.min(runs, 3);
    for (let k = 0; k < baseRuns; k++) {
      const r = await baseline('one');
      if (r.onlyOurs !== 1 || r.onlyTheirs !== 0) throw new Error('baseline: wrong difference');
      baseTimes.push(r.ms);
      baseBytes = r.bytes;
    }
    const baseMed = median(baseTimes);
    log(`[reconcile] baseline (export, sort, diff): ${ms(baseMed)} ms, ${kb(baseBytes)}`);

    const label: Record<Scenario, string> = {
      same: 'identical sets',
      one: 'one difference',
      gap: `contiguous gap of ${fmt(GAP)}`,
      scattered: `${fmt(2 * SCATTERED_EACH)} scattered differences (${fmt(SCATTERED_EACH)} missing, ${fmt(SCATTERED_EACH)} altered)`,
    };
    for (const [scenario, r] of results)
      table.push(
        `| ${label[scenario]} | ${ms(r.med)} / ${ms(r.max)} | ${r.rounds} | ${kb(r.bytes)} | ${fmt(baseMed / r.med)}× |`,
      );
    table.push(
      `| baseline: full export of the other side, both sorted, diffed (one difference) | ${ms(baseMed)} / ${ms(Math.max(...baseTimes))} | 1 | ${kb(baseBytes)} | 1× |`,
    );
    sections.push(
      [
        '### Reconciliation over HTTPS',
        '',
        `${fmt(reconSize)} items on each side (a day of times, elements SHA-256 outputs as §8.3 elements are), Negentropy v1`,
        'over HTTPS on loopback: the initiator here, the responder (a small HTTPS server answering each message over its',
        'ReconIndex, bench/journal-recon-server.ts) in its own process; one keep-alive connection, warmed up. Times are',
        `initiate → done, median / max of ${runs} runs; bytes are the message bodies both ways; every run found exactly the`,
        "differences made. The baseline is what a user would otherwise do: fetch the other side's full export (one element per line,",
        '64 hex digits), export ours, sort both, walk them together.',
        '',
        '| scenario | ms median / max | round trips | exchanged | faster than the baseline |',
        '|---|---|---|---|---|',
        ...table,
      ].join('\n'),
    );
    const one = results.get('one')!;
    const gap = results.get('gap')!;
    const sc = results.get('scattered')!;
    verdicts.push(
      `One difference in ${fmt(reconSize)} vs ${fmt(reconSize)}: ≤ 3 round trips ${verdict(one.rounds <= 3, String(one.rounds))}, ≤ 4 KB ${verdict(one.bytes <= 4096, kb(one.bytes))}, ≤ 50 ms ${verdict(one.med <= 50, `${ms(one.med)} ms median`)}.`,
    );
    verdicts.push(`Contiguous gap of 10,000 ≤ 50 ms: ${verdict(gap.med <= 50, `${ms(gap.med)} ms median`)}.`);
    verdicts.push(
      `2,000 scattered differences ≤ 2 s: ${verdict(sc.med <= 2000, `${ms(sc.med)} ms median`)}.`,
    );
    verdicts.push(
      `Baseline (full export, sort, diff): ${ms(baseMed)} ms — ${fmt(baseMed / one.med)}× the reconciliation of one difference, ${fmt(baseMed / sc.med)}× that of 2,000.`,
    );
    agent.destroy();
  } finally {
    await stop(server.child);
  }
}

// ---- run -----------------------------------------------------------------------------------------------------

let db = '';
if (only.has('appends') || only.has('verify')) {
  db = await pgVersion();
  const identity: LogIdentity = (() => {
    const origin = 'bench.localhost/journal';
    return { origin, signer: noteSigner(origin, generateKeyPairSync('ed25519').privateKey) };
  })();
  await withSchema(async (d, schema) => {
    if (only.has('appends')) await appends(d, schema, identity);
    if (only.has('verify')) await verify(d, identity);
  });
}
if (only.has('index')) indexBuild();
if (only.has('reconcile')) await reconcile();

const command = `npm run bench:journal${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
const body = [
  '## Journal (`npm run bench:journal`)',
  '',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}${db ? `, ${db}` : ''}; everything (PostgreSQL included) shares the two cores with the other work on the machine (1-minute load average ${loadBefore.toFixed(1)} at the start, ${os.loadavg()[0]!.toFixed(1)} at the end).`,
  '',
  ...sections.flatMap((s) => [s, '']),
  ...verdicts.map((v) => `- ${v}`),
  '',
  `Command: \`${command}\`.`,
].join('\n');
process.stdout.write(`${body}\n`);
if (!args['no-write']) {
  await writeSection('bench:journal', body);
  log('written to docs/benchmarks.md (section bench:journal)');
}
