/**
 * HTTP metrics of both listeners and the `/metrics` exposition (Prometheus text format through
 * prom-client, src/metrics/registry.ts).
 *
 * `/metrics` is served on the PUBLIC listener only, and only when SMART_HOME_METRICS_TOKEN is set: a
 * scraper presents it as a bearer token (compared in constant time); without the option the route does
 * not exist (404, like any unknown path). Partners never reach it (the partner listener has no such
 * route), residents and operators cannot use their access tokens for it. It is never shed and costs no
 * database work.
 *
 * Labels: the listener, the method, the route PATTERN (`/api/v1/doors/:id/open`, never the URL with its
 * ids) or `unmatched`, and the status code; nothing a request carries.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import client from 'prom-client';
import { AppError } from '../errors.ts';
import { counter, histogram, registry } from './registry.ts';

const requests = counter(
  'smart_home_http_requests_total',
  'HTTP requests answered, per listener, method, route pattern and status.',
  ['listener', 'method', 'route', 'status'],
);
const duration = histogram(
  'smart_home_http_request_duration_seconds',
  'Time from the request to the answer sent, per listener, method and route pattern.',
  ['listener', 'method', 'route'],
);

let defaults = false;
/** Node process metrics (CPU, memory, event loop lag, GC, handles) on the service registry, once. */
export function collectProcessMetrics(): void {
  if (defaults || registry.getSingleMetric('process_cpu_user_seconds_total')) return;
  defaults = true;
  client.collectDefaultMetrics({ register: registry });
}

/** Counts and times every answer of `app` (call before its routes are registered). */
export function httpMetrics(app: FastifyInstance, listener: 'public' | 'partner'): void {
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const method = req.method;
    requests.inc({ listener, method, route, status: String(reply.statusCode) });
    duration.observe({ listener, method, route }, reply.elapsedTime / 1000);
  });
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** `GET /metrics` with `Authorization: Bearer <token>`; not registered at all without a token. */
export function metricsRoute(app: FastifyInstance, token: string | undefined): void {
  if (!token) return;
  const expected = digest(token);
  app.get('/metrics', { schema: { hide: true } }, async (req, reply) => {
    const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    // Both sides hashed: equal lengths for timingSafeEqual, and nothing learned from the timing.
    if (!m || !timingSafeEqual(digest(m[1]!), expected)) {
      throw new AppError('invalid-token', 'the metrics token is required', {
        headers: { 'www-authenticate': 'Bearer realm="metrics"' },
      });
    }
    const text = await registry.metrics();
    return reply.header('content-type', registry.contentType).header('cache-control', 'no-store').send(text);
  });
}
