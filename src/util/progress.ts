/**
 * A progress display for long CLI work, on stderr: one line rewritten in place on a terminal, a line
 * every few seconds otherwise (logs, CI). Never on stdout, which carries the result.
 */
export interface Progress {
  (done: number, total: number): void;
  /** Ends the line. */
  done(): void;
}

export function progressLine(
  label: string,
  out: NodeJS.WriteStream = process.stderr,
  everyMs = 2000,
): Progress {
  const tty = Boolean(out.isTTY);
  const started = performance.now();
  let last = 0;
  let shown = false;
  const fmt = (n: number) => n.toLocaleString('en');
  const fn = ((done: number, total: number) => {
    const now = performance.now();
    if (now - last < (tty ? 100 : everyMs) && done < total) return;
    last = now;
    const pct = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100;
    const width = 30;
    const filled = Math.round((pct / 100) * width);
    const rate = Math.round(done / Math.max((now - started) / 1000, 0.001));
    const text = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${fmt(done)}/${fmt(total)} ${pct}% ${fmt(rate)}/s`;
    if (tty) out.write(`\r${text}\x1b[K`);
    else out.write(`${text}\n`);
    shown = true;
  }) as Progress;
  fn.done = () => {
    if (tty && shown) out.write('\n');
  };
  return fn;
}
