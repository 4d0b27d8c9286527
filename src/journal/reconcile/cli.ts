/**
 * `smart-home journal reconcile` (issue 4):
 *
 *   smart-home journal reconcile --partner <id|code> --from <RFC 3339> --to <RFC 3339> [--out report.json]
 *   smart-home journal reconcile --offline ours.jsonl theirs.jsonl [--from … --to …] [--out report.json]
 *
 * Online: runs the §8.4 exchange against the partner's `POST {partnerBase}/v1/journal/reconcile` over
 * the outbound channel, prints a summary table on stdout, writes the signed report, and journals the
 * run; progress goes to stderr. Offline: compares two files of projections (JSON Lines, as
 * `smart-home journal export --projections` writes ours) without any network or database and signs
 * the report with the configured journal key (an auditor points SMART_HOME_JOURNAL_KEY_FILE at its
 * own Ed25519 key). Exit status: 0 no difference, 1 differences found, 2 the run could not be made.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { Config } from '../../config/config.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Db } from '../../db/db.ts';
import { loadSigningKey } from '../../keys/service-keys.ts';
import { OutboundError } from '../../outbound/errors.ts';
import { Outbound } from '../../outbound/outbound.ts';
import { PartnerDirectory } from '../../partners/partner-directory.ts';
import { parseWindow } from '../../reconcile/projection.ts';
import { uuidv7 } from '../../util/uuid.ts';
import type { LogIdentity } from '../log/sequencer.ts';
import { summarise } from './classify.ts';
import type { ReconcileProgress } from './initiator.ts';
import { compareOffline, OfflineInputError, readProjectionFile } from './offline.ts';
import { ReconcileError } from './peer.ts';
import {
  REPORT_CONTEXT,
  type ReconcileReport,
  reportText,
  type SignedReport,
  signReport,
  summaryTable,
} from './report.ts';
import { Reconciler } from './service.ts';

export interface CliHelpers {
  config(): Config;
  fail(message: string, code?: number): never;
  /** Development material ensured, the journal log's identity. */
  journalLog(cfg: Config): Promise<LogIdentity>;
  /** The migrated database; `cfg` is the configuration the command already loaded (loaded once). */
  withDb<T>(fn: (deps: { db: Db; cipher: FieldCipher }) => Promise<T>, cfg?: Config): Promise<T>;
}

interface Opts {
  partner?: string;
  from?: string;
  to?: string;
  out?: string;
  offline?: boolean;
  skewTolerance?: string;
}

/** One stderr line for a long run: rewritten in place on a terminal, every 2 s otherwise. */
function progressReporter(out: NodeJS.WriteStream = process.stderr) {
  let last = 0;
  let shown = false;
  return {
    update(p: ReconcileProgress) {
      const now = performance.now();
      if (now - last < (out.isTTY ? 100 : 2000)) return;
      last = now;
      const text = `reconciling: ${p.phase}, ${p.rounds} round trips, ${(p.bytes / 1024).toFixed(1)} KiB exchanged, ${p.differences} differing elements`;
      if (out.isTTY) out.write(`\r${text}\x1b[K`);
      else out.write(`${text}\n`);
      shown = true;
    },
    done() {
      if (shown && out.isTTY) out.write('\n');
    },
  };
}

async function writeReport(signed: SignedReport, out: string | undefined): Promise<string> {
  const file = out ?? `reconcile-${signed.report.runId}.json`;
  await writeFile(file, reportText(signed), { flag: out ? 'w' : 'wx' });
  return file;
}

function printOutcome(signed: SignedReport, file: string): void {
  const r = signed.report;
  const head = r.partner
    ? `partner ${r.partner.code}, ${r.range.from} … ${r.range.to}`
    : `offline, ${r.range.from} … ${r.range.to}`;
  const pins = [
    r.checkpoints.ours?.size !== undefined ? `ours at size ${r.checkpoints.ours.size}` : undefined,
    r.checkpoints.partner?.size !== undefined ? `partner's at size ${r.checkpoints.partner.size}` : undefined,
  ].filter(Boolean);
  process.stdout.write(`${head}${pins.length ? ` (${pins.join(', ')})` : ''}\n\n${summaryTable(r)}\n`);
  if (r.exchange)
    process.stdout.write(
      `${r.exchange.rounds} round trips, ${r.exchange.bytesSent + r.exchange.bytesReceived} bytes, ${r.exchange.ourItems} of our entries in the window\n`,
    );
  process.stdout.write(`signed report: ${file}\n`);
}

