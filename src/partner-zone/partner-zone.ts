import { createHash, type KeyObject } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';
import { contentDigest } from '../http-signatures/content-digest.ts';
import type { ReplayCache } from '../http-signatures/replay-cache.ts';
import { signResponse, UNBOUND_RESPONSE_COMPONENTS, verifyRequest } from '../http-signatures/rfc9421.ts';
import { counter } from '../metrics/registry.ts';
import type { PartnerDirectory, PartnerInfo } from '../partners/partner-directory.ts';
import type { CidrSet } from '../util/cidr.ts';
import { clientAddress } from './client-address.ts';
import type { LoadShedder } from './load-shedder.ts';
import { type RateLimiter, RateLimiterUnavailableError } from './rate-limiter.ts';

export type PartnerScope = 'barrier:decide' | 'face:decide' | 'events:write' | 'audit:exchange';

export interface TokenVerifier {
  verify(
    token: string,
    presentedCertThumbprint: string,
  ): Promise<{ clientId: string; scopes: ReadonlySet<string> }>;
}

export interface PartnerZoneDeps {
  directory: () => PartnerDirectory;
  tokens: TokenVerifier;
  replayCache: ReplayCache;
  limiter: RateLimiter;
  /** Sheds partner requests while the event loop lags (503 overloaded); none: never shed. */
  shedder?: LoadShedder | undefined;
  trustedProxies: CidrSet;
  /** smart-home's own Ed25519 key: signs every response of the zone (contract §3). */
  responseKey: { kid: string; privateKey: KeyObject };
}

declare module 'fastify' {
  interface FastifyRequest {
    partner: PartnerInfo | undefined;
    rawBody: Buffer | undefined;
  }
  interface FastifyContextConfig {
    /** The OAuth scope a partner route requires (contract §2). */
    scope?: PartnerScope;
  }
}

const thumbprints = new WeakMap<object, string>();

const rateLimited = counter(
  'smart_home_partner_rate_limited_total',
  'Partner requests answered 429 rate-limited, per partner.',
  ['partner'],
);

/** RFC 8705 §3.1 x5t#S256 of the connection's client certificate, computed once per connection. */
export function peerThumbprint(req: FastifyRequest): string | undefined {
  const socket = req.raw.socket as TLSSocket;
  let t = thumbprints.get(socket);
  if (t === undefined) {
    const cert =
      typeof socket.getPeerX509Certificate === 'function' ? socket.getPeerX509Certificate() : undefined;
    if (!cert) return undefined;
    t = createHash('sha256').update(cert.raw).digest('base64url');
    thumbprints.set(socket, t);
  }
  return t;
}

/** The enabled partner registered for this connection's client certificate, with its thumbprint. */
export function registeredPartner(
  req: FastifyRequest,
  directory: PartnerDirectory,
): { partner: PartnerInfo; thumbprint: string } | undefined {
  const thumbprint = peerThumbprint(req);
  const partner = thumbprint ? directory.byThumbprint.get(thumbprint) : undefined;
  return thumbprint && partner?.enabled ? { partner, thumbprint } : undefined;
}

/**
 * One token of the partner's bucket `key`, or the refusal: `429 rate-limited` with Retry-After, or
 * `503 unavailable` when the shared store is down and the limiter fails closed (an operator's choice).
 */
export async function takeOrRefuse(limiter: RateLimiter, key: string, partnerId = key): Promise<void> {
  let wait: number;
  try {
    wait = await limiter.take(key);
  } catch (err) {
    if (err instanceof RateLimiterUnavailableError) {
      throw new AppError('unavailable', undefined, { headers: { 'retry-after': '1' }, cause: err });
    }
    throw err;
  }
  if (wait > 0) {
    rateLimited.inc({ partner: partnerId });
    throw new AppError('rate-limited', undefined, { headers: { 'retry-after': String(wait) } });
  }
}

const BEARER = /^Bearer ([A-Za-z0-9\-._~+/]+=*)$/;
const REQUIRED_WITH_BODY = ['@method', '@target-uri', 'authorization', 'content-digest'];
const REQUIRED_WITHOUT_BODY = ['@method', '@target-uri', 'authorization'];

