/**
 * `npm run bench:floor` — the work every barrier decision cannot avoid, measured on one core, and what
 * it implies for the barrier targets on this machine.
 *
 * Contract §3 makes every decision cost at least one Ed25519 signature by the partner (the load
 * generator), one Ed25519 verification and one Ed25519 signature by smart-home (the signed response).
 * A decision also does everything the ceiling route does (TLS, HTTP). So if the ceiling saturates the
 * machine's cores at C requests/s, the pipeline can at best reach
 *   cores / (cores / C + t_sign + t_verify + t_sign)
 * and the ratio target (≥ 50 % of C) is reachable only when C ≤ cores / (t_sign + t_verify + t_sign).
 *
 * Options (env): FLOOR_ITERATIONS (default 20000), FLOOR_CEILING (a ceiling figure in requests/s to
 * evaluate; default: the ceiling row of the last `npm run bench:barrier` in docs/benchmarks.md).
 */
import { createHash, generateKeyPairSync, sign, verify } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { machine, writeSection } from './report.ts';

const iterations = Number(process.env['FLOOR_ITERATIONS'] ?? 20000);
if (!Number.isInteger(iterations) || iterations < 1000) {
  process.stderr.write('FLOOR_ITERATIONS must be an integer ≥ 1000\n');
  process.exit(2);
}

const { publicKey, privateKey } = generateKeyPairSync('ed25519');
// About the size of a barrier request's signature base (method, target URI, bearer token, digest).
const base = Buffer.alloc(720, 0x61);
const signature = sign(null, base, privateKey);

function perSecond(name: string, f: () => unknown): { name: string; perSecond: number; us: number } {
  for (let i = 0; i < iterations / 10; i++) f();
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) f();
  const ms = performance.now() - t0;
  process.stderr.write(`${name}: ${Math.round((iterations / ms) * 1000)}/s\n`);
  return { name, perSecond: Math.round((iterations / ms) * 1000), us: (ms / iterations) * 1000 };
}

const signR = perSecond('Ed25519 sign', () => sign(null, base, privateKey));
const verifyR = perSecond('Ed25519 verify', () => verify(null, base, publicKey, signature));
const digestR = perSecond('SHA-256 of a 200-byte body', () =>
  createHash('sha256').update(base.subarray(0, 200)).digest(),
);

async function lastCeiling(): Promise<number | undefined> {
  const doc = await readFile(new URL('../docs/benchmarks.md', import.meta.url), 'utf8').catch(() => '');
  const m = /\| ceiling: [^|]*\| (\d+) \|/.exec(doc);
  return m ? Number(m[1]) : undefined;
}

const cores = os.cpus().length;
const ceiling = Number(process.env['FLOOR_CEILING'] ?? (await lastCeiling()) ?? 0);
const cryptoUs = 2 * signR.us + verifyR.us;
const cryptoOnly = Math.floor((cores * 1e6) / cryptoUs);
const rows = [
  `| Ed25519 sign (partner request; smart-home response) | ${signR.perSecond} | ${signR.us.toFixed(1)} |`,
  `| Ed25519 verify (smart-home, request signature) | ${verifyR.perSecond} | ${verifyR.us.toFixed(1)} |`,
  `| SHA-256, 200-byte body (Content-Digest) | ${digestR.perSecond} | ${digestR.us.toFixed(1)} |`,
];
const lines = [
  '## The floor of a signed decision (`npm run bench:floor`)',
  '',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${machine()}, one thread, ${iterations} operations each.`,
  '',
  '| operation | per second, one core | µs each |',
  '|---|---|---|',
  ...rows,
  '',
  `Contract §3 costs every decision two Ed25519 signatures and one verification: ${cryptoUs.toFixed(0)} µs of CPU.`,
  `With ${cores} cores and nothing else to do, signatures alone cap the machine at ${cryptoOnly} decisions/s.`,
];
if (ceiling > 0) {
  const best = Math.floor((cores * 1e6) / ((cores * 1e6) / ceiling + cryptoUs));
  const reachable = ceiling <= cryptoOnly;
  lines.push(
    `A decision also does all the ceiling route's work; with the ceiling at ${ceiling}/s (saturating the cores),`,
    `the best a signed pipeline can do here is ${best}/s = ${Math.round((best / ceiling) * 100)} % of the ceiling, before any database work:`,
    reachable
      ? 'the 50 % target is arithmetically reachable on this machine.'
      : `the 50 % target is out of reach on this machine (it would need a ceiling ≤ ${cryptoOnly}/s, or more cores).`,
  );
}
lines.push(
  '',
  `Command: \`npm run bench:floor\` (FLOOR_ITERATIONS=${iterations}, FLOOR_CEILING=${ceiling}).`,
);
const body = lines.join('\n');
await writeSection('bench:floor', body);
process.stdout.write(`${body}\n`);