export function registerReconcileCommand(journal: Command, h: CliHelpers): void {
  journal
    .command('reconcile')
    .description(
      'compare the journal with a partner’s (contract §8.4) or two exported projection files (--offline), classify every difference and write a signed report',
    )
    .argument('[files...]', 'with --offline: ours.jsonl theirs.jsonl')
    .option('--partner <id|code>', 'the partner to reconcile with')
    .option('--from <time>', 'window start, RFC 3339 (eventId time, inclusive)')
    .option('--to <time>', 'window end, RFC 3339 (exclusive)')
    .option('--out <file>', 'the signed JSON report (default reconcile-<runId>.json)')
    .option(
      '--skew-tolerance <ms>',
      'timing_skew tolerance, ms (default SMART_HOME_RECONCILE_SKEW_TOLERANCE_MS)',
    )
    .option('--offline', 'compare two exported JSON Lines files without any network')
    .action(async (files: string[], opts: Opts) => {
      const cfg = h.config();
      let tolerance = cfg.reconcile.skewToleranceMs;
      if (opts.skewTolerance !== undefined) {
        tolerance = Number(opts.skewTolerance);
        if (!Number.isSafeInteger(tolerance) || tolerance < 0)
          h.fail('--skew-tolerance: milliseconds, ≥ 0', 2);
      }
      let window: { from: number; to: number } | undefined;
      if (opts.from !== undefined || opts.to !== undefined) {
        window = parseWindow(opts.from, opts.to);
        if (!window || !(window.to > window.from))
          h.fail('--from and --to: RFC 3339 times with their offset, --from before --to', 2);
      }
      try {
        if (opts.offline) {
          if (files.length !== 2) h.fail('--offline takes two files: ours.jsonl theirs.jsonl', 2);
          if (opts.partner) h.fail('--offline compares files; --partner is for the exchange', 2);
          await offline(files[0]!, files[1]!, window, tolerance, opts.out, cfg, h);
          return;
        }
        if (files.length > 0) h.fail('files are for --offline', 2);
        if (!opts.partner || !window) h.fail('--partner, --from and --to are required (or --offline)', 2);
        await online(opts.partner, window, tolerance, opts, cfg, h);
      } catch (err) {
        if (err instanceof ReconcileError || err instanceof OutboundError || err instanceof OfflineInputError)
          h.fail(`reconciliation failed: ${err.message}`, 2);
        throw err;
      }
    });
}

async function online(
  partnerRef: string,
  window: { from: number; to: number },
  tolerance: number,
  opts: Opts,
  cfg: Config,
  h: CliHelpers,
): Promise<void> {
  const log = await h.journalLog(cfg);
  await h.withDb(async ({ db, cipher }) => {
    const directory = await PartnerDirectory.load(db, cfg.partner.trustedProxies);
    const outbound = new Outbound({
      db,
      cipher,
      directory: () => directory,
      clientTls: {
        cert: await readFile(cfg.outbound.clientCert, 'utf8'),
        key: await readFile(cfg.outbound.clientKey, 'utf8'),
      },
      signingKey: await loadSigningKey(cfg.keys.signingKeyFile, 'Ed25519'),
      options: cfg.outbound,
    });
    try {
      const reconciler = new Reconciler({
        db,
        cipher,
        log,
        outbound,
        directory: () => directory,
        options: cfg.reconcile,
      });
      const partner = reconciler.partner(partnerRef);
      reconciler.checkWindow(window.from, window.to);
      const progress = progressReporter();
      let signed: SignedReport;
      try {
        signed = await reconciler.run({
          partner: partner.id,
          from: window.from,
          to: window.to,
          skewToleranceMs: tolerance,
          actor: { type: 'system', id: 'cli' },
          onProgress: (p) => progress.update(p),
        });
      } finally {
        progress.done();
      }
      const file = await writeReport(signed, opts.out);
      printOutcome(signed, file);
      process.exitCode = signed.report.differences.length === 0 ? 0 : 1;
    } finally {
      await outbound.close();
    }
  }, cfg);
}

async function offline(
  oursFile: string,
  theirsFile: string,
  window: { from: number; to: number } | undefined,
  tolerance: number,
  out: string | undefined,
  cfg: Config,
  h: CliHelpers,
): Promise<void> {
  const started = new Date();
  const ours = await readProjectionFile(oursFile);
  const theirs = await readProjectionFile(theirsFile);
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const it of [...ours.items, ...theirs.items]) {
    if (it.time < lo) lo = it.time;
    if (it.time > hi) hi = it.time;
  }
  const from = window?.from ?? (Number.isFinite(lo) ? lo : 0);
  const to = window?.to ?? (Number.isFinite(hi) ? hi + 1 : 1);
  const r = compareOffline(ours.items, theirs.items, {
    from,
    to,
    skewToleranceMs: tolerance,
    frameBytes: cfg.reconcile.frameBytes,
  });
  const report: ReconcileReport = {
    type: REPORT_CONTEXT,
    runId: uuidv7(started.getTime()),
    mode: 'offline',
    range: { from: new Date(from).toISOString(), to: new Date(to).toISOString() },
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    checkpoints: { ours: null, partner: null },
    options: { skewToleranceMs: tolerance },
    files: {
      ours: { name: oursFile, sha256: ours.sha256, items: r.ourItems },
      theirs: { name: theirsFile, sha256: theirs.sha256, items: r.theirItems },
    },
    summary: summarise(r.differences),
    differences: r.differences,
  };
  const signed = signReport(report, (await h.journalLog(cfg)).signer);
  const file = await writeReport(signed, out);
  printOutcome(signed, file);
  process.exitCode = r.differences.length === 0 ? 0 : 1;
}
