import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Static, Type as T, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type Provider from 'oidc-provider';
import { API_AUDIENCE, type Role } from '../api-auth/principal.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db } from '../db/db.ts';
import { appendJournal, type JournalEntry } from '../journal/journal.ts';
import { ACR, API_SCOPE, OAUTH_PREFIX, PEOPLE_SCOPES } from './authorization-server.ts';
import type { LockoutPolicy } from './lockout.ts';
import { verifyOperator } from './operators.ts';
import { type Locale, type MessageKey, pickLocale, renderPage } from './pages.ts';
import { normalizePhone, type ResidentOtp } from './resident-otp.ts';

const CSRF_COOKIE = 'sh_csrf';
const LANG_COOKIE = 'sh_lang';
const COOKIE_PATH = `${OAUTH_PREFIX}/interaction`;
/** The largest sign-in form body we read (the operator form is the biggest: ~400 bytes). */
const FORM_BODY_LIMIT = 4096;

const Base = {
  csrf: T.String({ minLength: 1, maxLength: 100 }),
  lang: T.Optional(T.String({ maxLength: 2 })),
};
const PhoneForm = T.Object(
  { ...Base, phone: T.String({ minLength: 1, maxLength: 32 }) },
  { additionalProperties: false },
);
const CodeForm = T.Object(
  { ...Base, code: T.String({ minLength: 1, maxLength: 12 }) },
  { additionalProperties: false },
);
const RestartForm = T.Object(Base, { additionalProperties: false });
const OperatorForm = T.Object(
  {
    ...Base,
    login: T.String({ minLength: 1, maxLength: 63 }),
    password: T.String({ minLength: 1, maxLength: 256 }),
    totp: T.String({ minLength: 1, maxLength: 6 }),
  },
  { additionalProperties: false },
);
const Params = T.Object(
  { uid: T.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) },
  { additionalProperties: false },
);

export type InteractionDeps = {
  provider: Provider;
  db: Db;
  cipher: FieldCipher;
  otp: ResidentOtp;
  operatorPolicy: LockoutPolicy;
  roleOf(clientId: string): Role | undefined;
  /** Keys the CSRF tokens (HMAC of interaction uid + cookie value). */
  csrfSecret: Buffer;
};

type Details = Awaited<ReturnType<Provider['interactionDetails']>>;
type Loaded = { details: Details; role: Role; locale: Locale; csrf: string; clientId: string };

function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

/** Derives the CSRF key from the first cookie key (HKDF, RFC 5869), so no further secret is needed. */
export function csrfSecretFrom(cookieKey: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(cookieKey), Buffer.alloc(0), 'smart-home/csrf/v1', 32));
}

/**
 * The sign-in pages the provider sends people to (`/oauth/interaction/<uid>`). Forms are
 * application/x-www-form-urlencoded, parsed only inside this plugin. Each POST carries a CSRF token:
 * the HMAC of the interaction uid and a random value in an HttpOnly, SameSite cookie, so a form posted
 * from elsewhere, or for another interaction, is refused.
 */
