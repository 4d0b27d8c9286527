/**
 * Runs the sequencer in the background of an instance: a batch every `intervalMs`, back to back while
 * a backlog remains. Every instance runs one; the advisory lock lets one integrate at a time.
 */

import type { Logger } from 'pino';
import type { Db } from '../../db/db.ts';
import { integrateBatch, type LogIdentity } from './sequencer.ts';

export interface SequencerRunner {
  /** Stops after the batch in progress (if any) has committed. */
  stop(): Promise<void>;
}

export function startSequencer(
  db: Db,
  log: LogIdentity,
  opts: { intervalMs: number; batchMax: number; logger: Logger },
): SequencerRunner {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let failing = false;
  const tick = () => {
    running = (async () => {
      // A fixed cadence: the next batch starts intervalMs after this one started, not after it ended,
      // so a batch's own time does not add to how long a row waits for its checkpoint.
      const started = performance.now();
      let delay = opts.intervalMs;
      try {
        const r = await integrateBatch(db, log, opts.batchMax);
        if (failing) opts.logger.info('journal sequencer recovered');
        failing = false;
        if (r.locked && r.integrated === opts.batchMax) delay = 0; // a backlog: go on at once
      } catch (err) {
        if (!failing) opts.logger.error({ err }, 'journal sequencer batch failed; retrying');
        failing = true;
      }
      if (!stopped) {
        timer = setTimeout(tick, Math.max(0, delay - (performance.now() - started)));
        timer.unref();
      }
    })();
  };
  timer = setTimeout(tick, 0);
  timer.unref();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
