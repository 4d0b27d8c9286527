import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/** Starts `node <script> …args` and resolves with its first stdout line parsed as JSON. */
export function startJsonProcess<T>(script: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const child = spawn(process.execPath, [script, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const first = new Promise<T>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    let ready = false;
    rl.on('line', (line) => {
      if (ready) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        reject(new Error(`${script}: unexpected output: ${line}`));
        return;
      }
      // The service's own log lines (pino: numeric level, msg) go to stderr; the first other line is the answer.
      if (isLogLine(parsed)) {
        process.stderr.write(`${line}\n`);
        return;
      }
      ready = true;
      resolve(parsed as T);
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
  });
  return { child, ready: first };
}

function isLogLine(v: unknown): boolean {
  return (
    typeof v === 'object' && v !== null && typeof (v as { level?: unknown }).level === 'number' && 'msg' in v
  );
}

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Runs `node <script> …args` to completion and parses its last stdout line as JSON. */
export async function runJsonProcess<T>(script: string, args: string[]): Promise<T> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`${script} exited with ${code}`);
  return JSON.parse(out.trim().split('\n').at(-1)!) as T;
}
