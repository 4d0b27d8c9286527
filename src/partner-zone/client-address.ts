import type { IncomingMessage } from 'node:http';
import type { CidrSet } from '../util/cidr.ts';

/**
 * The request's client address. `X-Forwarded-For` is honoured only when the TCP peer is a configured
 * trusted proxy; then the right-most hop that is not itself a trusted proxy is the client (hops to the
 * left of it could be forged by the client).
 */
export function clientAddress(req: IncomingMessage, trustedProxies: CidrSet): string {
  const peer = req.socket.remoteAddress ?? '';
  if (!trustedProxies.has(peer)) return peer;
  const header = req.headers['x-forwarded-for'];
  if (!header) return peer;
  const hops = (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (!trustedProxies.has(hop)) return hop;
  }
  return hops[0] ?? peer;
}
