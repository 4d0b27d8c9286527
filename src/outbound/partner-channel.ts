/**
 * One client per partner for smart-home → partner calls (contract §1, §3, §7):
 *
 * - TLS with our client certificate, trusting ONLY the partner's pinned CA (undici `Agent`, kept-alive
 *   connections, connect timeout);
 * - OAuth2 client credentials (RFC 6749 §4.4) at the partner's token endpoint over that same mTLS
 *   connection, the client authenticated by its certificate (RFC 8705 `tls_client_auth`), one token
 *   per scope (`doors:open` for §7, `audit:exchange` for §8); each is cached until
 *   `refreshMarginSeconds` before it expires and concurrent callers share one in-flight request;
 * - every request signed with our Ed25519 key per contract §3 (Content-Digest, `created`, `nonce`),
 *   every answer verified: Content-Digest over the exact bytes received and the partner's signature over
 *   `"@status" "content-digest" "signature";req;key="sig1"` with a key registered for THAT partner.
 *   An answer that fails is never handed to the caller.
 *
 * Every attempt, token requests included, goes through the partner's {@link PartnerGuard}
 * (src/outbound/resilience.ts): the Retry-After gate, the circuit breaker and the bulkhead.
 *
 * {@link PartnerChannel.send} is the generic call (any method, path, scope and body, the raw verified
 * answer back), retried with backoff when idempotent; the door command of §7 drives
 * {@link PartnerChannel.token} and {@link PartnerChannel.post} itself (its deadline is its `expiresAt`),
 * with the same guard and the same retry rule.
 */
import type { KeyObject } from 'node:crypto';
import { type Static, Type as T } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Logger } from 'pino';
import { Agent, request } from 'undici';
import { contentDigest } from '../http-signatures/content-digest.ts';
import {
  REQUEST_COMPONENTS_WITH_BODY,
  REQUEST_COMPONENTS_WITHOUT_BODY,
  RESPONSE_COMPONENTS,
  signRequest,
  verifyResponse,
} from '../http-signatures/rfc9421.ts';
import type { SigningKey } from '../keys/service-keys.ts';
import type { OutboundEndpoint } from '../partners/partner-directory.ts';
import { classifyTransportError, OutboundError } from './errors.ts';
import {
  isIdempotent,
  isRetryableStatus,
  PartnerGuard,
  type ResilienceOptions,
  resilienceOptions,
} from './resilience.ts';

/** The scope of contract §7 at the partner's authorization server. */
export const DOOR_SCOPE = 'doors:open';
/** The scope of contract §8 (journal read, witnessing, reconciliation) at the partner. */
export const AUDIT_SCOPE = 'audit:exchange';

/**
 * Default upper bound on an answer we read from a partner. Not a tunable: contract answers are a few
 * hundred bytes, and a partner must not be able to make us buffer without limit. A caller expecting
 * more (a tile, a reconciliation message) passes the bound its protocol sets to
 * {@link PartnerChannel.send}.
 */
export const MAX_RESPONSE_BYTES = 64 * 1024;

/** RFC 6749 §3.3 scope-token: printable ASCII without space, `"` or `\`. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

export interface ChannelOptions extends Partial<ResilienceOptions> {
  connectTimeoutMs: number;
  /** Total time of one attempt (token request or signed request), answer included. */
  timeoutMs: number;
  connections: number;
  tokenRefreshMarginSeconds: number;
}

export interface PartnerChannelDeps {
  partner: { id: string; code: string; signingKeys: ReadonlyMap<string, KeyObject> };
  endpoint: OutboundEndpoint;
  /** Our client certificate (chain) and key, PEM. */
  clientTls: { cert: string; key: string };
  /** Our Ed25519 request-signing key (contract §3). */
  signingKey: SigningKey;
  options: ChannelOptions;
  /** Clock of the token cache, ms (tests move it to reach a token's expiry). Default Date.now. */
  now?: () => number;
  /** Breaker transitions are logged here (partner id and failure code only). */
  logger?: Logger | undefined;
}

