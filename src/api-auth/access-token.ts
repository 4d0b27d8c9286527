/**
 * The public API's access-token check (resource server): RFC 9068 JWT access tokens from one trusted
 * issuer — the embedded authorization server or an external identity provider — verified with `jose`
 * with every choice pinned (RFC 8725 §3), optionally DPoP-bound (RFC 9449 §7), mapped to a
 * {@link Principal} that names a live resident or an operator.
 */
import type { IncomingHttpHeaders } from 'node:http';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  type FetchImplementation,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import type { Db } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { isUuid } from '../util/uuid.ts';
import { checkAsymmetricAlgorithms, type DpopOptions, verifyDpopProof } from './dpop.ts';
import { ApiAuthError, type ChallengeOptions, challenge, invalidToken } from './errors.ts';
import { API_AUDIENCE, GRANT_CLAIM, type Principal, ROLE_CLAIM, type Role } from './principal.ts';

/** How an external IdP's tokens name the caller (Keycloak's defaults shown). */
export type ClaimsMapping = {
  /** Dotted path of the stable subject linked to `residents.external_subject` (default `sub`). */
  subjectClaim: string;
  /** Dotted path of the roles: an array of strings or a space-separated string (`realm_access.roles`). */
  rolesClaim: string;
  /** The role value that makes the caller an operator (`smart-home-operator`). */
  operatorRole: string;
  /** The role value that makes the caller a resident (`smart-home-resident`). */
  residentRole: string;
};

export type RemoteJwksOptions = {
  /** The IdP's `jwks_uri` (from discovery, see external-idp.ts). */
  jwksUri: string | URL;
  /** Abort a key-set fetch after this long (jose default 5000 ms). */
  timeoutMs?: number;
  /** Keys are refetched at most this old (jose default 600000 ms). */
  cacheMaxAgeMs?: number;
  /** An unknown `kid` triggers a refetch at most this often (jose default 30000 ms). */
  cooldownMs?: number;
  /** A fetch trusting the IdP's CA (tests, private PKI); the global fetch otherwise. */
  fetch?: FetchImplementation;
};

export type ApiTokenVerifierOptions = {
  /** The one trusted issuer (`iss`, compared exactly). */
  issuer: string;
  /** Expected `aud` (default `urn:smart-home:api`). */
  audience?: string;
  /** The issuer's public keys in process (the embedded AS), or a jose key getter. */
  jwks?: JSONWebKeySet | JWTVerifyGetKey;
  /** Or its keys fetched from `jwks_uri` and cached (an external IdP). */
  remote?: RemoteJwksOptions;
  /**
   * `embedded` (default): our AS — `sub` is `residents.id`, the `role` claim names the role,
   * `client_id` is required. `external`: roles and subject through {@link ClaimsMapping}, residents
   * linked by `residents.external_subject`.
   */
  kind?: 'embedded' | 'external';
  /** JWS algorithms accepted (default ES256 only); asymmetric ones only, `none` and HS* are refused. */
  algorithms?: readonly string[];
  /**
   * Accept `typ: JWT` besides `at+jwt` (external IdPs only: Keycloak issues `JWT`, keycloak#34146). ID
   * tokens are still refused by their claims (`nonce`, `at_hash`, Keycloak's `typ: "ID"`).
   */
  acceptJwtTyp?: boolean;
  /** Required for `kind: 'external'`. */
  claims?: ClaimsMapping;
  /** Leeway on `exp`, `nbf` and `iat`, seconds (default 10). */
  clockToleranceSeconds?: number;
  /** Residents are looked up on every request: a removed resident's token stops working at once. */
  db: Db;
  /**
   * DPoP at the resource server. Without it, DPoP-bound tokens are refused (fail closed).
   * `publicUrl` is the listener's external base URL: `htu` is compared against it, never against
   * the client's Host header.
   */
  dpop?: DpopOptions & { publicUrl: string };
  /**
   * Whether an operator subject may still act (the embedded AS: a row in `operators`, enabled). Without
   * it the role claim alone decides (an external IdP, which owns its operators' accounts).
   */
  operatorActive?: (subject: string) => Promise<boolean>;
  /** Refuse Bearer tokens altogether (every token must be DPoP-bound). */
  requireDpop?: boolean;
  /** `realm` of the `WWW-Authenticate` challenges (default `smart-home`). */
  realm?: string;
  /**
   * Remember verified tokens (the exact token string) so that a client's next request skips the
   * signature check: for at most `ttlSeconds`, never past the token's own `exp` (+ leeway), at most
   * `max` tokens (the oldest goes first). Only what verified is remembered; the live subject look-up
   * and DPoP still run on every request. A withdrawn signing key stops a remembered token only when
   * its entry ends (≤ `ttlSeconds`). Default off.
   */
  verifiedCache?: { ttlSeconds: number; max: number };
  /** Seconds since the epoch; for tests. */
  now?: () => number;
};

