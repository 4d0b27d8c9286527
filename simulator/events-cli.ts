/**
 * `simulator events …`: a partner's devices reporting events (contract §9).
 *
 *   npm run simulator -- events send <code> --devices door-1,door-2 --count 10000 --batch 100 \
 *     --duplicates 0.1 --shuffle 500 --drop 0.01 --seed 7
 *   npm run simulator -- events serve <code> --port 9601        # GET /v1/events for smart-home's backfill
 *
 * The partner's log lives in `<home>/<code>/events.jsonl`, so seq continues across runs (+1 per event,
 * no gaps) and `serve` answers backfills of what `send` dropped. Progress goes to stderr, the delivery
 * report (JSON) to stdout.
 */
import { existsSync } from 'node:fs';
import { appendFile, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import type { JWK } from 'jose';
import type { PartnerEvent } from '../src/events/model.ts';
import { createCa, type KeyPairPem } from '../src/pki/certificates.ts';
import { progressLine } from '../src/util/progress.ts';
import { DeviceFleet, PartnerEventLog } from './events.ts';
import { type DeliveryFaults, deliverEvents, MAX_BATCH } from './events-sender.ts';
import { type EventsMode, PartnerEventsEndpoint } from './events-server.ts';
import { loadIdentity } from './identity.ts';
import { smartHomeTrust, startIntercomSimulator } from './intercom.ts';
import { PartnerClient } from './partner-client.ts';

interface CliHelpers {
  dirOf(code: string): string;
  fail(message: string): never;
}

const LOG_FILE = 'events.jsonl';

async function loadLog(dir: string, seed: number): Promise<PartnerEventLog> {
  const log = new PartnerEventLog({ seed: seed + Date.now() });
  const file = path.join(dir, LOG_FILE);
  if (existsSync(file)) {
    const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean);
    log.restore(lines.map((l) => JSON.parse(l) as PartnerEvent));
  }
  return log;
}