export interface SignedAnswer {
  status: number;
  /** The answer's header fields as received (lower-case names). */
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** kid of the partner key that signed the answer. */
  keyid: string;
  /**
   * ms spent waiting on the partner (performance.now()): from handing the signed request to the HTTP
   * client until the answer's last byte. Our signing before and verification after are not in it.
   */
  exchangeMs: number;
}

const TokenResponse = T.Object(
  {
    access_token: T.String({ minLength: 1, maxLength: 8192, pattern: '^[\\x21-\\x7e]+$' }),
    token_type: T.String({ pattern: '^[Bb][Ee][Aa][Rr][Ee][Rr]$' }),
    expires_in: T.Integer({ minimum: 1, maximum: 86400 }),
    scope: T.Optional(T.String({ maxLength: 1000 })),
  },
  // RFC 6749 §5.1: "The client MUST ignore unrecognized value names in the response."
  { additionalProperties: true },
);
const checkTokenResponse = TypeCompiler.Compile(TokenResponse);

/** One generic call of {@link PartnerChannel.send}. */
export interface SendOptions {
  /** The OAuth scope the partner's route needs, e.g. {@link AUDIT_SCOPE}. */
  scope: string;
  /**
   * The body: bytes as they are, anything else as JSON. None (undefined) sends no body and signs the
   * request without `content-digest` (contract §3).
   */
  body?: Buffer | Uint8Array | unknown;
  /** Default `application/json` for a JSON body; required meaning for bytes (default octet-stream). */
  contentType?: string;
  /** Default `application/json`. */
  accept?: string;
  /** Latest end of the call, Date.now ms (token and request); default now + the total timeout. */
  deadline?: number;
  /** Largest answer read; default {@link MAX_RESPONSE_BYTES}. */
  maxResponseBytes?: number;
  /**
   * On a 401, fetch a fresh token and send once more (default true): the partner acted on nothing,
   * and it no longer takes the cached token (revoked, its keys rotated).
   */
  retryOn401?: boolean;
  /**
   * Whether the request may be sent more than once (default: the method is idempotent, RFC 9110
   * §9.2.2). An idempotent request is retried after a connection error, a timeout with time left, or
   * a 429/502/503/504, with full-jitter backoff; any other request is sent once.
   */
  idempotent?: boolean;
}

interface CachedToken {
  token: string;
  /** Clock ms after which the token is fetched again. */
  refreshAt: number;
}

