import { createServer } from 'node:net';

/**
 * A TCP port free on loopback right now (the OS picks it): for a server whose own URL must be known
 * before it starts — the issuer of the sign-in pages, a benchmark's child process. Another process may
 * take it in between; callers retry on EADDRINUSE where that matters.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
