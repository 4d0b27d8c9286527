/**
 * Refusals of the public API's access-token check, with the OAuth error code each one maps to
 * (RFC 6750 §3.1, RFC 9449 §7.1 and §12.2). Neither the message nor `reason` ever holds the token,
 * the proof or a claim value: `reason` names the check that failed, for logs.
 */
export type ApiAuthErrorCode =
  /** No credentials at all: RFC 6750 §3.1 says the challenge then carries no error code. */
  | 'missing_token'
  | 'invalid_token'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'insufficient_scope'
  /** A valid token whose role may not use this API (a resident on `/admin/v1`). */
  | 'wrong_role';

export class ApiAuthError extends Error {
  override readonly name = 'ApiAuthError';
  readonly code: ApiAuthErrorCode;
  readonly reason: string | undefined;
  /** The scheme the client used (`DPoP` answers with a DPoP challenge first). */
  scheme: 'Bearer' | 'DPoP' | undefined;
  /** RFC 9449 §8: the nonce to use next, sent as `DPoP-Nonce`. */
  nonce: string | undefined;
  /** For `insufficient_scope`: the scope the operation needs (RFC 6750 §3). */
  scope: string | undefined;
  constructor(code: ApiAuthErrorCode, message: string, reason?: string) {
    super(message);
    this.code = code;
    this.reason = reason;
    this.scheme = undefined;
    this.nonce = undefined;
    this.scope = undefined;
  }
}

export const invalidToken = (reason: string, message = 'the access token is not valid') =>
  new ApiAuthError('invalid_token', message, reason);

export const invalidProof = (reason: string, message = 'the DPoP proof is not valid') =>
  new ApiAuthError('invalid_dpop_proof', message, reason);

/** auth-param values are quoted-strings (RFC 9110 §11.2): our messages never hold `"` or `\`, but be sure. */
function quoted(value: string): string {
  return `"${value.replace(/["\\]/g, '')}"`;
}

export type ChallengeOptions = {
  realm: string;
  /** RFC 9449 §7.1 `algs`: the proof algorithms the resource server accepts. */
  dpopAlgorithms: readonly string[];
  /** Whether Bearer tokens are accepted at all (a DPoP-only resource server offers only DPoP). */
  bearer: boolean;
};

/**
 * The `WWW-Authenticate` value for a 401 or 403: one challenge per scheme the resource server
 * accepts (RFC 9449 §7.1 shows both side by side), the error on the scheme the client used (both
 * when it sent none).
 */
export function challenge(err: ApiAuthError, opts: ChallengeOptions): string {
  const params = (scheme: 'Bearer' | 'DPoP') => {
    const p = [`realm=${quoted(opts.realm)}`];
    // The error goes on the scheme the client used, or on DPoP when that is the only one offered.
    const errorHere =
      err.code !== 'missing_token' &&
      (err.scheme === undefined || err.scheme === scheme || (scheme === 'DPoP' && !opts.bearer));
    if (errorHere) {
      let code: string = err.code;
      if (code === 'wrong_role') code = 'insufficient_scope';
      // DPoP errors only exist for the DPoP scheme; a Bearer client is told its token is not valid.
      if (scheme === 'Bearer' && (code === 'invalid_dpop_proof' || code === 'use_dpop_nonce'))
        code = 'invalid_token';
      p.push(`error=${quoted(code)}`, `error_description=${quoted(err.message)}`);
      if (err.scope && code === 'insufficient_scope') p.push(`scope=${quoted(err.scope)}`);
    }
    if (scheme === 'DPoP') p.push(`algs=${quoted(opts.dpopAlgorithms.join(' '))}`);
    return `${scheme} ${p.join(', ')}`;
  };
  const out: string[] = [];
  if (opts.bearer) out.push(params('Bearer'));
  out.push(params('DPoP'));
  return out.join(', ');
}