/** Resolves when `ms` passed or `signal` fired, whichever first. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

export class PartnerChannel {
  readonly partnerId: string;
  readonly endpoint: OutboundEndpoint;
  readonly #deps: PartnerChannelDeps;
  readonly #agent: Agent;
  readonly #now: () => number;
  /** By scope. */
  readonly #tokens = new Map<string, CachedToken>();
  readonly #inflight = new Map<string, Promise<string>>();
  /** Token requests made (for metrics and tests). */
  tokenRequests = 0;
  /** Retry-After gate, circuit breaker and bulkhead of this partner. */
  readonly guard: PartnerGuard;

  constructor(deps: PartnerChannelDeps) {
    this.#deps = deps;
    this.partnerId = deps.partner.id;
    this.endpoint = deps.endpoint;
    this.#now = deps.now ?? Date.now;
    this.guard = new PartnerGuard(deps.partner.id, resilienceOptions(definedOnly(deps.options)), {
      logger: deps.logger,
    });
    this.#agent = new Agent({
      connections: deps.options.connections,
      headersTimeout: deps.options.timeoutMs,
      bodyTimeout: deps.options.timeoutMs,
      connect: {
        cert: deps.clientTls.cert,
        key: deps.clientTls.key,
        // Contract §1: the partner's CA is pinned; `ca` replaces Node's default roots.
        ca: deps.endpoint.serverCa,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.2',
        timeout: deps.options.connectTimeoutMs,
      },
    });
  }

  /**
   * A partner access token with `scope` (default `doors:open`), from the cache or the token endpoint.
   * Concurrent callers of one scope share one request. `deadline` (clock of Date.now, ms) bounds the
   * wait.
   */
  async token(deadline = Date.now() + this.#deps.options.timeoutMs, scope = DOOR_SCOPE): Promise<string> {
    if (!SCOPE_TOKEN.test(scope)) throw new TypeError('one scope-token (RFC 6749 §3.3)');
    const cached = this.#tokens.get(scope);
    if (cached && this.#now() < cached.refreshAt) return cached.token;
    if (deadline - Date.now() <= 0) throw new OutboundError('ERR_OUTBOUND_TIMEOUT', 'no token in time');
    let shared = this.#inflight.get(scope);
    if (!shared) {
      const p = this.#fetchToken(Math.min(deadline, Date.now() + this.#deps.options.timeoutMs), scope);
      this.#inflight.set(scope, p);
      // Clear the slot whatever the outcome; a failure is not cached.
      const clear = () => {
        if (this.#inflight.get(scope) === p) this.#inflight.delete(scope);
      };
      p.then(clear, clear);
      shared = p;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw new OutboundError('ERR_OUTBOUND_TIMEOUT', 'no token in time');
    // Each caller waits no longer than its own deadline, even when it joined an earlier request.
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new OutboundError('ERR_OUTBOUND_TIMEOUT', 'no token in time')),
        remaining,
      );
    });
    try {
      return await Promise.race([shared, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drops the cached token (the partner answered 401: it no longer accepts it). */
  invalidateToken(token?: string): void {
    for (const [scope, cached] of this.#tokens) {
      if (token === undefined || cached.token === token) this.#tokens.delete(scope);
    }
  }

  async #fetchToken(deadline: number, scope: string): Promise<string> {
    this.tokenRequests++;
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), Math.max(0, deadline - Date.now()));
    const obtainedAt = this.#now();
    try {
      // One attempt through the guard: a 429/503 of the token endpoint holds every call back too.
      const { statusCode, body } = await this.guard.run(deadline, async () => {
        try {
          const res = await request(this.endpoint.tokenEndpoint, {
            method: 'POST',
            dispatcher: this.#agent,
            signal: ctl.signal,
            headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
            // RFC 8705 §2.1: tls_client_auth, the client_id names us and the certificate proves it.
            body: new URLSearchParams({
              grant_type: 'client_credentials',
              client_id: this.endpoint.clientId,
              scope,
            }).toString(),
          });
          const body = await readLimited(res.body, MAX_RESPONSE_BYTES);
          return {
            value: { statusCode: res.statusCode, body },
            status: res.statusCode,
            headers: res.headers,
          };
        } catch (err) {
          throw classifyTransportError(err, ctl.signal.aborted);
        }
      });
      if (statusCode !== 200) {
        throw new OutboundError('ERR_OUTBOUND_TOKEN', `token endpoint answered ${statusCode}`);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(body.toString('utf8'));
      } catch {
        throw new OutboundError('ERR_OUTBOUND_TOKEN', 'token response is not JSON');
      }
      if (!checkTokenResponse.Check(parsed)) {
        throw new OutboundError('ERR_OUTBOUND_TOKEN', 'token response does not match RFC 6749 §5.1');
      }
      const t = parsed as Static<typeof TokenResponse>;
      // RFC 6749 §3.3: the server may grant less than asked; a token without our scope is useless.
      if (t.scope !== undefined && !t.scope.split(' ').includes(scope)) {
        throw new OutboundError('ERR_OUTBOUND_TOKEN', `token lacks the ${scope} scope`);
      }
      const margin = this.#deps.options.tokenRefreshMarginSeconds;
      // A lifetime shorter than the margin: use the token for half its life rather than never.
      const reuseSeconds = t.expires_in > margin ? t.expires_in - margin : t.expires_in / 2;
      this.#tokens.set(scope, { token: t.access_token, refreshAt: obtainedAt + reuseSeconds * 1000 });
      return t.access_token;
    } catch (err) {
      throw classifyTransportError(err, ctl.signal.aborted);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * POSTs `body` as JSON to `{baseUrl}{path}`, signed per contract §3 with `token`, and returns the
   * answer only once its digest and the partner's signature verified. Throws an {@link OutboundError}.
   */
  async post(path: string, body: unknown, token: string, deadline: number): Promise<SignedAnswer> {
    return this.exchange('POST', path, token, deadline, {
      body: Buffer.from(JSON.stringify(body), 'utf8'),
      contentType: 'application/json',
      accept: 'application/json',
    });
  }

  /**
   * The generic call: `method` on `{baseUrl}{path}` (path with its query, if any) with a token of
   * `opts.scope`, signed per contract §3; returns status, header fields and the raw body once the
   * answer's digest and the partner's signature verified. A 401 is retried once with a fresh token
   * (see {@link SendOptions.retryOn401}); an idempotent request is retried per
   * {@link SendOptions.idempotent}; any other status is the caller's to read (a 429/503 once the
   * attempts are spent or its Retry-After ends past the deadline). Throws an {@link OutboundError} for
   * everything that gives no trustworthy answer, and without sending anything while the partner's
   * circuit is open, its bulkhead full, or its Retry-After runs past the deadline.
   *
   * Each attempt has the total timeout; the whole call ends by `opts.deadline`, by default the total
   * timeout times the attempts.
   */
  async send(method: string, path: string, opts: SendOptions): Promise<SignedAnswer> {
    if (!path.startsWith('/')) throw new TypeError('path must start with /');
    const idempotent = opts.idempotent ?? isIdempotent(method);
    const attempts = idempotent ? this.guard.options.retryAttempts : 1;
    const timeoutMs = this.#deps.options.timeoutMs;
    const overall = opts.deadline ?? Date.now() + timeoutMs * attempts;
    let body: Buffer | undefined;
    let contentType = opts.contentType;
    if (opts.body === undefined) body = undefined;
    else if (opts.body instanceof Uint8Array) {
      body = Buffer.from(opts.body.buffer, opts.body.byteOffset, opts.body.byteLength);
      contentType ??= 'application/octet-stream';
    } else {
      body = Buffer.from(JSON.stringify(opts.body), 'utf8');
      contentType ??= 'application/json';
    }
    const wire = {
      accept: opts.accept ?? 'application/json',
      maxResponseBytes: opts.maxResponseBytes ?? MAX_RESPONSE_BYTES,
      ...(body !== undefined ? { body, contentType: contentType as string } : {}),
    };
    let retried401 = opts.retryOn401 === false;
    for (let attempt = 1; ; attempt++) {
      const deadline = Math.min(overall, Date.now() + timeoutMs);
      let answer: SignedAnswer | undefined;
      let failure: unknown;
      try {
        const token = await this.token(deadline, opts.scope);
        answer = await this.exchange(method, path, token, deadline, wire);
        if (answer.status === 401) {
          this.invalidateToken(token);
          // Nothing was acted on for a 401: one fresh token, not counted as an attempt.
          if (!retried401) {
            retried401 = true;
            attempt--;
            continue;
          }
        }
        if (!isRetryableStatus(answer.status)) return answer;
      } catch (err) {
        failure = err;
      }
      const again =
        attempt < attempts &&
        (answer !== undefined || isRetryableError(failure)) &&
        // A Retry-After past the deadline: the answer (or the failure) is final.
        this.guard.blockedUntil < overall;
      const delay = again ? this.guard.retryDelay(attempt) : 0;
      if (!again || Date.now() + delay >= overall) {
        if (answer) return answer;
        throw failure;
      }
      this.guard.retrying();
      await pause(delay);
    }
  }

  /** One signed request with `token` and its verified answer (no token handling, no retry). */
  async exchange(
    method: string,
    path: string,
    token: string,
    deadline: number,
    wire: { body?: Buffer; contentType?: string; accept: string; maxResponseBytes?: number },
  ): Promise<SignedAnswer> {
    const targetUri = `${this.endpoint.baseUrl}${path}`;
    const headers: Record<string, string> = {
      authorization: `Bearer ${token}`,
      accept: wire.accept,
    };
    if (wire.body !== undefined) {
      headers['content-type'] = wire.contentType ?? 'application/octet-stream';
      headers['content-digest'] = contentDigest(wire.body);
    }
    const key = this.#deps.signingKey;
    Object.assign(
      headers,
      signRequest({
        method,
        targetUri,
        headers,
        components: wire.body !== undefined ? REQUEST_COMPONENTS_WITH_BODY : REQUEST_COMPONENTS_WITHOUT_BODY,
        privateKey: key.privateKey,
        keyid: key.kid,
      }),
    );
    if (deadline - Date.now() <= 0) throw new OutboundError('ERR_OUTBOUND_TIMEOUT', 'no time left to send');
    return this.guard.run(deadline, async () => {
      const answer = await this.#exchangeOnce(method, targetUri, headers, deadline, wire);
      return { value: answer, status: answer.status, headers: answer.headers };
    });
  }

  async #exchangeOnce(
    method: string,
    targetUri: string,
    headers: Record<string, string>,
    deadline: number,
    wire: { body?: Buffer; maxResponseBytes?: number },
  ): Promise<SignedAnswer> {
    const ctl = new AbortController();
    // The bulkhead may have kept the call waiting: the time left is measured again.
    const wait = Math.min(deadline - Date.now(), this.#deps.options.timeoutMs);
    if (wait <= 0) throw new OutboundError('ERR_OUTBOUND_TIMEOUT', 'no time left to send');
    const timer = setTimeout(() => ctl.abort(), wait);
    let status: number;
    let resHeaders: Record<string, string | string[] | undefined>;
    let received: Buffer;
    const sentAt = performance.now();
    let exchangeMs: number;
    try {
      const res = await request(targetUri, {
        method: method as 'GET',
        dispatcher: this.#agent,
        signal: ctl.signal,
        headers,
        ...(wire.body !== undefined ? { body: wire.body } : {}),
      });
      status = res.statusCode;
      resHeaders = res.headers;
      received = await readLimited(res.body, wire.maxResponseBytes ?? MAX_RESPONSE_BYTES);
      exchangeMs = performance.now() - sentAt;
    } catch (err) {
      throw classifyTransportError(err, ctl.signal.aborted);
    } finally {
      clearTimeout(timer);
    }
    const partnerKeys = this.#deps.partner.signingKeys;
    const verified = await verifyResponse({
      status,
      headers: resHeaders,
      body: received,
      request: { method, targetUri, headers },
      // Only keys registered for this partner: another partner's key is an unknown key here.
      resolveKey: (kid) => partnerKeys.get(kid),
      requiredComponents: RESPONSE_COMPONENTS,
    });
    if (!verified.ok) {
      throw new OutboundError('ERR_OUTBOUND_SIGNATURE', `answer refused: ${verified.code}`);
    }
    return { status, headers: resHeaders, body: received, keyid: verified.keyid, exchangeMs };
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }
}

/** Failures after which an idempotent request may be sent again (the partner may answer next time). */
function isRetryableError(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === 'ERR_OUTBOUND_CONNECT' || code === 'ERR_OUTBOUND_TIMEOUT';
}

/** The options without their undefined fields (so the documented defaults fill them). */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

async function readLimited(
  body: AsyncIterable<Uint8Array> & { destroy?: () => unknown },
  limit: number,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > limit) {
      body.destroy?.();
      throw new OutboundError('ERR_OUTBOUND_RESPONSE', 'answer too large');
    }
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}
