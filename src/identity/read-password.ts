import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

/**
 * The new operator's password: typed twice at a terminal without echo, or the first line of stdin when
 * it is a pipe (`printf '%s\n' "$PW" | smart-home operator add ops`), so it never appears in argv or the
 * shell history.
 */
export async function readPassword(
  input: Readable & { isTTY?: boolean } = process.stdin,
  output: Writable = process.stderr,
): Promise<string> {
  if (!input.isTTY) {
    let text = '';
    for await (const chunk of input) {
      text += String(chunk);
      if (text.includes('\n') || text.length > 4096) break;
    }
    return text.split(/\r?\n/)[0] ?? '';
  }
  const ask = (prompt: string) =>
    new Promise<string>((resolve) => {
      const rl = createInterface({ input, output, terminal: true });
      // Echo nothing but the prompt while the password is typed.
      (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => {
        if (s.startsWith(prompt)) output.write(prompt);
      };
      rl.question(prompt, (answer) => {
        rl.close();
        output.write('\n');
        resolve(answer);
      });
    });
  const first = await ask('password: ');
  const second = await ask('repeat password: ');
  if (first !== second) throw Object.assign(new Error('the passwords differ'), { code: 'ERR_OPERATOR' });
  return first;
}