/** What a verified token says, before the subject is looked up. */
export type VerifiedApiToken = {
  role: Role;
  subject: string;
  scopes: ReadonlySet<string>;
  clientId: string | undefined;
  /** RFC 9449 `cnf.jkt`: the token is DPoP-bound to this key. */
  jkt: string | undefined;
  exp: number;
  jti: string;
  /** The embedded AS's grant (`gid`): a revoked grant's tokens are refused at once. */
  grantId: string | undefined;
};

/** The parts of an HTTP request the check reads. */
export type AuthRequest = { method: string; url: string; headers: IncomingHttpHeaders };

export type ApiTokenVerifier = {
  readonly issuer: string;
  readonly kind: 'embedded' | 'external';
  /** Signature, header and claims only (no DPoP, no database). */
  verifyAccessToken(token: string): Promise<VerifiedApiToken>;
  /** The whole check for one request: scheme, token, DPoP proof, live subject. */
  authenticate(req: AuthRequest): Promise<Principal>;
  /** `WWW-Authenticate` for a refusal. */
  challenge(err: ApiAuthError): string;
};

/** Far above any token issued here (~900 bytes) or by Keycloak (~1.5-3 KB). */
const MAX_TOKEN_LENGTH = 8192;
/** RFC 6750 §2.1 b64token. */
const AUTHORIZATION = /^(Bearer|DPoP) +([A-Za-z0-9\-._~+/]+=*)$/i;
const JKT = /^[A-Za-z0-9_-]{43}$/;
/** Claims only ID tokens carry (OIDC Core §2, §3.1.3.6, §3.3.2.11; FAPI `s_hash`). */
const ID_TOKEN_CLAIMS = ['nonce', 'at_hash', 'c_hash', 's_hash'];

