import { format } from 'node:util';
import { type DestinationStream, type Logger, pino, stdSerializers } from 'pino';

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

const CENSOR = '[redacted]';

/**
 * Keys whose value is a secret or personal data wherever they appear, at any depth (the paths above
 * reach one level only): credentials and their headers, cookies and cookie keys, client secrets, the
 * DPoP nonce secret, passwords, TOTP secrets, tokens of every kind, phone numbers, names, plates.
 */
const SECRET_KEY =
  /^(?:authorization|proxy-authorization|cookie|set-cookie|dpop|signature|signature-input|x-forwarded-for|pass(?:word|phrase)|.*_password|.*Password|secret|secrets|.*_secret|.*Secret|cookie_?keys|keys|kek|private_?key|private_?jwk|key_?pem|.*_enc|token|tokens|.*_token|.*Token|otp|totp|code_verifier|codeVerifier|phone|phones|phone_?number|full_?name|plate|plates|candidates)$/i;

/** `code`, `user_code`, `authorizationCode`…: an error code stays, a one-time or authorization code goes. */
const CODE_KEY = /^(?:code|.*_code|.*Code)$/;
const CODE_VALUE = /^(?:\d{4,12}|[A-Za-z0-9_-]{20,})$/;

/** Credentials inside free text: URL query or form parameters, JWTs, Authorization values, phones. */
const TEXT_RULES: ReadonlyArray<[RegExp, string]> = [
  [
    /\b(code|access_token|refresh_token|id_token|id_token_hint|client_secret|client_assertion|assertion|password|token|otp|totp|code_verifier|request_uri|login_hint|phone)=[^&#\s"'<>]+/gi,
    `$1=${CENSOR}`,
  ],
  [/\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){0,3}/g, '[redacted-jwt]'],
  [/\b(Bearer|DPoP|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/g, `$1 ${CENSOR}`],
  // Passwords in URLs (DATABASE_URL, REDIS_URL): scheme://user:password@host.
  [/\b([a-z][a-z0-9+.-]*:\/\/[^:/?#\s@]*:)[^@/?#\s]+@/gi, `$1${CENSOR}@`],
  // E.164 (spaced or not), and the Russian mobile trunk form 8 9XX XXX-XX-XX.
  [/\+\d[\d\s().-]{8,18}\d/g, '[redacted-phone]'],
  [/(?<![\d.])8[\s(-]*9\d{2}[\s)-]*\d{3}[\s-]*\d{2}[\s-]*\d{2}(?!\d)/g, '[redacted-phone]'],
];

/** Free text with credentials and phone numbers replaced. */
export function scrubText(text: string): string {
  // Nothing below matches fewer than 8 characters ("code=x" aside, which needs the "=").
  if (text.length < 8 && !text.includes('=')) return text;
  let out = text;
  for (const [pattern, replacement] of TEXT_RULES) out = out.replace(pattern, replacement);
  return out;
}

function isPlain(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A serialized error (type, message, stack, own fields) as a plain, scrubbed object. */
function scrubError(err: Error, depth: number, seen: WeakSet<object>): Record<string, unknown> {
  const serialized = stdSerializers.err(err) as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(serialized)) out[key] = serialized[key];
  return scrubValue(out, depth, seen) as Record<string, unknown>;
}

function scrubValue(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (!value || typeof value !== 'object') return value;
  if (depth > 8 || seen.has(value)) return value;
  if (value instanceof Error) {
    seen.add(value);
    return scrubError(value, depth + 1, seen);
  }
  if (Array.isArray(value)) {
    seen.add(value);
    return value.map((v) => scrubValue(v, depth + 1, seen));
  }
  // Requests, responses, buffers and other instances are left to their serializers.
  if (!isPlain(value)) return value;
  seen.add(value);
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) out[key] = scrubEntry(key, v, depth + 1, seen);
  return out;
}

/** Key classifications, remembered: logs repeat a small set of keys, and every line checks them. */
const secretKeys = new Map<string, boolean>();
function isSecretKey(key: string): boolean {
  let secret = secretKeys.get(key);
  if (secret === undefined) {
    secret = SECRET_KEY.test(key);
    if (secretKeys.size < 10_000) secretKeys.set(key, secret);
  }
  return secret;
}

function scrubEntry(key: string, value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (isSecretKey(key) && value !== undefined && value !== null) return CENSOR;
  if (CODE_KEY.test(key) && typeof value === 'string' && CODE_VALUE.test(value)) return CENSOR;
  return scrubValue(value, depth, seen);
}

/** The logged object with secrets and personal data removed at any depth (a copy; exported for tests). */
export function scrubLogObject(obj: Record<string, unknown>): Record<string, unknown> {
  const seen = new WeakSet<object>();
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(obj)) {
    // A top-level `err` goes through the err serializer, which scrubs it with its type kept.
    out[key] = key === 'err' && value instanceof Error ? value : scrubEntry(key, value, 0, seen);
  }
  return out;
}

export function createLogger(opts: {
  level: string;
  name?: string;
  destination?: DestinationStream;
}): Logger {
  const options = {
    name: opts.name ?? 'smart-home',
    level: opts.level,
    redact: { paths: REDACT_PATHS, censor: CENSOR },
    // Defence in depth behind the paths: secret-named keys at any depth, and credentials or phone
    // numbers inside any string (oidc-provider error details, error messages, URLs with `code=`).
    formatters: { log: scrubLogObject },
    hooks: {
      // The message after interpolation (`'… %s'`, args) is what is scrubbed, so an argument cannot
      // slip a credential past the patterns by arriving apart from its `code=`.
      logMethod(this: Logger, args: unknown[], method: (...a: unknown[]) => void) {
        const at = typeof args[0] === 'string' ? 0 : 1;
        const msg = args[at];
        if (typeof msg !== 'string') return method.apply(this, args);
        const text = args.length > at + 1 ? format(msg, ...args.slice(at + 1)) : msg;
        return method.apply(this, [...args.slice(0, at), scrubText(text)]);
      },
    },
    serializers: {
      // Fastify's default request serializer logs the full URL; keep method, path and ids only.
      req(req: { method?: string; url?: string; id?: string; socket?: { remoteAddress?: string } }) {
        const url = req.url?.split('?')[0];
        return { method: req.method, url: url === undefined ? url : scrubText(url), id: req.id };
      },
      err(err: unknown) {
        return err instanceof Error ? scrubError(err, 0, new WeakSet()) : err;
      },
    },
  };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

export type { Logger };
