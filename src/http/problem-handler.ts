import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { OPTIONS } from '../config/options.ts';
import { isDatabaseUnavailable } from '../db/unavailable.ts';
import { AppError, type ProblemCode, problemBody } from '../errors.ts';

function send(
  reply: FastifyReply,
  req: FastifyRequest,
  code: ProblemCode,
  detail?: string,
  headers?: Record<string, string>,
) {
  const body = problemBody(code, detail, req.id);
  if (headers) reply.headers(headers);
  return reply.code(body.status).type('application/problem+json').send(body);
}

/** Describes a schema failure by path only: the offending value may be personal data. */
function validationDetail(err: FastifyError): string {
  const v = err.validation?.[0];
  if (!v) return 'the request does not match its schema';
  const where = `${err.validationContext ?? 'body'}${v.instancePath || ''}`;
  if (v.keyword === 'additionalProperties') {
    const extra = (v.params as { additionalProperty?: string }).additionalProperty;
    return `${where}: unknown field "${String(extra).slice(0, 64)}"`;
  }
  return `${where} ${v.message ?? 'is not valid'}`;
}

/** The option's documented default (test servers built without a configuration use it). */
function defaultRetryAfter(): number {
  const spec = OPTIONS.find((o) => o.env === 'SMART_HOME_DB_UNAVAILABLE_RETRY_AFTER_S');
  return Number(spec?.default);
}

export interface ProblemHandlerOptions {
  /** Retry-After (s) of the 503 answered while the database cannot be reached (SMART_HOME_DB_UNAVAILABLE_RETRY_AFTER_S). */
  databaseRetryAfterS: number;
}

/**
 * Every error leaves as an RFC 9457 problem body (contract §4); 5xx bodies expose nothing. A database that
 * cannot be reached is `503 unavailable` with Retry-After, so callers retry rather than give up.
 */
export function installProblemHandlers(
  app: FastifyInstance,
  opts: ProblemHandlerOptions = { databaseRetryAfterS: defaultRetryAfter() },
): void {
  app.setErrorHandler((err: FastifyError | AppError, req, reply) => {
    if (err instanceof AppError) return send(reply, req, err.code, err.detail, err.headers);
    if ('validation' in err && err.validation)
      return send(reply, req, 'invalid-request', validationDetail(err));
    switch (err.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return send(reply, req, 'payload-too-large');
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return send(reply, req, 'unsupported-media-type');
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
        return send(reply, req, 'invalid-request', 'the body is not valid JSON');
    }
    if (err.statusCode && err.statusCode < 500)
      return send(reply, req, 'invalid-request', 'the request is malformed');
    if (isDatabaseUnavailable(err)) {
      // No stack: the cause is known and outside us; one line per refused request says when it ends.
      req.log.warn({ code: (err as { code?: unknown }).code }, 'database unavailable');
      return send(reply, req, 'unavailable', undefined, { 'retry-after': String(opts.databaseRetryAfterS) });
    }
    req.log.error({ err }, 'unhandled error');
    return send(reply, req, 'internal');
  });
  app.setNotFoundHandler((req, reply) => send(reply, req, 'not-found'));
}

/** Ajv as a security product wants it: unknown fields are errors, never silently dropped or coerced. */
export const STRICT_AJV = {
  customOptions: {
    removeAdditional: false as const,
    coerceTypes: false as const,
    useDefaults: false,
    allErrors: false,
  },
};
