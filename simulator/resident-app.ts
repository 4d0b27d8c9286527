/**
 * The residents' mobile app (and the operator console) as a client of smart-home's public listener:
 * OpenID discovery, authorization code + PKCE S256 (optionally through PAR, RFC 9126) over real TLS,
 * the server-rendered sign-in pages walked like a browser without JavaScript, token refresh with
 * rotation, and calls to /api/v1 (or /admin/v1) with `Authorization: Bearer`, or `DPoP` plus a proof
 * per request (RFC 9449), answering a `use_dpop_nonce` challenge once.
 *
 * ```ts
 * const app = new ResidentApp({
 *   issuer: 'https://localhost:8443',          // the public listener (= the embedded issuer)
 *   ca: servicePem,                            // the CA its TLS certificate chains to
 *   clientId: 'mobile-app',
 *   redirectUri: 'ru.propdevelopment.smarthome:/oauth/callback',
 *   dpop: true,                                // a fresh ES256 key pair for this app
 * });
 * await app.signIn('+79123456789', consoleOtp()); // in-process: the console sender's code
 * const me = await app.api('GET', '/me');       // { status, headers, body }
 * await app.refresh();
 * await app.close();
 * ```
 *
 * The operator console is the same client with a confidential client id (`clientSecret`) and
 * `signInOperator(login, password, totpSecret)`; its calls go through `admin(method, path, body)`.
 */
import { hash } from 'node:crypto';
import { exportJWK, SignJWT } from 'jose';
import * as oidc from 'openid-client';
import { Agent, request, fetch as undiciFetch } from 'undici';
import { consoleOtpOutbox } from '../src/identity/otp-sender.ts';
import { base32Decode, hotp, totpStep } from '../src/identity/totp.ts';

/** A browser without JavaScript on one origin: follows no redirect by itself, keeps cookies. */
export class Browser {
  readonly jar = new Map<string, string>();
  readonly base: string;
  readonly dispatcher: Agent;
  readonly acceptLanguage: string;

  constructor(base: string, dispatcher: Agent, acceptLanguage = 'en') {
    this.base = base;
    this.dispatcher = dispatcher;
    this.acceptLanguage = acceptLanguage;
  }

  /** GET `url`, or POST `form` to it (urlencoded); relative URLs are resolved against the base. */
  async go(url: string, form?: Record<string, string>) {
    const res = await request(new URL(url, this.base), {
      method: form ? 'POST' : 'GET',
      dispatcher: this.dispatcher,
      headers: {
        cookie: [...this.jar].map(([k, v]) => `${k}=${v}`).join('; '),
        'accept-language': this.acceptLanguage,
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      },
      ...(form ? { body: new URLSearchParams(form).toString() } : {}),
    });
    const setCookie = res.headers['set-cookie'];
    for (const c of Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []) {
      const [pair = ''] = c.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq);
      const value = pair.slice(eq + 1);
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(c)) this.jar.delete(name);
      else this.jar.set(name, value);
    }
    const body = await res.body.text();
    const location = res.headers.location as string | undefined;
    return { status: res.statusCode, body, location };
  }
}

/** The CSRF token of a sign-in form. */
export function csrfOf(html: string): string {
  const m = /name="csrf" value="([^"]+)"/.exec(html);
  if (!m?.[1]) throw new Error('the page carries no CSRF token');
  return m[1];
}

/** A sign-in step that did not answer as the flow expects (status and page, for the test's message). */
export class SignInError extends Error {
  readonly status: number;
  readonly body: string;
  constructor(step: string, res: { status: number; body: string }) {
    super(`sign-in step "${step}" answered ${res.status}`);
    this.status = res.status;
    this.body = res.body;
  }
}

function expect(
  step: string,
  res: { status: number; body: string; location?: string | undefined },
  status: number,
) {
  if (res.status !== status || (status === 303 && !res.location)) throw new SignInError(step, res);
  return res;
}

/** The authorization request leads to one of the server's own sign-in pages, nowhere else. */
async function startInteraction(browser: Browser, authUrl: URL): Promise<string> {
  const start = expect('authorize', await browser.go(authUrl.href), 303);
  if (!/^\/oauth\/interaction\/[A-Za-z0-9_-]+$/.test(start.location!))
    throw new SignInError('authorize', start);
  return start.location!;
}