export function interactionRoutes(deps: InteractionDeps) {
  const { provider } = deps;
  const csrfToken = (uid: string, cookie: string) =>
    createHmac('sha256', deps.csrfSecret).update(`${uid}|${cookie}`).digest('base64url');

  const page = (
    reply: FastifyReply,
    status: number,
    opts: {
      locale: Locale;
      uid: string;
      csrf: string;
      form?: 'phone' | 'code' | 'operator';
      error?: MessageKey;
    },
  ) =>
    reply
      .code(status)
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('x-frame-options', 'DENY')
      .header(
        'content-security-policy',
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
      )
      .send(
        renderPage({
          locale: opts.locale,
          action: '',
          uid: opts.uid,
          csrf: opts.csrf,
          form: opts.form ? { kind: opts.form } : undefined,
          ...(opts.error ? { error: opts.error } : {}),
        }),
      );

  const journal = (req: FastifyRequest, e: Omit<JournalEntry, 'requestId'>) =>
    appendJournal(deps.db, { ...e, requestId: req.id });

  /** The interaction this request belongs to (its signed cookie must match the uid), or an error page. */
  async function load(
    req: FastifyRequest,
    reply: FastifyReply,
    langHint?: unknown,
  ): Promise<Loaded | undefined> {
    const cookies = parseCookies(req.headers.cookie);
    const query = (req.query ?? {}) as Record<string, unknown>;
    const locale = pickLocale(
      langHint ?? query['lang'],
      cookies.get(LANG_COOKIE),
      req.headers['accept-language'],
    );
    if (query['lang'] === 'ru' || query['lang'] === 'en') {
      reply.header(
        'set-cookie',
        `${LANG_COOKIE}=${locale}; Path=${COOKIE_PATH}; Secure; SameSite=Lax; Max-Age=31536000`,
      );
    }
    const params = req.params as unknown;
    if (!Value.Check(Params, params)) {
      page(reply, 400, { locale, uid: '', csrf: '', error: 'errRequest' });
      return undefined;
    }
    let details: Details;
    try {
      details = await provider.interactionDetails(req.raw, reply.raw);
    } catch {
      page(reply, 400, { locale, uid: params.uid, csrf: '', error: 'errSession' });
      return undefined;
    }
    const clientId = String(details.params['client_id'] ?? '');
    const role = deps.roleOf(clientId);
    if (details.uid !== params.uid || !role) {
      page(reply, 400, { locale, uid: params.uid, csrf: '', error: 'errSession' });
      return undefined;
    }
    let cookie = cookies.get(CSRF_COOKIE);
    if (!cookie || !/^[A-Za-z0-9_-]{43}$/.test(cookie)) {
      cookie = randomBytes(32).toString('base64url');
      reply.header(
        'set-cookie',
        `${CSRF_COOKIE}=${cookie}; Path=${COOKIE_PATH}; HttpOnly; Secure; SameSite=Lax`,
      );
    }
    return { details, role, locale, csrf: csrfToken(details.uid, cookie), clientId };
  }

  function csrfOk(req: FastifyRequest, uid: string, given: string): boolean {
    const cookie = parseCookies(req.headers.cookie).get(CSRF_COOKIE);
    if (!cookie) return false;
    const a = Buffer.from(csrfToken(uid, cookie));
    const b = Buffer.from(given);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** The sign-in page of this interaction, with a form and an error message. */
  const show = (
    reply: FastifyReply,
    l: Loaded,
    status: number,
    form?: 'phone' | 'code' | 'operator',
    error?: MessageKey,
  ) =>
    page(reply, status, {
      locale: l.locale,
      uid: l.details.uid,
      csrf: l.csrf,
      ...(form ? { form } : {}),
      ...(error ? { error } : {}),
    });

  /** A validated form of this interaction with a good CSRF token, or an error page. */
  async function form<S extends TSchema>(
    req: FastifyRequest,
    reply: FastifyReply,
    schema: S,
  ): Promise<{ l: Loaded; body: Static<S> } | undefined> {
    const body = req.body as Record<string, unknown> | undefined;
    const l = await load(req, reply, body?.['lang']);
    if (!l) return undefined;
    if (!body || !Value.Check(schema, body)) {
      show(reply, l, 400, defaultForm(l), 'errRequest');
      return undefined;
    }
    if (!csrfOk(req, l.details.uid, String(body['csrf']))) {
      show(reply, l, 403, undefined, 'errCsrf');
      return undefined;
    }
    return { l, body };
  }

  function defaultForm(l: Loaded): 'phone' | 'operator' {
    return l.role === 'resident' ? 'phone' : 'operator';
  }

  /**
   * Signs the person in and grants the client what it asked for (all clients are first-party: no
   * consent page), then sends the browser back to the provider.
   */
  async function complete(reply: FastifyReply, l: Loaded, accountId: string, acr: string) {
    const { details } = l;
    let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
    if (!grant || grant.accountId !== accountId || grant.clientId !== l.clientId) {
      grant = new provider.Grant({ accountId, clientId: l.clientId });
    }
    const requested = String(details.params['scope'] ?? '').split(' ');
    // `api` is both a scope the provider knows (so clients may ask for it) and the resource's scope.
    const oidcScopes = requested.filter((s) => [...PEOPLE_SCOPES, API_SCOPE].includes(s));
    if (oidcScopes.length > 0) grant.addOIDCScope(oidcScopes.join(' '));
    if (requested.includes(API_SCOPE)) grant.addResourceScope(API_AUDIENCE, API_SCOPE);
    const grantId = await grant.save();
    const result = {
      ...(details.prompt.name === 'login' ? { login: { accountId, acr } } : {}),
      consent: { grantId },
    };
    const url = await provider.interactionResult(reply.request.raw, reply.raw, result, {
      mergeWithLastSubmission: false,
    });
    return reply.code(303).header('cache-control', 'no-store').redirect(url, 303);
  }

  return async (app: FastifyInstance) => {
    app.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT },
      (_req, body, done) => {
        const out: Record<string, string> = {};
        for (const [k, v] of new URLSearchParams(body as string)) {
          // A repeated field is ambiguous: refuse rather than pick one.
          if (Object.hasOwn(out, k)) return done(null, { duplicate: k });
          out[k] = v;
        }
        done(null, out);
      },
    );

    app.get(`${COOKIE_PATH}/:uid`, async (req, reply) => {
      const l = await load(req, reply);
      if (!l) return reply;
      const { details } = l;
      if (details.prompt.name !== 'login') {
        // Already signed in (session); only the grant is missing.
        const accountId = details.session?.accountId;
        if (accountId) return complete(reply, l, accountId, String(details.session?.acr ?? ''));
      }
      const form =
        l.role === 'resident' ? ((await deps.otp.pending(details.uid)) ? 'code' : 'phone') : 'operator';
      return show(reply, l, 200, form);
    });

    app.post(`${COOKIE_PATH}/:uid/phone`, async (req, reply) => {
      const f = await form(req, reply, PhoneForm);
      if (!f) return reply;
      const { l, body } = f;
      if (l.role !== 'resident') return show(reply, l, 400, 'operator', 'errRequest');
      const phone = normalizePhone(body.phone);
      if (!phone) {
        return show(reply, l, 400, 'phone', 'errInvalidPhone');
      }
      // The TCP peer: the public listener trusts no forwarded header (see SMART_HOME_OTP_SEND_MAX_PER_ADDRESS).
      const started = await deps.otp.start(l.details.uid, phone, l.locale, req.ip);
      await journal(req, {
        actorType: 'resident',
        action: 'auth.resident.code_requested',
        result: started,
        details: { clientId: l.clientId },
      });
      if (started === 'locked') {
        return show(reply, l, 429, 'phone', 'errLocked');
      }
      if (started === 'throttled') {
        // A code sent earlier in this sign-in may still be valid: keep its form.
        const form = (await deps.otp.pending(l.details.uid)) ? 'code' : 'phone';
        return show(reply, l, 429, form, 'errTooManyCodes');
      }
      return show(reply, l, 200, 'code');
    });

    app.post(`${COOKIE_PATH}/:uid/code`, async (req, reply) => {
      const f = await form(req, reply, CodeForm);
      if (!f) return reply;
      const { l, body } = f;
      if (l.role !== 'resident') return show(reply, l, 400, 'operator', 'errRequest');
      const r = await deps.otp.verify(l.details.uid, body.code.trim());
      await journal(req, {
        actorType: 'resident',
        actorId: r.ok ? r.residentId : null,
        action: 'auth.resident.sign_in',
        subjectType: r.ok ? 'resident' : null,
        subjectId: r.ok ? r.residentId : null,
        result: r.ok ? 'success' : r.reason,
        details: { clientId: l.clientId },
      });
      if (r.ok) return complete(reply, l, r.residentId, ACR.resident);
      const view = {
        wrong: { status: 400, form: 'code', error: 'errWrongCode' },
        expired: { status: 400, form: 'phone', error: 'errExpired' },
        locked: { status: 429, form: 'phone', error: 'errLocked' },
        'no-challenge': { status: 400, form: 'phone', error: 'errExpired' },
      } as const;
      const v = view[r.reason];
      return show(reply, l, v.status, v.form, v.error);
    });

    app.post(`${COOKIE_PATH}/:uid/restart`, async (req, reply) => {
      const f = await form(req, reply, RestartForm);
      if (!f) return reply;
      return show(reply, f.l, 200, defaultForm(f.l));
    });

    app.post(`${COOKIE_PATH}/:uid/operator`, async (req, reply) => {
      const f = await form(req, reply, OperatorForm);
      if (!f) return reply;
      const { l, body } = f;
      if (l.role !== 'operator') return show(reply, l, 400, 'phone', 'errRequest');
      const r = await verifyOperator(
        { db: deps.db, cipher: deps.cipher, policy: deps.operatorPolicy },
        body.login,
        body.password,
        body.totp.trim(),
      );
      await journal(req, {
        actorType: 'operator',
        actorId: r.ok ? r.operatorId : null,
        action: 'auth.operator.sign_in',
        subjectType: 'operator',
        subjectId: r.ok ? r.operatorId : null,
        result: r.ok ? 'success' : r.reason,
        details: { clientId: l.clientId },
      });
      if (r.ok) return complete(reply, l, r.operatorId, ACR.operator);
      const locked = r.reason === 'locked';
      return show(reply, l, locked ? 429 : 401, 'operator', locked ? 'errLocked' : 'errOperator');
    });
  };
}
