/**
 * Failures of the outbound partner channel. Codes are stable; messages never carry a token, a
 * subject, a resident id or a partner's answer body, so they are safe to log.
 */
export type OutboundErrorCode =
  /** The partner has no outbound registration (base URL, pinned CA, client id). */
  | 'ERR_OUTBOUND_NOT_CONFIGURED'
  /** The door is not a door device of that partner. */
  | 'ERR_OUTBOUND_UNKNOWN_DOOR'
  /** The partner's server certificate does not chain to the pinned CA, or names another host. */
  | 'ERR_OUTBOUND_TLS'
  /** No connection, or it broke before an answer: the command may be sent again (same commandId). */
  | 'ERR_OUTBOUND_CONNECT'
  /** No answer within the call's time (the total timeout or the command's expiresAt). */
  | 'ERR_OUTBOUND_TIMEOUT'
  /** The token endpoint refused us or answered something that is not a usable token. */
  | 'ERR_OUTBOUND_TOKEN'
  /** The answer is unsigned, badly signed, or its Content-Digest does not match. */
  | 'ERR_OUTBOUND_SIGNATURE'
  /** The answer is signed but not what the contract allows (status, schema, commandId). */
  | 'ERR_OUTBOUND_RESPONSE'
  /** The partner's circuit breaker is open: it failed repeatedly; nothing was sent (fail fast). */
  | 'ERR_OUTBOUND_CIRCUIT_OPEN'
  /** The partner's bulkhead is full (calls in flight and queued at their bounds); nothing was sent. */
  | 'ERR_OUTBOUND_BULKHEAD_FULL'
  /**
   * The partner answered 429/503 with a Retry-After that has not passed and ends after this call's
   * deadline (RFC 9110 §10.2.3); nothing was sent. `retryAt` says when it may be called again.
   */
  | 'ERR_OUTBOUND_THROTTLED';

export class OutboundError extends Error {
  override readonly name = 'OutboundError';
  readonly code: OutboundErrorCode;
  /** For `ERR_OUTBOUND_THROTTLED`: Date.now ms from which the partner may be called again. */
  readonly retryAt: number | undefined;
  constructor(code: OutboundErrorCode, message: string, opts?: { cause?: unknown; retryAt?: number }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.retryAt = opts?.retryAt;
  }
}

/** Node's and OpenSSL's codes for a peer certificate we must not trust (never retried). */
const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_PURPOSE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function codesOf(err: unknown): string[] {
  const out: string[] = [];
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') out.push(code);
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

/**
 * Classifies an error thrown by undici for one call. `aborted` says our own deadline fired. A TLS
 * verification failure is final; anything else before an answer is a connection error, which is safe
 * to retry because the partner treats a repeated commandId as the same command (contract §7).
 */
export function classifyTransportError(err: unknown, aborted: boolean): OutboundError {
  if (err instanceof OutboundError) return err;
  const codes = codesOf(err);
  if (codes.some((c) => TLS_CODES.has(c))) {
    return new OutboundError('ERR_OUTBOUND_TLS', 'the partner server certificate is not trusted', {
      cause: err,
    });
  }
  if (aborted || codes.includes('UND_ERR_HEADERS_TIMEOUT') || codes.includes('UND_ERR_BODY_TIMEOUT')) {
    return new OutboundError('ERR_OUTBOUND_TIMEOUT', 'no answer in time', { cause: err });
  }
  return new OutboundError('ERR_OUTBOUND_CONNECT', 'connection to the partner failed', { cause: err });
}
