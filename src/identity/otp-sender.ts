import { EventEmitter } from 'node:events';
import { Agent, request } from 'undici';

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

/** The SMS text of a code. */
export function otpText(code: string, locale: 'ru' | 'en'): string {
  return locale === 'ru'
    ? `Код для входа в SmartHome: ${code}. Никому его не сообщайте.`
    : `SmartHome sign-in code: ${code}. Do not share it.`;
}

/**
 * An SMS gateway reached by HTTPS webhook: `POST {"to","text","locale"}` as JSON, optionally with a
 * bearer token, within `timeoutMs`; anything but 2xx is a failed delivery. Errors never carry the
 * number or the code.
 */
export function createWebhookOtpSender(opts: {
  url: string;
  token?: string | undefined;
  ca?: string | undefined;
  timeoutMs: number;
}): OtpSender & { close(): Promise<void> } {
  const url = new URL(opts.url);
  if (url.protocol !== 'https:') throw new TypeError('the SMS gateway URL must be https');
  const dispatcher = new Agent({
    connect: { timeout: opts.timeoutMs, ...(opts.ca ? { ca: opts.ca } : {}) },
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
  });
  return {
    async send({ phone, code, locale }) {
      let res: Awaited<ReturnType<typeof request>>;
      try {
        res = await request(url, {
          method: 'POST',
          dispatcher,
          signal: AbortSignal.timeout(opts.timeoutMs),
          headers: {
            'content-type': 'application/json',
            ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
          },
          body: JSON.stringify({ to: phone, text: otpText(code, locale), locale }),
        });
      } catch (err) {
        throw new Error(`SMS gateway unreachable (${(err as Error).name})`);
      }
      await res.body.dump();
      if (res.statusCode < 200 || res.statusCode > 299)
        throw new Error(`SMS gateway answered ${res.statusCode}`);
    },
    close: () => dispatcher.close(),
  };
}

/**
 * Sends in the background: `send` returns at once, so a sign-in page takes the same time whether a
 * code went out (a resident's number) or not (anyone else's). Failures go to `onError`.
 */
export function inBackground(
  sender: OtpSender,
  onError: (err: unknown) => void,
): OtpSender & { drain(): Promise<void> } {
  const pending = new Set<Promise<void>>();
  return {
    async send(message) {
      const p = sender
        .send(message)
        .catch(onError)
        .finally(() => pending.delete(p));
      pending.add(p);
    },
    async drain() {
      await Promise.allSettled([...pending]);
    },
  };
}
