/**
 * Whether an error means the database cannot be reached right now (a restart, a failover, a network
 * cut) rather than that the request or our code is wrong. Such a failure is answered `503` with
 * `Retry-After` (RFC 9110 §15.6.4), not `500`: nothing was done, and a partner's retry will succeed once
 * PostgreSQL is back (issue 5: the service recovers by itself, the partner's retries make up the rest).
 */

/** Socket errors of the connection to PostgreSQL (node:net). */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

/**
 * SQLSTATEs of an unavailable server (PostgreSQL Appendix A): class 08 connection exception, 57P01
 * admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now, 53300 too_many_connections.
 */
function unavailableSqlState(code: string): boolean {
  return (
    code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300'
  );
}

/** node-postgres reports a connection lost mid-query without a code, by these messages only. */
const PG_CONNECTION_MESSAGES =
  /^(Connection terminated|Connection terminated unexpectedly|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable)/;

export function isDatabaseUnavailable(err: unknown, depth = 0): boolean {
  if (typeof err !== 'object' || err === null || depth > 3) return false;
  const { code, message, cause } = err as { code?: unknown; message?: unknown; cause?: unknown };
  if (
    typeof code === 'string' &&
    (SOCKET_CODES.has(code) || (/^[0-9A-Z]{5}$/.test(code) && unavailableSqlState(code)))
  )
    return true;
  if (typeof message === 'string' && PG_CONNECTION_MESSAGES.test(message)) return true;
  // An AggregateError (several addresses refused) or an error wrapping the cause.
  const inner = (err as { errors?: unknown }).errors;
  if (Array.isArray(inner) && inner.length > 0 && inner.every((e) => isDatabaseUnavailable(e, depth + 1)))
    return true;
  return cause !== undefined && isDatabaseUnavailable(cause, depth + 1);
}
