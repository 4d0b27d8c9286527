import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { JWK } from 'jose';
import type { Config } from '../config/config.ts';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import type { Db } from '../db/db.ts';
import { ensureJwkFile, loadSigningKey } from '../keys/service-keys.ts';
import { createPeopleAuthorizationServer, type PeopleAuthorizationServer } from './authorization-server.ts';
import { loadOAuthClientsFile, type OAuthClientSpec } from './clients.ts';
import { csrfSecretFrom, interactionRoutes } from './interactions.ts';
import {
  createConsoleOtpSender,
  createWebhookOtpSender,
  inBackground,
  type OtpSender,
} from './otp-sender.ts';
import { purgeExpiredOidcModels } from './pg-adapter.ts';
import { ResidentOtp } from './resident-otp.ts';
import { purgeSendLimits } from './send-limits.ts';

export class IdentityConfigError extends Error {
  readonly code = 'ERR_IDENTITY_CONFIG';
}

type Logger = {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
};

export type Identity = {
  /** `iss` of resident and operator tokens: the public listener's external URL. */
  issuer: string;
  /** The public signing keys of those tokens (served at /oauth/jwks), for the resource-server check. */
  jwks: { keys: JWK[] };
  authorizationServer: PeopleAuthorizationServer;
  /**
   * The DPoP nonce secret of the token endpoint (configuration, the same on every instance): the API's
   * access-token check derives its nonces from it too, so a nonce from either side is good at both.
   */
  dpopNonceSecret: Buffer;
  /** Registers /oauth/* (provider), /.well-known/* discovery and the sign-in pages on the public listener. */
  mount(app: FastifyInstance): Promise<void>;
  /** Housekeeping: expired provider state, sign-in codes, stale failure and send counters. */
  purge(): Promise<number>;
};

/** The issuer URL: SMART_HOME_PUBLIC_URL, or https://localhost:<port> outside production. */
export function publicIssuer(config: Config): string {
  if (config.public.url) return config.public.url.replace(/\/+$/, '');
  if (config.env === 'production') {
    throw new IdentityConfigError('SMART_HOME_PUBLIC_URL must be set in production');
  }
  return `https://localhost:${config.public.port}`;
}

