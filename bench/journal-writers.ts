/**
 * bench:journal's writers, in their own process (as the service's request handling is, apart from the
 * instance that holds the sequencer lock): `writers` concurrent loops, each appending `batch` barrier
 * decisions per transaction through the service's multi-row write (`journalValues` in one INSERT),
 * until `seconds` have passed; with a `rate` (entries/s, all writers together; 0: as fast as they can) each
 * writer keeps to a fixed schedule (open loop: a late append goes at once, the schedule does not move). Prints `{"ready":true}` once connected, starts on a line on stdin, and
 * prints the commits at the end: each commit's wall time (ms, performance.timeOrigin + now: the same
 * clock as the parent's) and the journal `seq`s it wrote.
 *
 *   node bench/journal-writers.ts <database url> <schema> <writers> <batch> <seconds> [rate]
 */
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { openPgDb } from '../src/db/pg-db.ts';
import { sql } from '../src/db/sql.ts';
import { JOURNAL_COLUMNS, type JournalEntry, journalValues } from '../src/journal/journal.ts';
import { uuidv7 } from '../src/util/uuid.ts';

const [url, schema, w, b, s, r] = process.argv.slice(2);
const writers = Number(w);
const batch = Number(b);
const seconds = Number(s);
const rate = Number(r ?? 0);
/** ms between one writer's appends at the given rate. */
const interval = rate > 0 ? (writers * batch * 1000) / rate : 0;
const db = await openPgDb({ connectionString: url!, max: writers, schema: schema! });

const PARTNERS = Array.from({ length: 4 }, () => uuidv7());
const DEVICES = Array.from({ length: 64 }, () => uuidv7());

/** A barrier decision as the service journals it: internal ids, a pseudonym-like subject, the eventId. */
function decisionEntry(i: number): JournalEntry & { id: string } {
  const partner = PARTNERS[i % PARTNERS.length]!;
  return {
    id: uuidv7(),
    actorType: 'partner',
    actorId: partner,
    action: 'barrier.decision',
    partnerId: partner,
    deviceId: DEVICES[i % DEVICES.length]!,
    subjectType: 'vehicle',
    subjectId: uuidv7(),
    result: i % 5 === 0 ? 'deny' : 'allow',
    requestId: randomBytes(8).toString('hex'),
    details: { eventId: uuidv7(), decisionId: uuidv7(), reason: i % 5 === 0 ? 'unknown_plate' : 'resident' },
  };
}

const now = () => performance.timeOrigin + performance.now();
const commits: Array<[number, number[]]> = [];
let counter = 0;
let appended = 0;
const statement = `bench_journal_append_${batch}`;
async function writer(until: number, offset: number) {
  let next = now() + offset;
  while (now() < until) {
    if (interval > 0) {
      const wait = next - now();
      if (wait > 0) await sleep(wait);
      next += interval;
      if (now() >= until) break;
    }
    const entries: Array<JournalEntry & { id: string }> = [];
    for (let k = 0; k < batch; k++) entries.push(decisionEntry(counter++));
    const rows = await db.query<{ seq: number }>(
      sql`insert into journal (${JOURNAL_COLUMNS}) values ${sql.join(entries.map((e) => sql`(${journalValues(e)})`))}
        returning seq`.named(statement),
    );
    commits.push([now(), rows.map((r) => Number(r.seq))]);
    appended += rows.length;
  }
}

process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
const rl = createInterface({ input: process.stdin });
await new Promise((resolve) => rl.once('line', resolve));
rl.close();
const until = now() + seconds * 1000;
const ticker = setInterval(
  () => process.stderr.write(`  writers: ${appended.toLocaleString('en')} appended\n`),
  2000,
);
await Promise.all(Array.from({ length: writers }, (_, i) => writer(until, (i * interval) / writers)));
clearInterval(ticker);
await db.close();
process.stdout.write(`${JSON.stringify({ commits })}\n`);