/**
 * The `partner` zone: every route registered inside it is reached only through mTLS (enforced by the
 * listener), a registered certificate, load shedding, the partner's own address list, its rate limit
 * (shared across instances through Redis when configured), a certificate-bound access token with the
 * route's scope, and a valid RFC 9421 signature — in that order, cheapest first. Every response,
 * errors included, is signed.
 */
export function partnerZone(deps: PartnerZoneDeps) {
  return async function zone(app: FastifyInstance): Promise<void> {
    app.decorateRequest('partner', undefined);
    app.decorateRequest('rawBody', undefined);

    app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
      const buf = body as Buffer;
      req.rawBody = buf;
      try {
        done(null, JSON.parse(buf.toString('utf8')));
      } catch {
        done(new AppError('invalid-request', 'the body is not valid JSON'), undefined);
      }
    });

    app.addHook('onRequest', async (req) => {
      const found = registeredPartner(req, deps.directory());
      if (!found) {
        throw new AppError('invalid-token', 'the client certificate is not registered to an enabled partner');
      }
      const { partner, thumbprint } = found;
      // Issue 5: an overloaded instance says so before spending anything on the request.
      const shed = deps.shedder?.check(partner.id) ?? 0;
      if (shed > 0) {
        throw new AppError('overloaded', undefined, { headers: { 'retry-after': String(shed) } });
      }
      if (!partner.networks.has(clientAddress(req.raw, deps.trustedProxies)))
        throw new AppError('ip-not-allowed');
      await takeOrRefuse(deps.limiter, partner.id);

      const m = BEARER.exec(req.headers.authorization ?? '');
      if (!m) throw new AppError('invalid-token', 'a Bearer access token is required');
      let token: Awaited<ReturnType<TokenVerifier['verify']>>;
      try {
        token = await deps.tokens.verify(m[1]!, thumbprint);
      } catch {
        throw new AppError('invalid-token');
      }
      if (token.clientId !== partner.code) throw new AppError('invalid-token');
      const scope = req.routeOptions.config.scope;
      if (scope && !(token.scopes.has(scope) && partner.scopes.has(scope))) {
        throw new AppError('insufficient-scope', `this operation needs the ${scope} scope`);
      }
      req.partner = partner;
    });

    app.addHook('preValidation', async (req) => {
      const partner = req.partner!;
      const body = req.rawBody;
      const result = await verifyRequest({
        method: req.method,
        targetUri: `https://${req.headers.host ?? ''}${req.url}`,
        headers: req.headers as Record<string, string | undefined>,
        ...(body ? { body } : {}),
        requiredComponents: body ? REQUIRED_WITH_BODY : REQUIRED_WITHOUT_BODY,
        resolveKey: (kid: string) => partner.signingKeys.get(kid),
        replayCache: deps.replayCache,
      });
      if (!result.ok) throw new AppError('invalid-signature', result.message);
    });

    app.addHook('onSend', async (req: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      const bytes =
        typeof payload === 'string'
          ? Buffer.from(payload)
          : Buffer.isBuffer(payload)
            ? payload
            : Buffer.alloc(0);
      const digest = contentDigest(bytes);
      reply.header('content-digest', digest);
      // Contract §3 binds the answer to the request's signature; a request that carried none (and was
      // refused for it) gets an answer signed over status and digest alone.
      const requestSigned =
        typeof req.headers['signature'] === 'string' && typeof req.headers['signature-input'] === 'string';
      let signed: { 'signature-input': string; signature: string };
      try {
        signed = signResponse({
          status: reply.statusCode,
          headers: { 'content-digest': digest },
          request: { headers: req.headers as Record<string, string | undefined> },
          privateKey: deps.responseKey.privateKey,
          keyid: deps.responseKey.kid,
          ...(requestSigned ? {} : { components: UNBOUND_RESPONSE_COMPONENTS }),
        });
      } catch {
        // The request's Signature header was malformed: sign what can be signed.
        signed = signResponse({
          status: reply.statusCode,
          headers: { 'content-digest': digest },
          request: { headers: {} },
          privateKey: deps.responseKey.privateKey,
          keyid: deps.responseKey.kid,
          components: UNBOUND_RESPONSE_COMPONENTS,
        });
      }
      reply.header('signature-input', signed['signature-input']);
      reply.header('signature', signed.signature);
      return typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : bytes;
    });

    app.setNotFoundHandler(async () => {
      throw new AppError('not-found');
    });
  };
}
