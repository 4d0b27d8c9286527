import { type DestinationStream, type Logger, pino } from 'pino';

/**
 * Paths that may hold secrets or personal data. Redaction happens in the logger itself, so no call
 * site can forget it (non-negotiable: secrets and personal data never reach logs).
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  // RFC 9449 proofs: signed by the client's key and bound to its token; useless to logs.
  'req.headers.dpop',
  'req.headers.cookie',
  'req.headers.signature',
  'req.headers["signature-input"]',
  'req.headers["x-forwarded-for"]',
  'res.headers["set-cookie"]',
  '*.password',
  '*.secret',
  '*.token',
  '*.accessToken',
  '*.access_token',
  '*.refresh_token',
  '*.privateKey',
  '*.keyPem',
  '*.kek',
  '*.plate',
  '*.plates',
  '*.candidates',
  '*.phone',
  '*.fullName',
  // Contract §7: a resident's pseudonym at a partner (door commands and their outcomes).
  '*.subject',
  '*.command.subject',
  '*.full_name',
  '*.name',
  'body',
  '*.body',
];

export function createLogger(opts: {
  level: string;
  name?: string;
  destination?: DestinationStream;
}): Logger {
  const options = {
    name: opts.name ?? 'smart-home',
    level: opts.level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // Fastify's default request serializer logs the full URL; keep method, path and ids only.
      req(req: { method?: string; url?: string; id?: string; socket?: { remoteAddress?: string } }) {
        return { method: req.method, url: req.url?.split('?')[0], id: req.id };
      },
    },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

export type { Logger };
