/**
 * Where an export goes. A file is written under a temporary name beside it, flushed to disk and renamed
 * into place only once complete: a failed or interrupted export leaves nothing half-written (rename is
 * atomic within a file system, POSIX rename(2)). Standard output streams as it goes.
 */
import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';

export interface Sink {
  write(chunk: string): Promise<void>;
  /** Makes the output final (the file appears under its name). */
  commit(): Promise<void>;
  /** Discards what was written (the temporary file is removed). */
  abort(): Promise<void>;
}

/** Bytes gathered before each write to the file. */
const FLUSH_BYTES = 1 << 20;

export class OutputExistsError extends Error {
  readonly code = 'ERR_OUTPUT_EXISTS';
}

export async function fileSink(file: string, opts: { overwrite?: boolean } = {}): Promise<Sink> {
  if (!opts.overwrite) {
    const exists = await stat(file).then(
      () => true,
      () => false,
    );
    if (exists) throw new OutputExistsError(`${file} exists (--force replaces it)`);
  }
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fh: FileHandle = await open(tmp, 'wx', 0o600);
  let parts: string[] = [];
  let pending = 0;
  let closed = false;
  const flush = async () => {
    if (pending === 0) return;
    const text = parts.join('');
    parts = [];
    pending = 0;
    await fh.write(text);
  };
  return {
    async write(chunk) {
      parts.push(chunk);
      pending += chunk.length;
      if (pending >= FLUSH_BYTES) await flush();
    },
    async commit() {
      await flush();
      await fh.sync();
      await fh.close();
      closed = true;
      await rename(tmp, file);
    },
    async abort() {
      if (!closed) await fh.close().catch(() => {});
      closed = true;
      await unlink(tmp).catch(() => {});
    },
  };
}

export function streamSink(out: NodeJS.WritableStream): Sink {
  const write = (chunk: string) =>
    new Promise<void>((resolve, reject) => {
      const ok = out.write(chunk, (err) => (err ? reject(err) : undefined));
      if (ok) resolve();
      else out.once('drain', resolve);
    });
  return {
    write,
    commit: async () => {},
    abort: async () => {},
  };
}