/** Development: the people's token key and the cookie / DPoP nonce secrets, created on first start. */
export async function ensureIdentityMaterial(config: Config): Promise<string[]> {
  if (config.env === 'production') return [];
  const created: string[] = [];
  if (await ensureJwkFile(config.identity.tokenKeyFile, 'ES256'))
    created.push(`people token-signing key ${config.identity.tokenKeyFile}`);
  const file = config.identity.secretsFile;
  if (!existsSync(file)) {
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    const secrets = {
      cookieKeys: [randomBytes(32).toString('base64url')],
      dpopNonceSecret: randomBytes(32).toString('base64url'),
    };
    await writeFile(tmp, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    await rename(tmp, file);
    created.push(`sign-in cookie keys and DPoP nonce secret ${file}`);
  }
  return created;
}

async function loadSecrets(config: Config): Promise<{ cookieKeys: string[]; dpopNonceSecret: Buffer }> {
  const { identity } = config;
  let cookieKeys = identity.cookieKeys;
  let nonce = identity.dpopNonceSecret;
  if (cookieKeys.length === 0 || !nonce) {
    if (config.env === 'production') {
      throw new IdentityConfigError(
        'SMART_HOME_IDENTITY_COOKIE_KEYS and SMART_HOME_DPOP_NONCE_SECRET must be set in production',
      );
    }
    let file: { cookieKeys?: unknown; dpopNonceSecret?: unknown };
    try {
      file = JSON.parse(await readFile(identity.secretsFile, 'utf8'));
    } catch (err) {
      throw new IdentityConfigError(
        `${identity.secretsFile}: cannot read (${(err as Error).message.split('\n')[0]})`,
      );
    }
    if (cookieKeys.length === 0 && Array.isArray(file.cookieKeys)) cookieKeys = file.cookieKeys as string[];
    if (!nonce && typeof file.dpopNonceSecret === 'string') nonce = file.dpopNonceSecret;
  }
  if (cookieKeys.length === 0 || !cookieKeys.every((k) => typeof k === 'string' && k.length >= 32)) {
    throw new IdentityConfigError('SMART_HOME_IDENTITY_COOKIE_KEYS: each key must be at least 32 characters');
  }
  const secret = Buffer.from(nonce ?? '', 'base64url');
  if (secret.length !== 32) {
    throw new IdentityConfigError('SMART_HOME_DPOP_NONCE_SECRET must be base64url of exactly 32 bytes');
  }
  return { cookieKeys: [...cookieKeys], dpopNonceSecret: secret };
}

/** The code sender configuration names; production refuses the console sender. */
export async function otpSenderFromConfig(config: Config): Promise<OtpSender> {
  const id = config.identity;
  if (id.otpSender === 'console') {
    if (config.env === 'production') {
      throw new IdentityConfigError(
        'SMART_HOME_OTP_SENDER=console prints sign-in codes on stdout; refused in production (set webhook and SMART_HOME_OTP_WEBHOOK_URL)',
      );
    }
    return createConsoleOtpSender();
  }
  if (!id.otpWebhookUrl)
    throw new IdentityConfigError('SMART_HOME_OTP_SENDER=webhook needs SMART_HOME_OTP_WEBHOOK_URL');
  const read = async (file: string | undefined, what: string) => {
    if (!file) return undefined;
    try {
      return (await readFile(file, 'utf8')).trim();
    } catch {
      throw new IdentityConfigError(`cannot read ${what} at ${file}`);
    }
  };
  try {
    return createWebhookOtpSender({
      url: id.otpWebhookUrl,
      token: await read(id.otpWebhookTokenFile, 'SMART_HOME_OTP_WEBHOOK_TOKEN_FILE'),
      ca: await read(id.otpWebhookCaFile, 'SMART_HOME_OTP_WEBHOOK_CA_FILE'),
      timeoutMs: id.otpWebhookTimeoutMs,
    });
  } catch (err) {
    if (err instanceof IdentityConfigError) throw err;
    throw new IdentityConfigError(`SMART_HOME_OTP_WEBHOOK_URL: ${(err as Error).message}`);
  }
}

/**
 * The people's authorization server with its sign-in pages, built from configuration. `src/app.ts`
 * calls `mount(publicApp)`; the access-token check (src/api-auth/) takes `issuer` and `jwks`.
 */
export async function createIdentity(deps: {
  config: Config;
  db: Db;
  cipher: FieldCipher;
  logger?: Logger;
  /** Default: the console sender (development); an SMS gateway implements OtpSender. */
  otpSender?: OtpSender;
  /** Default: from SMART_HOME_OAUTH_CLIENTS_FILE. */
  clients?: OAuthClientSpec[];
}): Promise<Identity> {
  const { config, db, cipher } = deps;
  const id = config.identity;
  const issuer = publicIssuer(config);
  if (
    config.env === 'production' &&
    path.resolve(id.tokenKeyFile).startsWith(path.resolve(config.dataDir) + path.sep)
  ) {
    throw new IdentityConfigError(
      'SMART_HOME_IDENTITY_KEY_FILE points into DATA_DIR, where development keys live; refused in production',
    );
  }
  const signingKey = (await loadSigningKey(id.tokenKeyFile, 'ES256')).privateJwk;
  const secrets = await loadSecrets(config);
  const clients = deps.clients ?? (id.clientsFile ? loadOAuthClientsFile(id.clientsFile) : []);
  if (clients.length === 0)
    deps.logger?.warn({}, 'no OAuth clients for residents and operators are configured');
  const otpSender = deps.otpSender ?? (await otpSenderFromConfig(config));

  const authorizationServer = createPeopleAuthorizationServer({
    issuer,
    signingKey,
    db,
    clients,
    cookieKeys: secrets.cookieKeys,
    dpopNonceSecret: secrets.dpopNonceSecret,
    ttl: {
      accessTokenSeconds: id.accessTokenTtlSeconds,
      authorizationCodeSeconds: id.authorizationCodeTtlSeconds,
      refreshIdleSeconds: id.refreshIdleSeconds,
      refreshAbsoluteSeconds: id.refreshAbsoluteSeconds,
      sessionSeconds: id.sessionTtlSeconds,
      interactionSeconds: id.interactionTtlSeconds,
    },
    ...(deps.logger ? { logger: deps.logger } : {}),
  });
  // The provider reads X-Forwarded-* only behind a trusted TLS offloader; none is configured for the
  // public listener, so it serves TLS itself and trusts no forwarded header.
  authorizationServer.provider.proxy = false;

  const sendPolicy = {
    windowSeconds: id.otpSendWindowSeconds,
    perPhone: id.otpSendMaxPerPhone,
    phoneIntervalSeconds: id.otpSendIntervalSeconds,
    perAddress: id.otpSendMaxPerAddress,
  };
  const otp = new ResidentOtp({
    db,
    cipher,
    // In the background: the page answers alike whether or not a code went out.
    sender: inBackground(otpSender, (err) =>
      deps.logger?.error({ err: { message: (err as Error).message } }, 'a sign-in code was not delivered'),
    ),
    policy: {
      ttlSeconds: id.otpTtlSeconds,
      digits: id.otpDigits,
      maxFailures: id.otpMaxAttempts,
      lockoutSeconds: id.otpLockoutSeconds,
      sends: sendPolicy,
    },
  });

  return {
    issuer,
    jwks: authorizationServer.jwks,
    authorizationServer,
    dpopNonceSecret: secrets.dpopNonceSecret,
    async mount(app) {
      authorizationServer.mount(app);
      await app.register(
        interactionRoutes({
          provider: authorizationServer.provider,
          db,
          cipher,
          otp,
          operatorPolicy: { maxFailures: id.operatorMaxFailures, lockoutSeconds: id.operatorLockoutSeconds },
          roleOf: authorizationServer.roleOf,
          csrfSecret: csrfSecretFrom(secrets.cookieKeys[0]!),
        }),
      );
    },
    async purge() {
      await purgeSendLimits(db, sendPolicy);
      return purgeExpiredOidcModels(db, Math.max(id.otpLockoutSeconds, id.operatorLockoutSeconds));
    },
  };
}
