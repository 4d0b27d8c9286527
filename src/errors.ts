/**
 * The error catalogue: one stable code per failure, its HTTP status and a fixed title. Bodies are RFC
 * 9457 problem details with `type: urn:smart-home:problem:<code>` (contract §4). Details never name a
 * resident, a plate or another partner; 5xx bodies expose nothing, except `partner-unavailable`'s account
 * of a partner's failure (operators only).
 */
export const PROBLEMS = {
  'invalid-request': { status: 400, title: 'The request is not valid' },
  'invalid-plate': { status: 400, title: 'The value is not a licence plate' },
  'invalid-token': { status: 401, title: 'The access token is missing or not valid' },
  'invalid-signature': { status: 401, title: 'The request signature is missing or not valid' },
  'invalid-dpop-proof': { status: 401, title: 'The DPoP proof is missing or not valid' },
  'use-dpop-nonce': { status: 401, title: 'The DPoP proof must carry the server nonce' },
  'insufficient-scope': { status: 403, title: 'The access token lacks the scope this operation needs' },
  'wrong-role': { status: 403, title: 'The caller’s role may not use this API' },
  'ip-not-allowed': { status: 403, title: 'The request comes from an address not allowed for this partner' },
  'not-found': { status: 404, title: 'Not found' },
  'method-not-allowed': { status: 405, title: 'Method not allowed' },
  'event-conflict': { status: 409, title: 'The event id was already used with different content' },
  'not-a-door': { status: 409, title: 'The access point is not a door' },
  'access-point-disabled': { status: 409, title: 'The access point is out of service' },
  'plate-already-registered': { status: 409, title: 'This licence plate is already registered' },
  'registry-conflict': { status: 409, title: 'The change conflicts with the registry' },
  'alert-resolved': { status: 409, title: 'The alert is already resolved' },
  'payload-too-large': { status: 413, title: 'The request body is too large' },
  'unsupported-media-type': { status: 415, title: 'The request body must be application/json' },
  'stale-event': { status: 422, title: 'The event time is outside the accepted window' },
  'rate-limited': { status: 429, title: 'Too many requests' },
  internal: { status: 500, title: 'Internal error' },
  // Operator-facing: a call smart-home made to a partner failed; the detail says how (it names the
  // partner's fault, never smart-home's internals), unlike every other 5xx.
  'partner-unavailable': { status: 502, title: 'The partner did not answer as required' },
  unavailable: { status: 503, title: 'Service unavailable' },
  // Issue 5, load shedding: the instance is lagging; sent with Retry-After before any work is done.
  overloaded: { status: 503, title: 'The service is overloaded; retry after the indicated time' },
} as const;

export type ProblemCode = keyof typeof PROBLEMS;

export class AppError extends Error {
  readonly code: ProblemCode;
  readonly status: number;
  readonly detail: string | undefined;
  readonly headers: Record<string, string> | undefined;
  constructor(
    code: ProblemCode,
    detail?: string,
    opts?: { headers?: Record<string, string>; cause?: unknown },
  ) {
    super(detail ?? PROBLEMS[code].title, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.status = PROBLEMS[code].status;
    this.detail = detail;
    this.headers = opts?.headers;
  }
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail?: string;
  instance?: string;
}

export function problemBody(
  code: ProblemCode,
  detail: string | undefined,
  requestId: string | undefined,
): ProblemBody {
  const p = PROBLEMS[code];
  return {
    type: `urn:smart-home:problem:${code}`,
    title: p.title,
    status: p.status,
    ...(detail && (p.status < 500 || code === 'partner-unavailable') ? { detail } : {}),
    ...(requestId ? { instance: requestId } : {}),
  };
}