/**
 * The code sent by the in-process console sender (`consoleOtpOutbox`), optionally only the one for
 * `phone` (E.164). Pass it to {@link ResidentApp.signIn} or {@link residentSignInWalk}: it is called
 * before the phone is submitted, so the listener is in place when the code goes out.
 */
export function consoleOtp(phone?: string): () => Promise<string> {
  return () =>
    new Promise((resolve) => {
      const listener = (m: { phone: string; code: string }) => {
        if (phone !== undefined && m.phone !== phone) return;
        consoleOtpOutbox.off('code', listener);
        resolve(m.code);
      };
      consoleOtpOutbox.on('code', listener);
    });
}

/**
 * Authorization request → phone page → code page → the redirect back to the client: returns the
 * callback URL (with `code`, `state`, `iss`). `otp` is called just before the phone is submitted and
 * awaited once the code page is shown.
 */
export async function residentSignInWalk(
  browser: Browser,
  authUrl: URL,
  phone: string,
  otp: () => Promise<string>,
): Promise<URL> {
  const interaction = await startInteraction(browser, authUrl);
  const phonePage = expect('phone page', await browser.go(interaction), 200);
  if (!/name="phone"/.test(phonePage.body)) throw new SignInError('phone page', phonePage);
  const code = otp();
  const codePage = expect(
    'phone',
    await browser.go(`${interaction}/phone`, { csrf: csrfOf(phonePage.body), phone }),
    200,
  );
  if (!/name="code"/.test(codePage.body)) throw new SignInError('code page', codePage);
  const done = expect(
    'code',
    await browser.go(`${interaction}/code`, { csrf: csrfOf(codePage.body), code: await code }),
    303,
  );
  const resumed = expect('resume', await browser.go(done.location!), 303);
  return new URL(resumed.location!);
}

/** The operator's walk: password and TOTP on one page, then the redirect back to the client. */
export async function operatorSignInWalk(
  browser: Browser,
  authUrl: URL,
  login: string,
  password: string,
  totp: string,
): Promise<URL> {
  const interaction = await startInteraction(browser, authUrl);
  const page = expect('operator page', await browser.go(interaction), 200);
  if (!/name="password"/.test(page.body)) throw new SignInError('operator page', page);
  const done = expect(
    'operator',
    await browser.go(`${interaction}/operator`, { csrf: csrfOf(page.body), login, password, totp }),
    303,
  );
  const resumed = expect('resume', await browser.go(done.location!), 303);
  return new URL(resumed.location!);
}

/** The app's DPoP key pair (WebCrypto, ES256). */
export type DpopKeyPair = Awaited<ReturnType<typeof oidc.randomDPoPKeyPair>>;

export interface ResidentAppOptions {
  /** smart-home's public URL, which is also the issuer of the embedded authorization server. */
  issuer: string;
  /** PEM of the CA the public listener's certificate chains to (the only one trusted). */
  ca: string;
  clientId: string;
  redirectUri: string;
  /** A confidential client (the operator console): client_secret_basic. */
  clientSecret?: string;
  /** DPoP-bound tokens with a key pair generated for this app (RFC 9449). */
  dpop?: boolean;
  /** Send the authorization request by PAR (RFC 9126). */
  par?: boolean;
  /** Default `openid offline_access api`. */
  scope?: string;
  /**
   * How far the phone's clock is off, in seconds (negative: behind), as seen in the `iat` of the DPoP
   * proofs it makes for the API: a server nonce is what gets such a phone through (RFC 9449 §9).
   */
  clockSkewSeconds?: number;
  acceptLanguage?: string;
}

export interface TokenSet {
  accessToken: string;
  refreshToken: string | undefined;
  /** `Bearer` or `DPoP`. */
  tokenType: string;
  /** Seconds since the epoch. */
  expiresAt: number;
  /** The ID token of the sign-in (OpenID Connect; kept across refreshes when none is returned). */
  idToken: string | undefined;
}

export interface ApiResponse<T = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON when the response is JSON, the text otherwise (undefined when empty). */
  body: T;
}

/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_SECONDS = 30;

