import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify';
import { AppError, type ProblemCode } from '../errors.ts';
import type { ApiTokenVerifier } from './access-token.ts';
import { ApiAuthError } from './errors.ts';
import type { Role } from './principal.ts';

export type ApiAuthOptions = {
  verifier: ApiTokenVerifier;
  /** `resident` for `/api/v1`, `operator` for `/admin/v1`. */
  requiredRole: Role;
};

const PROBLEM: Record<ApiAuthError['code'], ProblemCode> = {
  missing_token: 'invalid-token',
  invalid_token: 'invalid-token',
  invalid_dpop_proof: 'invalid-dpop-proof',
  use_dpop_nonce: 'use-dpop-nonce',
  insufficient_scope: 'insufficient-scope',
  wrong_role: 'wrong-role',
};

/** Which verifier and scheme authenticated a request, so `requireScope` can answer in kind. */
const authenticatedBy = new WeakMap<
  FastifyRequest,
  { verifier: ApiTokenVerifier; scheme: 'Bearer' | 'DPoP' }
>();

/**
 * A refusal as an RFC 9457 problem with its RFC 6750 / RFC 9449 challenge. The detail is our own
 * fixed message (never a claim or the token); `reason` goes to the log only.
 */
function toAppError(req: FastifyRequest, verifier: ApiTokenVerifier, err: ApiAuthError): AppError {
  req.log.info(
    { auth: { code: err.code, reason: err.reason, issuerKind: verifier.kind } },
    'API access refused',
  );
  const headers: Record<string, string> = {
    'www-authenticate': verifier.challenge(err),
    // RFC 6750 §5.3 and RFC 9449 §8: refusals carry nothing worth caching.
    'cache-control': 'no-store',
  };
  if (err.nonce) headers['dpop-nonce'] = err.nonce;
  return new AppError(PROBLEM[err.code], err.message, { headers });
}

/**
 * The access-token check for one API zone: an onRequest hook that authenticates every request in the
 * context it is applied to, requires `requiredRole`, and sets `req.principal`. Apply it to the
 * prefixed context itself, before the routes:
 *
 * ```ts
 * app.register(async (api) => {
 *   apiAuth({ verifier, requiredRole: 'resident' })(api);
 *   await api.register(residentRoutes);
 * }, { prefix: '/api/v1' });
 * ```
 *
 * It can also be passed to `register` (it opts out of encapsulation like fastify-plugin does).
 */
export function apiAuth(opts: ApiAuthOptions) {
  const { verifier, requiredRole } = opts;
  const hook: onRequestAsyncHookHandler = async (req) => {
    let scheme: 'Bearer' | 'DPoP' | undefined;
    try {
      const principal = await verifier.authenticate({
        method: req.method,
        url: req.raw.url ?? req.url,
        headers: req.headers,
      });
      scheme = /^dpop /i.test(req.headers.authorization ?? '') ? 'DPoP' : 'Bearer';
      if (principal.kind !== requiredRole) {
        const e = new ApiAuthError(
          'wrong_role',
          `this API is for the ${requiredRole} role`,
          `role:${principal.kind}`,
        );
        e.scheme = scheme;
        throw e;
      }
      req.principal = principal;
      authenticatedBy.set(req, { verifier, scheme });
    } catch (err) {
      if (err instanceof ApiAuthError) throw toAppError(req, verifier, err);
      throw err;
    }
  };
  const plugin = async (app: FastifyInstance) => {
    app.addHook('onRequest', hook);
  };
  // fastify-plugin's marker: registered, the hook still covers the registering context's routes.
  Object.assign(plugin, { [Symbol.for('skip-override')]: true });
  return plugin;
}

/**
 * A route's scope requirement (RFC 6750 §3.1 `insufficient_scope`, 403), for `onRequest` or
 * `preHandler` after {@link apiAuth}: `{ preHandler: requireScope('doors:open') }`.
 */
export function requireScope(...scopes: string[]) {
  if (scopes.length === 0) throw new TypeError('requireScope needs at least one scope');
  const handler: onRequestAsyncHookHandler = async (req) => {
    const principal = req.principal;
    const by = authenticatedBy.get(req);
    // Routed outside an apiAuth zone: a programming error, refused rather than let through.
    if (!principal || !by) throw new AppError('invalid-token');
    const missing = scopes.filter((s) => !principal.scopes.has(s));
    if (missing.length === 0) return;
    const e = new ApiAuthError(
      'insufficient_scope',
      'the access token lacks a scope this operation needs',
      `scope:${missing.join(' ')}`,
    );
    e.scheme = by.scheme;
    e.scope = scopes.join(' ');
    throw toAppError(req, by.verifier, e);
  };
  return handler;
}
