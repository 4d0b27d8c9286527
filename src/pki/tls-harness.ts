// Test support only (imported by *.test.ts): a real mutual-TLS listener on 127.0.0.1 and a client that
// reports how its handshake went, so certificates are judged by OpenSSL rather than by our own reading.
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { certThumbprintS256 } from './certificates.ts';

export type MtlsServer = {
  port: number;
  /** x5t#S256 of each client certificate the server accepted and served, in order. */
  served: string[];
  /** Handshakes the server refused (`tlsClientError`), in order. */
  refused: Error[];
  close(): Promise<void>;
};

/** Requires a client certificate chaining to `clientCa`, exactly as the partner listener does. */
export async function startMtlsServer(opts: {
  cert: string;
  key: string;
  clientCa: string;
}): Promise<MtlsServer> {
  const served: string[] = [];
  const refused: Error[] = [];
  const server = tls.createServer(
    { cert: opts.cert, key: opts.key, ca: opts.clientCa, requestCert: true, rejectUnauthorized: true },
    (socket) => {
      const peer = socket.getPeerX509Certificate();
      if (peer) served.push(certThumbprintS256(peer.raw));
      socket.end('ok');
    },
  );
  server.on('tlsClientError', (err) => refused.push(err));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    served,
    refused,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export type HandshakeOutcome = { ok: true } | { ok: false; error: string };

/**
 * Connects, verifying the server against `serverCa` (and `servername`, if given, else the IP address
 * against the certificate's iPAddress SAN), optionally presenting a client certificate. `ok` only if
 * the server answered, which it does only after accepting the client certificate. In TLS 1.3 the
 * client's handshake completes before the server has judged its certificate, so a refusal shows up
 * afterwards as an alert or a closed connection.
 */
export function tryHandshake(
  port: number,
  opts: { serverCa: string; servername?: string; client?: { certPem: string; keyPem: string } },
): Promise<HandshakeOutcome> {
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca: opts.serverCa,
      ...(opts.servername ? { servername: opts.servername } : {}),
      ...(opts.client ? { cert: opts.client.certPem, key: opts.client.keyPem } : {}),
    });
    let data = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      data += d;
    });
    socket.on('end', () => resolve(data === 'ok' ? { ok: true } : { ok: false, error: 'closed' }));
    socket.on('error', (err) => resolve({ ok: false, error: err.message }));
  });
}