export class ResidentApp {
  readonly options: Readonly<ResidentAppOptions>;
  readonly agent: Agent;
  #config: oidc.Configuration | undefined;
  #keyPair: DpopKeyPair | undefined;
  #dpopHandle: oidc.DPoPHandle | undefined;
  #tokens: TokenSet | undefined;
  /** The last DPoP nonce the resource server gave (RFC 9449 §8): one origin, one value. */
  #resourceNonce: string | undefined;
  #nonceRetries = 0;

  constructor(options: ResidentAppOptions) {
    this.options = { ...options };
    this.agent = new Agent({ connect: { ca: options.ca } });
  }

  get tokens(): TokenSet | undefined {
    return this.#tokens;
  }

  get accessToken(): string {
    if (!this.#tokens) throw new Error('not signed in');
    return this.#tokens.accessToken;
  }

  get refreshToken(): string | undefined {
    return this.#tokens?.refreshToken;
  }

  /** The DPoP key pair (dpop apps only): tests make proofs of their own with it. */
  get dpopKeyPair(): DpopKeyPair | undefined {
    return this.#keyPair;
  }

  /** How many API calls were sent again with a server nonce after a `use_dpop_nonce` challenge. */
  get dpopNonceRetries(): number {
    return this.#nonceRetries;
  }

  /** A no-JS browser on the issuer's origin through this app's TLS trust. */
  browser(): Browser {
    return new Browser(this.options.issuer, this.agent, this.options.acceptLanguage);
  }

  /** The discovered configuration (discovery runs once). */
  async configuration(): Promise<oidc.Configuration> {
    if (this.#config) return this.#config;
    const agent = this.agent;
    const tlsFetch: oidc.CustomFetch = (url, options) =>
      undiciFetch(url, { ...(options as object), dispatcher: agent }) as unknown as Promise<Response>;
    const o = this.options;
    this.#config = await oidc.discovery(
      new URL(o.issuer),
      o.clientId,
      { id_token_signed_response_alg: 'ES256' },
      o.clientSecret ? oidc.ClientSecretBasic(o.clientSecret) : oidc.None(),
      { [oidc.customFetch]: tlsFetch },
    );
    if (o.dpop) {
      this.#keyPair = await oidc.randomDPoPKeyPair('ES256');
      this.#dpopHandle = oidc.getDPoPHandle(this.#config, this.#keyPair);
    }
    return this.#config;
  }

  #dpopOption() {
    return this.#dpopHandle ? { DPoP: this.#dpopHandle } : undefined;
  }

  /** Signs a resident in by phone and one-time code; keeps the tokens. */
  async signIn(phone: string, otp: () => Promise<string>): Promise<TokenSet> {
    return this.#authorize((browser, url) => residentSignInWalk(browser, url, phone, otp));
  }

  /**
   * Signs an operator in with password and TOTP. `totp` is the base32 secret (the current code is
   * computed from it; the server accepts each time step once per operator) or a code provider.
   */
  async signInOperator(
    login: string,
    password: string,
    totp: string | (() => string | Promise<string>),
  ): Promise<TokenSet> {
    const code = typeof totp === 'function' ? await totp() : hotp(base32Decode(totp), totpStep(Date.now()));
    return this.#authorize((browser, url) => operatorSignInWalk(browser, url, login, password, code));
  }

  async #authorize(walk: (browser: Browser, url: URL) => Promise<URL>): Promise<TokenSet> {
    const config = await this.configuration();
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const params = {
      redirect_uri: this.options.redirectUri,
      scope: this.options.scope ?? 'openid offline_access api',
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
    };
    const url = this.options.par
      ? await oidc.buildAuthorizationUrlWithPAR(config, params, this.#dpopOption())
      : oidc.buildAuthorizationUrl(config, params);
    const back = await walk(this.browser(), url);
    const tokens = await oidc.authorizationCodeGrant(
      config,
      back,
      { pkceCodeVerifier: verifier, expectedState: state },
      undefined,
      this.#dpopOption(),
    );
    return this.#keep(tokens);
  }

