import { EventEmitter } from 'node:events';

/**
 * Delivers a resident's one-time sign-in code. An SMS gateway implements this; the console sender is
 * for development. `phone` is E.164; implementations must never log the phone or the code.
 */
export interface OtpSender {
  send(message: { phone: string; code: string; locale: 'ru' | 'en' }): Promise<void>;
}

/**
 * Test hook of the console sender: every code it prints is also emitted here as `code` with
 * `{ phone, code }` (in-process only; nothing leaves the process through it).
 */
export const consoleOtpOutbox = new EventEmitter<{ code: [{ phone: string; code: string }] }>();

/**
 * Development sender: prints the code to stdout (never to the log, which is shipped and kept), for the
 * developer at the console.
 */
export function createConsoleOtpSender(
  write: (line: string) => void = (line) => process.stdout.write(line),
): OtpSender {
  return {
    async send({ phone, code }) {
      const masked = `${phone.slice(0, 2)}…${phone.slice(-2)}`;
      write(`[smart-home sign-in] one-time code for ${masked}: ${code}\n`);
      consoleOtpOutbox.emit('code', { phone, code });
    },
  };
}
