import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';

const FILE = new URL('../docs/benchmarks.md', import.meta.url);

export function machine(): string {
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  return `${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${os.platform()} ${os.release()}`;
}

/** Replaces the section between `<!-- name:start -->` and `<!-- name:end -->` of docs/benchmarks.md. */
export async function writeSection(name: string, body: string): Promise<void> {
  let doc = await readFile(FILE, 'utf8').catch(() => '# Benchmarks\n');
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${start}\n${body.trim()}\n${end}`;
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  doc =
    i >= 0 && j > i ? doc.slice(0, i) + block + doc.slice(j + end.length) : `${doc.trimEnd()}\n\n${block}\n`;
  await writeFile(FILE, doc);
}