  #keep(t: oidc.TokenEndpointResponse): TokenSet {
    this.#tokens = {
      accessToken: t.access_token,
      // RFC 6749 §6: a refresh response without a new refresh token keeps the old one.
      refreshToken: t.refresh_token ?? this.#tokens?.refreshToken,
      tokenType: t.token_type.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer',
      expiresAt: Math.floor(Date.now() / 1000) + (t.expires_in ?? 0),
      idToken: t.id_token ?? this.#tokens?.idToken,
    };
    return this.#tokens;
  }

  /**
   * Refreshes the tokens (rotation: the refresh token is replaced). `token` overrides the one kept
   * (a test replaying an old one); on failure the kept tokens stay as they were and the error is
   * openid-client's (`error` is the OAuth error code, e.g. `invalid_grant`).
   */
  async refresh(token?: string): Promise<TokenSet> {
    const rt = token ?? this.#tokens?.refreshToken;
    if (!rt) throw new Error('no refresh token');
    const config = await this.configuration();
    return this.#keep(await oidc.refreshTokenGrant(config, rt, undefined, this.#dpopOption()));
  }

  /** Revokes the refresh token at the authorization server (RFC 7009) and forgets the tokens. */
  async signOut(): Promise<void> {
    const rt = this.#tokens?.refreshToken;
    if (rt) await oidc.tokenRevocation(await this.configuration(), rt);
    this.#tokens = undefined;
  }

  /** A call to the resident API: `path` is below /api/v1. */
  api<T = unknown>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    return this.call<T>(method, `/api/v1${path}`, body);
  }

  /** A call to the operator API: `path` is below /admin/v1. */
  admin<T = unknown>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    return this.call<T>(method, `/admin/v1${path}`, body);
  }

  /**
   * A call with the access token on the public listener (`path` from the root). Refreshes first when
   * the token is about to expire; a DPoP app sends a fresh proof, and retries once with the server's
   * nonce when challenged with `use_dpop_nonce` (RFC 9449 §9).
   */
  async call<T = unknown>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    if (!this.#tokens) throw new Error('not signed in');
    if (this.#tokens.refreshToken && this.#tokens.expiresAt - REFRESH_MARGIN_SECONDS < Date.now() / 1000)
      await this.refresh();
    let res = await this.#send<T>(method, path, body);
    if (this.#keyPair && res.status === 401 && isNonceChallenge(res.headers['www-authenticate'])) {
      this.#nonceRetries++;
      res = await this.#send<T>(method, path, body);
    }
    return res;
  }

  async #send<T>(method: string, path: string, body: unknown): Promise<ApiResponse<T>> {
    const url = new URL(path, this.options.issuer);
    const token = this.accessToken;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#keyPair && this.#tokens!.tokenType === 'DPoP') {
      headers['authorization'] = `DPoP ${token}`;
      headers['dpop'] = await this.dpopProof(method, url.href, token, this.#resourceNonce);
    } else {
      headers['authorization'] = `Bearer ${token}`;
    }
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await request(url, {
      method: method as 'GET',
      dispatcher: this.agent,
      headers,
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const nonce = res.headers['dpop-nonce'];
    if (typeof nonce === 'string') this.#resourceNonce = nonce;
    const text = await res.body.text();
    const type = String(res.headers['content-type'] ?? '');
    const parsed = text === '' ? undefined : /json/.test(type) ? JSON.parse(text) : text;
    return { status: res.statusCode, headers: res.headers, body: parsed as T };
  }

  /**
   * A DPoP proof (RFC 9449 §4.2) for `method` and `url` with this app's key, bound to `accessToken`
   * (`ath`, §7.1) and carrying `nonce` when given. Public so tests can send altered proofs.
   */
  async dpopProof(method: string, url: string, accessToken?: string, nonce?: string): Promise<string> {
    if (!this.#keyPair) throw new Error('this app has no DPoP key');
    const htu = new URL(url);
    htu.search = '';
    htu.hash = '';
    return new SignJWT({
      htm: method,
      htu: htu.href,
      ...(accessToken ? { ath: hash('sha256', accessToken, 'base64url') } : {}),
      ...(nonce ? { nonce } : {}),
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: await exportJWK(this.#keyPair.publicKey) })
      .setJti(crypto.randomUUID())
      .setIssuedAt(Math.floor(Date.now() / 1000) + (this.options.clockSkewSeconds ?? 0))
      .sign(this.#keyPair.privateKey);
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

function isNonceChallenge(header: string | string[] | undefined): boolean {
  const values = Array.isArray(header) ? header : header ? [header] : [];
  return values.some((v) => /error="use_dpop_nonce"/.test(v));
}