export function eventCommands(program: Command, h: CliHelpers): void {
  const number = (name: string, v: string, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < min || n > max)
      h.fail(`--${name} must be ${min}–${max}`);
    return n;
  };
  const events = program
    .command('events')
    .description('device events (contract §9): send them, serve backfills');

  events
    .command('send')
    .argument('<code>', 'partner')
    .requiredOption('--devices <ids>', "comma-separated device ids (the partner's own, as registered)")
    .option('--count <n>', 'events to produce and send', '1000')
    .option('--batch <n>', `events per request, 1–${MAX_BATCH}`, '100')
    .option('--concurrency <n>', 'requests in flight', '8')
    .option('--rate <n>', 'at most n requests started per second (default: as fast as answered)')
    .option('--seed <n>', 'makes every fault choice reproducible', '1')
    .option('--duplicates <ratio>', 'share of events sent twice', '0')
    .option('--shuffle <window>', 'shuffle events within windows of this many', '0')
    .option('--drop <ratio>', 'share of events never sent (kept in the log: smart-home must backfill)', '0')
    .option('--delay <ms>', 'random delay of up to ms before each request', '0')
    .option('--burst <batches:pauseMs>', 'send batches back to back, then pause')
    .option('--stale <ratio>', 'share of events that happened --stale-age ago', '0')
    .option('--stale-age <s>', 'age of a stale event, seconds', '3600')
    .option('--skew <device=ms...>', "a device's clock offset, ms (negative: behind)")
    .option('--reboots <ratio>', 'share of events that are a device reboot', '0')
    .option('--statuses <ratio>', 'share of alert statuses (tamper, door_forced, door_held_open)', '0')
    .option('--heartbeat-every <n>', 'a heartbeat from every device every n events', '0')
    .option('--subjects <pseudonyms>', 'comma-separated resident pseudonyms the devices recognise', '')
    .option('--max-attempts <n>', 'attempts per request before giving up', '30')
    .description('produce events on the devices and deliver them to smart-home, with faults')
    .action(async (code: string, o: Record<string, string | string[] | undefined>) => {
      const g = program.opts<{ url: string; ca: string; smartHomeKey: string }>();
      // commander names `--max-attempts` maxAttempts
      const s = (k: string) => String(o[k.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())] ?? '');
      const dir = h.dirOf(code);
      const seed = number('seed', s('seed'), 0, 2 ** 32 - 1);
      const skews = new Map<string, number>();
      for (const kv of (o['skew'] as string[] | undefined) ?? []) {
        const [dev, ms] = kv.split('=');
        if (!dev || ms === undefined) h.fail(`--skew takes device=ms, not ${kv}`);
        skews.set(dev, number('skew', ms, -86_400_000, 86_400_000));
      }
      const devices = s('devices')
        .split(',')
        .filter(Boolean)
        .map((id) => ({ id, clockSkewMs: skews.get(id) ?? 0 }));
      let burst: DeliveryFaults['burst'];
      if (o['burst']) {
        const [b, p] = s('burst').split(':');
        burst = { batches: number('burst', b ?? '', 1), pauseMs: number('burst', p ?? '', 0) };
      }
      let smartHomeKey: JWK | undefined;
      if (existsSync(g.smartHomeKey)) {
        smartHomeKey = JSON.parse(await readFile(g.smartHomeKey, 'utf8')) as JWK;
        if (smartHomeKey.d)
          h.fail(`${g.smartHomeKey} holds a private key: a partner is given the public key only`);
      }
      const concurrency = number('concurrency', s('concurrency'), 1, 1024);
      const log = await loadLog(dir, seed);
      const fleet = new DeviceFleet(log, {
        devices,
        subjects: s('subjects').split(',').filter(Boolean),
        seed,
        heartbeatEvery: number('heartbeat-every', s('heartbeat-every'), 0),
        staleRatio: number('stale', s('stale'), 0, 1),
        staleAgeMs: number('stale-age', s('stale-age'), 0) * 1000,
        rebootRatio: number('reboots', s('reboots'), 0, 1),
        statusRatio: number('statuses', s('statuses'), 0, 1),
      });
      const produced = fleet.produce(number('count', s('count'), 1, 10_000_000));
      // The log is the partner's record before any delivery (what a backfill serves).
      await appendFile(path.join(dir, LOG_FILE), produced.map((e) => `${JSON.stringify(e)}\n`).join(''));
      const client = new PartnerClient({
        identity: await loadIdentity(dir),
        baseUrl: g.url,
        serverCa: await readFile(g.ca, 'utf8'),
        smartHomeKey,
        connections: concurrency,
      });
      const progress = progressLine(`events → ${g.url}`);
      try {
        const report = await deliverEvents(produced, {
          client,
          batchSize: number('batch', s('batch'), 1, MAX_BATCH),
          concurrency,
          ...(o['rate'] ? { requestsPerSecond: number('rate', s('rate'), 0.001) } : {}),
          faults: {
            seed,
            duplicates: number('duplicates', s('duplicates'), 0, 1),
            shuffleWindow: number('shuffle', s('shuffle'), 0),
            drop: number('drop', s('drop'), 0, 1),
            maxDelayMs: number('delay', s('delay'), 0),
            ...(burst ? { burst } : {}),
          },
          retry: { maxAttempts: number('max-attempts', s('max-attempts'), 1) },
          onProgress: progress,
        });
        progress.done();
        process.stdout.write(
          `${JSON.stringify({ firstSeq: produced[0]?.seq, lastSeq: log.lastSeq, ...report })}\n`,
        );
        if (report.failed > 0) process.exitCode = 1;
      } finally {
        await client.close();
      }
    });

  events
    .command('serve')
    .argument('<code>', 'partner')
    .option('--data <dir>', "smart-home's data directory (its service CA and public signing key)", 'data')
    .option('--client-id <id>', 'the client_id smart-home uses at this partner', 'smart-home')
    .option('--port <n>', 'port to listen on', '9601')
    .option('--mode <mode>', 'normal, down, unavailable or slow', 'normal')
    .description("serve the partner's event log at GET /v1/events for smart-home's backfill")
    .action(async (code: string, o: { data: string; clientId: string; port: string; mode: string }) => {
      const dir = h.dirOf(code);
      if (!['normal', 'down', 'unavailable', 'slow'].includes(o.mode)) h.fail(`unknown --mode ${o.mode}`);
      const endpoint = new PartnerEventsEndpoint(await loadLog(dir, 1));
      // `events send` may append to the log while this serves it: take what it added, once a second.
      const file = path.join(dir, LOG_FILE);
      let offset = existsSync(file) ? (await stat(file)).size : 0;
      const follow = setInterval(async () => {
        const size = existsSync(file) ? (await stat(file)).size : 0;
        if (size <= offset) return;
        const added = (await readFile(file)).subarray(offset, size).toString('utf8');
        const complete = added.slice(0, added.lastIndexOf('\n') + 1);
        offset += Buffer.byteLength(complete);
        endpoint.log.restore(
          complete
            .split('\n')
            .filter(Boolean)
            .map((l) => JSON.parse(l) as PartnerEvent),
        );
      }, 1000);
      endpoint.set(o.mode as EventsMode);
      // The server CA is kept: smart-home pins it (provisioning `outbound.serverCa`).
      const caFile = path.join(dir, 'server-ca.json');
      let serverCa: KeyPairPem;
      if (existsSync(caFile)) serverCa = JSON.parse(await readFile(caFile, 'utf8')) as KeyPairPem;
      else {
        serverCa = await createCa({ commonName: `${code} server CA` });
        await writeFile(caFile, JSON.stringify(serverCa), { mode: 0o600 });
        await writeFile(path.join(dir, 'public', 'server-ca.crt'), serverCa.certPem);
      }
      const sim = await startIntercomSimulator({
        identity: await loadIdentity(dir),
        ...(await smartHomeTrust(o.data)),
        clientId: o.clientId,
        doors: [],
        serverCa,
        events: endpoint,
        port: number('port', o.port, 0, 65535),
      });
      process.stderr.write(
        `serving ${endpoint.log.lastSeq} events (and those appended later) at ${sim.url}/v1/events (mode ${o.mode}); ` +
          `server CA: ${path.join(dir, 'public', 'server-ca.crt')}; Ctrl-C stops\n`,
      );
      const stop = async () => {
        clearInterval(follow);
        await sim.stop();
        process.exit(0);
      };
      process.on('SIGINT', () => void stop());
      process.on('SIGTERM', () => void stop());
    });
}