function claimAt(payload: Record<string, unknown>, dotted: string): unknown {
  let cur: unknown = payload;
  for (const part of dotted.split('.')) {
    if (!cur || typeof cur !== 'object' || Array.isArray(cur)) return undefined;
    if (!Object.hasOwn(cur, part)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** `typ` compared as RFC 7515 §4.1.9 says: case-insensitive, `application/` optional. */
function normaliseTyp(typ: unknown): string | undefined {
  if (typeof typ !== 'string') return undefined;
  const t = typ.toLowerCase();
  return t.startsWith('application/') ? t.slice('application/'.length) : t;
}

export function createApiTokenVerifier(opts: ApiTokenVerifierOptions): ApiTokenVerifier {
  const kind = opts.kind ?? 'embedded';
  const audience = opts.audience ?? API_AUDIENCE;
  const algorithms = checkAsymmetricAlgorithms(opts.algorithms ?? ['ES256'], 'access token algorithms');
  const leeway = opts.clockToleranceSeconds ?? 10;
  const now = opts.now ?? (() => Date.now() / 1000);
  if (!Number.isFinite(leeway) || leeway < 0) throw new TypeError('clockToleranceSeconds must be >= 0');
  if (opts.acceptJwtTyp && kind !== 'external')
    throw new TypeError('acceptJwtTyp is for external identity providers only');
  if (kind === 'external' && !opts.claims) throw new TypeError('an external IdP needs a claims mapping');
  if (opts.dpop) checkAsymmetricAlgorithms(opts.dpop.algorithms, 'DPoP proof algorithms');
  if (opts.requireDpop && !opts.dpop) throw new TypeError('requireDpop needs the dpop options');
  if (opts.dpop?.requireNonce && !opts.dpop.nonces) throw new TypeError('requireNonce needs a nonce secret');
  const publicBase = opts.dpop ? new URL(opts.dpop.publicUrl) : undefined;
  if (publicBase && publicBase.protocol !== 'https:') throw new TypeError('dpop.publicUrl must be https');

  let getKey: JWTVerifyGetKey;
  if (opts.jwks && opts.remote) throw new TypeError('give jwks or remote, not both');
  if (opts.remote) {
    const r = opts.remote;
    getKey = createRemoteJWKSet(new URL(r.jwksUri), {
      ...(r.timeoutMs !== undefined ? { timeoutDuration: r.timeoutMs } : {}),
      ...(r.cacheMaxAgeMs !== undefined ? { cacheMaxAge: r.cacheMaxAgeMs } : {}),
      ...(r.cooldownMs !== undefined ? { cooldownDuration: r.cooldownMs } : {}),
      ...(r.fetch ? { [customFetch]: r.fetch } : {}),
    });
  } else if (opts.jwks) {
    getKey = typeof opts.jwks === 'function' ? opts.jwks : createLocalJWKSet(opts.jwks);
  } else {
    throw new TypeError('jwks or remote is required');
  }

  const accepted = new Set(opts.acceptJwtTyp ? ['at+jwt', 'jwt'] : ['at+jwt']);
  const challengeOptions: ChallengeOptions = {
    realm: opts.realm ?? 'smart-home',
    dpopAlgorithms: opts.dpop?.algorithms ?? ['ES256'],
    bearer: !opts.requireDpop,
  };

  function roleOf(payload: Record<string, unknown>): Role {
    if (kind === 'embedded') {
      const role = payload[ROLE_CLAIM];
      if (role === 'resident' || role === 'operator') return role;
      throw invalidToken(`claim:${ROLE_CLAIM}`);
    }
    const m = opts.claims!;
    const raw = claimAt(payload, m.rolesClaim);
    const roles =
      typeof raw === 'string'
        ? raw.split(' ')
        : Array.isArray(raw)
          ? raw.filter((x): x is string => typeof x === 'string')
          : [];
    // Operator wins over resident: one person holding both gets the stronger role only on /admin/v1,
    // and the hook then refuses them on /api/v1 (roles do not mix within one token).
    if (roles.includes(m.operatorRole)) return 'operator';
    if (roles.includes(m.residentRole)) return 'resident';
    throw invalidToken('claim:roles', 'the access token names no role of this API');
  }

  const cacheTtl = opts.verifiedCache?.ttlSeconds ?? 0;
  const cacheMax = opts.verifiedCache?.max ?? 0;
  if (!(cacheTtl >= 0 && cacheMax >= 0)) throw new TypeError('verifiedCache needs ttlSeconds, max >= 0');
  /** Verified tokens by their exact text, oldest first, each with the time (now()) it ends. */
  const verified = new Map<string, { token: VerifiedApiToken; until: number }>();

  async function verifyAccessToken(token: string): Promise<VerifiedApiToken> {
    if (cacheTtl === 0 || cacheMax === 0) return verifyInFull(token);
    const hit = verified.get(token);
    if (hit) {
      if (now() < hit.until) return hit.token;
      verified.delete(token);
    }
    const t = await verifyInFull(token);
    if (verified.size >= cacheMax) verified.delete(verified.keys().next().value!);
    // jose refuses once exp <= now − leeway: the entry ends by then, and after ttl in any case.
    verified.set(token, { token: t, until: Math.min(t.exp + leeway, now() + cacheTtl) });
    return t;
  }

  async function verifyInFull(token: string): Promise<VerifiedApiToken> {
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH)
      throw invalidToken('length');
    let payload: Record<string, unknown>;
    let typ: string | undefined;
    try {
      const res = await jwtVerify(token, getKey, {
        algorithms,
        issuer: opts.issuer,
        audience,
        clockTolerance: leeway,
        currentDate: new Date(now() * 1000),
        requiredClaims: ['iss', 'aud', 'sub', 'exp', 'iat', 'jti'],
      });
      payload = res.payload as Record<string, unknown>;
      typ = normaliseTyp(res.protectedHeader.typ);
    } catch (err) {
      const e = err as { code?: unknown; claim?: unknown };
      const code = typeof e.code === 'string' ? e.code : 'ERR_UNKNOWN';
      if (code === 'ERR_JWT_EXPIRED') throw invalidToken(code, 'the access token has expired');
      // Key-set fetch failures (timeout, IdP down) are refusals too: fail closed, log the reason.
      throw invalidToken(typeof e.claim === 'string' ? `${code}:${e.claim}` : code);
    }
    // RFC 9068 §4: typ at+jwt keeps other JWTs of the same issuer (ID tokens, logout tokens) out.
    if (typ === undefined || !accepted.has(typ)) throw invalidToken('header:typ');
    // An ID token is not an access token (RFC 9068 §4, RFC 8725 §3.11), whatever its typ says.
    for (const c of ID_TOKEN_CLAIMS) if (Object.hasOwn(payload, c)) throw invalidToken(`claim:${c}`);
    if (payload['typ'] !== undefined && payload['typ'] !== 'Bearer') throw invalidToken('claim:typ');
    const iat = payload['iat'] as number;
    if (iat > now() + leeway) throw invalidToken('claim:iat', 'the access token is issued in the future');

    const subjectRaw = kind === 'external' ? claimAt(payload, opts.claims!.subjectClaim) : payload['sub'];
    if (typeof subjectRaw !== 'string' || subjectRaw.length === 0 || subjectRaw.length > 255)
      throw invalidToken('claim:sub');
    const jti = payload['jti'];
    if (typeof jti !== 'string' || jti.length === 0) throw invalidToken('claim:jti');
    const clientIdRaw = payload['client_id'] ?? (kind === 'external' ? payload['azp'] : undefined);
    if (clientIdRaw !== undefined && typeof clientIdRaw !== 'string') throw invalidToken('claim:client_id');
    // RFC 9068 §2.2 makes client_id required; our AS always sets it.
    if (kind === 'embedded' && clientIdRaw === undefined) throw invalidToken('claim:client_id');
    const scope = payload['scope'];
    if (scope !== undefined && typeof scope !== 'string') throw invalidToken('claim:scope');

    let jkt: string | undefined;
    const cnf = payload['cnf'];
    if (cnf !== undefined) {
      // Only DPoP binding can be checked here; a token bound any other way (mTLS x5t#S256 on this
      // listener, which asks for no client certificate) must not degrade to a bearer token.
      if (!cnf || typeof cnf !== 'object' || Array.isArray(cnf)) throw invalidToken('claim:cnf');
      const c = cnf as Record<string, unknown>;
      if (Object.keys(c).some((k) => k !== 'jkt')) throw invalidToken('claim:cnf');
      if (typeof c['jkt'] !== 'string' || !JKT.test(c['jkt'])) throw invalidToken('claim:cnf.jkt');
      jkt = c['jkt'];
    }
    const gid = kind === 'embedded' ? payload[GRANT_CLAIM] : undefined;
    if (gid !== undefined && (typeof gid !== 'string' || gid.length === 0 || gid.length > 255))
      throw invalidToken(`claim:${GRANT_CLAIM}`);
    return {
      role: roleOf(payload),
      subject: subjectRaw,
      scopes: new Set(typeof scope === 'string' ? scope.split(' ').filter(Boolean) : []),
      clientId: clientIdRaw,
      jkt,
      exp: payload['exp'] as number,
      jti,
      grantId: gid,
    };
  }

  const revoked = () => invalidToken('grant:revoked', 'the sign-in this access token belongs to was revoked');

  async function principalOf(t: VerifiedApiToken): Promise<Principal> {
    if (t.role === 'operator') {
      // Both look-ups at once (each its own round trip); an inactive operator is named before a revoked grant.
      const [active, revokedGrant] = await Promise.all([
        opts.operatorActive ? opts.operatorActive(t.subject) : true,
        t.grantId === undefined
          ? undefined
          : opts.db.one(
              sql`select 1 as r from revoked_grants where grant_id = ${t.grantId}`.named('api_grant_revoked'),
            ),
      ]);
      if (!active)
        throw invalidToken('subject:operator-inactive', 'the access token names no active operator');
      if (revokedGrant) throw revoked();
      return {
        kind: 'operator',
        operatorId: t.subject,
        subject: t.subject,
        scopes: t.scopes,
        clientId: t.clientId,
      };
    }
    let row: { id: string } | undefined;
    if (kind === 'embedded') {
      // A non-UUID subject cannot be a resident id (and must not reach a uuid cast).
      if (!isUuid(t.subject)) throw invalidToken('subject:format');
      // Prepared once per connection: every resident API request runs it.
      // One round trip: the resident, and whether the token's grant was revoked.
      const found = await opts.db.one<{ id: string; revoked: boolean }>(
        sql`select r.id, exists (select 1 from revoked_grants g where g.grant_id = ${t.grantId ?? ''}) as revoked
          from residents r where r.id = ${t.subject}`.named('api_resident_by_id_v2'),
      );
      if (found?.revoked) throw revoked();
      row = found;
    } else {
      row = await opts.db.one<{ id: string }>(
        sql`select id from residents where external_subject = ${t.subject}`.named('api_resident_by_subject'),
      );
    }
    // The token outlives the resident (removed from the registry, or never linked): refused at once.
    if (!row) throw invalidToken('subject:unknown', 'the access token names no resident');
    return {
      kind: 'resident',
      residentId: row.id,
      subject: t.subject,
      scopes: t.scopes,
      clientId: t.clientId,
    };
  }

  function headerValues(v: string | string[] | undefined): string[] {
    if (v === undefined) return [];
    return Array.isArray(v) ? v : [v];
  }

  async function authenticate(req: AuthRequest): Promise<Principal> {
    const authorization = req.headers.authorization;
    if (authorization === undefined || authorization === '')
      throw new ApiAuthError('missing_token', 'an access token is required');
    const m = AUTHORIZATION.exec(authorization);
    if (!m) throw invalidToken('authorization:format', 'the Authorization header is not valid');
    const scheme = m[1]!.toLowerCase() === 'dpop' ? 'DPoP' : 'Bearer';
    const token = m[2]!;
    try {
      const t = await verifyAccessToken(token);
      if (scheme === 'Bearer') {
        // RFC 9449 §7.1: a DPoP-bound token is never accepted as a bearer token.
        if (t.jkt !== undefined)
          throw invalidToken('scheme:bearer-for-dpop', 'the access token is DPoP-bound: use the DPoP scheme');
        if (opts.requireDpop)
          throw invalidToken('scheme:bearer', 'only DPoP-bound access tokens are accepted');
      } else {
        if (t.jkt === undefined)
          throw invalidToken('scheme:dpop-for-bearer', 'the access token is not DPoP-bound');
        if (!opts.dpop || !publicBase) throw invalidToken('dpop:off', 'DPoP is not enabled here');
        // Origin-form targets only: an absolute-form target would let the client choose the htu.
        if (!req.url.startsWith('/')) throw invalidToken('request:target');
        const path = req.url.split('?')[0]!.split('#')[0]!;
        await verifyDpopProof(opts.dpop, {
          proofs: headerValues(req.headers.dpop),
          method: req.method,
          url: `${publicBase.origin}${publicBase.pathname.replace(/\/$/, '')}${path}`,
          accessToken: token,
          jkt: t.jkt,
        });
      }
      return await principalOf(t);
    } catch (err) {
      if (err instanceof ApiAuthError) err.scheme = scheme;
      throw err;
    }
  }

  return {
    issuer: opts.issuer,
    kind,
    verifyAccessToken,
    authenticate,
    challenge: (err) => challenge(err, challengeOptions),
  };
}
