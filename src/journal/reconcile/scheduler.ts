/**
 * The daily reconciliation (SMART_HOME_RECONCILE_SCHEDULE, off by default): every UTC day,
 * SMART_HOME_RECONCILE_SCHEDULE_DELAY_MINUTES after midnight, each enabled partner with an outbound
 * registration is reconciled for the previous day. One instance runs it: on PostgreSQL the round
 * holds an advisory transaction lock, and a (partner, day) already journaled as a scheduled
 * `journal.reconcile` (not failed) is skipped — so a restart, or a second instance after the first
 * finished, does not run it again, while a failed run is tried again at the next start. Each report is
 * written to SMART_HOME_RECONCILE_REPORT_DIR as `<partner code>-<day>.json`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Db, Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { reportText } from './report.ts';
import type { Reconciler } from './service.ts';
import { DAY_MS } from './store.ts';

export const RECONCILE_SCHEDULE_LOCK = 727_012;

export interface ScheduleDeps {
  db: Db;
  reconciler: Reconciler;
  reportDir: string;
  logger: Pick<Logger, 'info' | 'warn' | 'error'>;
}

export interface ScheduledOutcome {
  partner: string;
  day: string;
  result: 'consistent' | 'differences' | 'failed' | 'skipped';
  report?: string;
}

/** Reconciles every scheduled partner for the UTC day starting at `dayStart` (ms). */
export async function runScheduledDay(
  deps: ScheduleDeps,
  dayStart: number,
): Promise<ScheduledOutcome[] | undefined> {
  const day = new Date(dayStart).toISOString().slice(0, 10);
  const round = async (_q: Queryable) => {
    const out: ScheduledOutcome[] = [];
    for (const partner of deps.reconciler.scheduledPartners()) {
      if (await deps.reconciler.alreadyScheduled(partner.id, day)) {
        out.push({ partner: partner.code, day, result: 'skipped' });
        continue;
      }
      try {
        const signed = await deps.reconciler.run({
          partner: partner.id,
          from: dayStart,
          to: dayStart + DAY_MS,
          actor: { type: 'system', id: 'reconcile-schedule' },
          journalDetails: { scheduled: true, scheduledDay: day },
        });
        await mkdir(deps.reportDir, { recursive: true });
        const file = path.join(deps.reportDir, `${partner.code}-${day}.json`);
        await writeFile(file, reportText(signed));
        const result = signed.report.differences.length === 0 ? 'consistent' : 'differences';
        deps.logger[result === 'consistent' ? 'info' : 'warn'](
          { partner: partner.code, day, summary: signed.report.summary, report: file },
          'scheduled journal reconciliation done',
        );
        out.push({ partner: partner.code, day, result, report: file });
      } catch (err) {
        deps.logger.error(
          { partner: partner.code, day, err: { name: (err as Error).name, message: (err as Error).message } },
          'scheduled journal reconciliation failed',
        );
        out.push({ partner: partner.code, day, result: 'failed' });
      }
    }
    return out;
  };
  if (deps.db.engine !== 'postgres') return round(deps.db);
  return deps.db.transaction(async (tx) => {
    const lock = await tx.one<{ ok: boolean }>(
      sql`select pg_try_advisory_xact_lock(${RECONCILE_SCHEDULE_LOCK}) as ok`,
    );
    if (!lock?.ok) return undefined; // another instance is running it
    return round(tx);
  });
}

export interface ReconcileSchedule {
  stop(): Promise<void>;
}

/**
 * Runs {@link runScheduledDay} for yesterday at once when today's time has passed (a late start),
 * then every day at midnight UTC + `delayMinutes`.
 */
export function startReconcileSchedule(
  deps: ScheduleDeps,
  opts: { delayMinutes: number; now?: () => number },
): ReconcileSchedule {
  const now = opts.now ?? Date.now;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();
  const delay = opts.delayMinutes * 60_000;
  const arm = () => {
    if (stopped) return;
    const t = now();
    const today = Math.floor(t / DAY_MS) * DAY_MS;
    const due = t >= today + delay ? today + DAY_MS + delay : today + delay;
    timer = setTimeout(fire, Math.min(due - t, 2 ** 31 - 1));
    timer.unref();
  };
  const fire = () => {
    running = (async () => {
      const t = now();
      const today = Math.floor(t / DAY_MS) * DAY_MS;
      if (t >= today + delay) {
        try {
          await runScheduledDay(deps, today - DAY_MS);
        } catch (err) {
          deps.logger.error({ err }, 'scheduled journal reconciliation round failed');
        }
      }
      arm();
    })();
  };
  // A start after today's time still reconciles yesterday (already-done partners are skipped).
  const t0 = now();
  if (t0 >= Math.floor(t0 / DAY_MS) * DAY_MS + delay) {
    timer = setTimeout(fire, 0);
    timer.unref();
  } else arm();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
