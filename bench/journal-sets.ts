/**
 * The item sets of bench:journal's reconciliation, made the same way in both processes from a seed:
 * N items a day apart / N in time, each element SHA-256(seed ‖ i) (what a §8.3 element is: a SHA-256
 * output). The initiator holds the base set; the responder holds a scenario's variant of it.
 */
import { createHash } from 'node:crypto';
import { ID_SIZE, ReconIndex } from '../src/reconcile/index.ts';

export const T0 = Date.parse('2026-12-01T00:00:00Z');
const DAY_MS = 86_400_000;

export interface Columns {
  times: Float64Array;
  ids: Uint8Array;
}

function element(seed: string, i: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(i);
  return createHash('sha256').update(seed).update(b).digest();
}

/** N items spread over one day, sorted by (time, element), times distinct. */
export function baseColumns(n: number, seed = 'bench:journal'): Columns {
  const times = new Float64Array(n);
  const ids = new Uint8Array(n * ID_SIZE);
  const step = DAY_MS / n;
  for (let i = 0; i < n; i++) {
    times[i] = T0 + Math.floor(i * step);
    ids.set(element(seed, i), i * ID_SIZE);
  }
  return { times, ids };
}

export const SCENARIOS = ['same', 'one', 'gap', 'scattered'] as const;
export type Scenario = (typeof SCENARIOS)[number];
export const GAP = 10_000;
/** Scattered: this many items missing at the responder, and as many altered there (same time, other element). */
export const SCATTERED_EACH = 1_000;

/** Positions spread over the set by a fixed stride (deterministic, far apart). */
function scatteredPositions(n: number, count: number, offset: number): number[] {
  const out: number[] = [];
  const stride = Math.floor(n / count);
  for (let k = 0; k < count; k++) out.push(k * stride + offset);
  return out;
}

/**
 * The responder's set for a scenario, and what the initiator must find: `have` — elements only the
 * initiator holds; `need` — only the responder.
 */
export function scenarioColumns(base: Columns, scenario: Scenario): Columns & { have: number; need: number } {
  const n = base.times.length;
  const drop = new Set<number>();
  const alter = new Set<number>();
  if (scenario === 'one') drop.add(Math.floor(n / 2));
  if (scenario === 'gap') for (let i = 0; i < GAP; i++) drop.add(Math.floor(n / 3) + i);
  if (scenario === 'scattered') {
    for (const i of scatteredPositions(n, SCATTERED_EACH, 7)) drop.add(i);
    for (const i of scatteredPositions(n, SCATTERED_EACH, Math.floor(n / SCATTERED_EACH / 2))) alter.add(i);
  }
  const m = n - drop.size;
  const times = new Float64Array(m);
  const ids = new Uint8Array(m * ID_SIZE);
  let j = 0;
  for (let i = 0; i < n; i++) {
    if (drop.has(i)) continue;
    times[j] = base.times[i]!;
    // An altered item keeps its time (its eventId) and gets another element (other content); times are
    // distinct, so the order holds.
    if (alter.has(i)) ids.set(element('altered', i), j * ID_SIZE);
    else ids.set(base.ids.subarray(i * ID_SIZE, (i + 1) * ID_SIZE), j * ID_SIZE);
    j++;
  }
  return { times, ids, have: drop.size + alter.size, need: alter.size };
}

export function indexOf(c: Columns): ReconIndex {
  return ReconIndex.fromSorted(c.times, c.ids);
}

/** The baseline's export: one element per line, 64 hex digits, in the order held. */
export function hexLines(c: Columns): string {
  const n = c.times.length;
  const parts: string[] = new Array(n);
  const buf = Buffer.from(c.ids.buffer, c.ids.byteOffset, c.ids.byteLength);
  for (let i = 0; i < n; i++) parts[i] = buf.toString('hex', i * ID_SIZE, (i + 1) * ID_SIZE);
  return `${parts.join('\n')}\n`;
}
