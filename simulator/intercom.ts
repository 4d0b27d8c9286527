/**
 * The intercom partner's side of contract §7, as a vendor would implement it: its own HTTPS server
 * (its own server CA) that requires a client certificate chaining to smart-home's service CA, its own
 * OAuth2 token endpoint (client credentials, the client authenticated by that certificate, scope
 * `doors:open`, tokens bound to the certificate's thumbprint), and
 * `POST /v1/doors/{doorId}/open` checking smart-home's RFC 9421 signature (registered public key,
 * Content-Digest, `created` window, nonce replay), `expiresAt` and idempotency by `commandId`, answering
 * with responses signed by its own Ed25519 key.
 *
 * Per-door behaviour can be switched (latency, offline, reject, HTTP 500, slow beyond the caller's
 * timeout, a bad or missing response signature, another commandId in the answer) for tests and the
 * demo. Use as a library: `startIntercomSimulator(...)`, then `stop()`.
 *
 * It keeps its own journal of the doors it opened (contract §8: each command it answered, as a §8.3
 * projection) and serves it under `/v1/journal` with scope `audit:exchange` (simulator/journal-server.ts):
 * the log's checkpoint and tiles, witnessing of smart-home's log, reconciliation and projections.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { JWK } from 'jose';
import { contentDigest } from '../src/http-signatures/content-digest.ts';
import { MemoryReplayCache } from '../src/http-signatures/replay-cache.ts';
import {
  REQUEST_COMPONENTS_WITH_BODY,
  REQUEST_COMPONENTS_WITHOUT_BODY,
  signResponse,
  UNBOUND_RESPONSE_COMPONENTS,
  verifyRequest,
} from '../src/http-signatures/rfc9421.ts';
import { DoorCommandBody } from '../src/outbound/door-open.ts';
import { certThumbprintS256, createCa, issueServerCert, type KeyPairPem } from '../src/pki/certificates.ts';
import { doorOpenProjection } from '../src/reconcile/projection.ts';
import type { ProvisioningDocument } from '../src/registry/document.ts';
import { EVENTS_READ_SCOPE, eventsRoutes, type PartnerEventsEndpoint } from './events-server.ts';
import { journalVerifierKey, type PartnerIdentity, witnessVerifierKey } from './identity.ts';
import { SimulatorJournal } from './journal.ts';
import { type JournalAnswer, journalRoutes } from './journal-server.ts';
import { SimulatorWitness } from './witness.ts';

export type DoorMode =
  /** Opens (after `latencyMs`). */
  | 'normal'
  /** Answers `device_offline`. */
  | 'offline'
  /** Answers `rejected`. */
  | 'reject'
  /** Answers HTTP 500 (nothing recorded, so a later retry may succeed). */
  | 'error'
  /** Holds the request for `slowMs` before opening: beyond the caller's timeout. */
  | 'slow'
  /** Signs the answer with a key smart-home does not know under the registered kid. */
  | 'bad-signature'
  /** Sends the answer without Signature fields. */
  | 'unsigned'
  /** Answers about another commandId. */
  | 'wrong-command-id'
  /** Refuses with 429 and `retryAfter` before acting (a partner's own rate limit). */
  | 'throttle'
  /** Refuses with 503 and `retryAfter` before acting (a partner in maintenance). */
  | 'unavailable';

export interface DoorBehaviour {
  mode: DoorMode;
  /** Added before answering, in every mode. */
  latencyMs: number;
  /** How long `slow` holds a request. */
  slowMs: number;
  /** The Retry-After of `throttle` and `unavailable` (RFC 9110 §10.2.3: seconds or an HTTP-date). */
  retryAfter: string;
  /**
   * The next n requests are acted on, then their connection is cut before the answer (the caller
   * sees a connection error and should send the same command again).
   */
  dropAnswers: number;
}

export interface DoorOpening {
  doorId: string;
  commandId: string;
  subject: string;
  at: string;
}

/** A refused request, as a test reads it (no bodies, no tokens). */
export interface Refusal {
  path: string;
  status: number;
  problem: string;
  /** The RFC 9421 verifier's code when the signature was at fault. */
  signatureCode?: string;
}

export interface IntercomOptions {
  /** The partner identity: its code and Ed25519 response-signing key (registered at smart-home). */
  identity: PartnerIdentity;
  /** PEM of smart-home's service CA: the only CA a client certificate may chain to. */
  clientCa: string;
  /** smart-home's public signing JWK (what `smart-home keys` prints), pinned with its kid. */
  smartHomeKey: JWK;
  /** The client_id this partner gave smart-home. */
  clientId: string;
  /** Thumbprints (RFC 8705 x5t#S256) of smart-home's client certificates; default: any that chains. */
  clientThumbprints?: string[];
  /** The partner's own door ids. */
  doors: string[];
  /** The server's CA (certificate + key); default: a new one. */
  serverCa?: KeyPairPem;
  host?: string;
  port?: number;
  /** Lifetime of issued tokens, seconds (default 600). */
  tokenTtlSeconds?: number;
  /** Added to this partner's clock, ms (a partner whose clock runs ahead or behind). */
  clockSkewMs?: number;
  /** The partner's journal (shared with its other simulators); default: a new one of `identity`. */
  journal?: SimulatorJournal;
  /**
   * smart-home's journal verifier key strings (`runtime.journalLog.signer.verifierKey`): the logs this
   * partner witnesses (contract §8.2). More can be trusted later through `witness.trust`.
   */
  witnessedLogKeys?: string[];
  /** Negentropy frame size limit of the journal's reconcile answers (0: unlimited, the default). */
  reconcileFrameBytes?: number;
  /** The partner's event log, served for smart-home's backfill at `GET /v1/events` (contract §9). */
  events?: PartnerEventsEndpoint;
}

export interface IntercomSimulator {
  /** `https://127.0.0.1:<port>`: the base URL registered for the partner. */
  readonly url: string;
  /** PEM of the server's CA: what smart-home pins for this partner. */
  readonly serverCaPem: string;
  /** The CA pair (to start another simulator with the same CA). */
  readonly serverCa: KeyPairPem;
  readonly clientId: string;
  /** Doors actually opened, in order: a command acted on appears once. */
  readonly openings: readonly DoorOpening[];
  readonly refusals: readonly Refusal[];
  /** The partner's journal: each door command answered (not the 500s), with its status. */
  readonly journal: SimulatorJournal;
  /** The partner as a witness of smart-home's journal log. */
  readonly witness: SimulatorWitness;
  /** Tokens issued by the token endpoint. */
  readonly tokensIssued: number;
  /** Door-open requests that reached the route (before any check). */
  readonly doorRequests: number;
  setDoor(doorId: string, behaviour: Partial<DoorBehaviour>): void;
  setClockSkew(ms: number): void;
  /** Forgets every issued token (a partner-side revocation). */
  revokeTokens(): void;
  stop(): Promise<void>;
}

interface IssuedToken {
  clientId: string;
  thumbprint: string;
  scope: string;
  expiresAt: number;
}

interface Answer {
  status: number;
  body?: unknown;
  /** Bytes sent as they are (with `contentType`) instead of a JSON body. */
  raw?: Buffer;
  contentType?: string;
  headers?: Record<string, string>;
}

const checkCommand = TypeCompiler.Compile(DoorCommandBody);
const DOOR_SCOPE = 'doors:open';
/** Contract §8: smart-home reads, witnesses and reconciles the partner's journal under this scope. */
const AUDIT_SCOPE = 'audit:exchange';
const GRANTABLE_SCOPES = new Set([DOOR_SCOPE, AUDIT_SCOPE, EVENTS_READ_SCOPE]);
/** Contract §7. */
const MAX_TTL_MS = 10_000;

const problem = (code: string, status: number, title: string): Answer => ({
  status,
  body: { type: `urn:smart-home:problem:${code}`, title, status },
});

export async function startIntercomSimulator(opts: IntercomOptions): Promise<IntercomSimulator> {
  const serverCa = opts.serverCa ?? (await createCa({ commonName: `${opts.identity.code} server CA` }));
  const serverCert = await issueServerCert(serverCa, {
    commonName: `${opts.identity.code} intercom API`,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1', '::1'],
  });
  const smartHomeKid = opts.smartHomeKey.kid;
  if (!smartHomeKid) throw new Error('smart-home key needs its kid');
  const { d: _d, ...smartHomePublic } = opts.smartHomeKey;
  const smartHomeKey = createPublicKey({ key: smartHomePublic as never, format: 'jwk' });
  const replayCache = new MemoryReplayCache();
  const rogueKey = generateKeyPairSync('ed25519').privateKey;
  const tokenTtl = opts.tokenTtlSeconds ?? 600;
  let clockSkew = opts.clockSkewMs ?? 0;
  const now = () => Date.now() + clockSkew;
  const journal = opts.journal ?? new SimulatorJournal({ identity: opts.identity, now });
  const witness = new SimulatorWitness({ identity: opts.identity, trust: opts.witnessedLogKeys ?? [], now });

  const tokens = new Map<string, IssuedToken>();
  const doors = new Map<string, DoorBehaviour>(
    opts.doors.map((d) => [
      d,
      { mode: 'normal', latencyMs: 0, slowMs: 30_000, retryAfter: '1', dropAnswers: 0 },
    ]),
  );
  /** Commands by id, for idempotency; forgotten once they can no longer arrive validly (see sweep). */
  const commands = new Map<string, { doorId: string; expiresAt: number; answer: Promise<Answer> }>();
  /**
   * A command can only be acted on before its expiresAt, and a copy arriving later is refused by its
   * signature's `created` window anyway (60 s): an hour later its record serves no one. Map order is
   * insertion order, close to expiry order, so sweeping from the front is cheap.
   */
  const sweep = () => {
    const horizon = now() - 3600_000;
    for (const [id, c] of commands) {
      if (c.expiresAt > horizon) break;
      commands.delete(id);
    }
  };
  const openings: DoorOpening[] = [];
  const refusals: Refusal[] = [];
  const stopping = new AbortController();
  const state = { tokensIssued: 0, doorRequests: 0 };

  const wait = (ms: number) =>
    new Promise<void>((resolve) => {
      if (ms <= 0) return resolve();
      const done = () => {
        clearTimeout(t);
        stopping.signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      stopping.signal.addEventListener('abort', done, { once: true });
    });

  const app = Fastify({
    https: {
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      ca: opts.clientCa,
      // Contract §1 (mirrored): no client certificate, or one from another CA, fails the handshake.
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.2',
    },
    forceCloseConnections: true,
    bodyLimit: 16 * 1024,
  }) as unknown as FastifyInstance;

  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) =>
    done(null, new URLSearchParams(body as string)),
  );

  const peerThumbprint = (req: FastifyRequest): string | undefined => {
    const cert = (req.raw.socket as TLSSocket).getPeerX509Certificate?.();
    return cert ? certThumbprintS256(cert.raw) : undefined;
  };

  const clientAllowed = (thumbprint: string | undefined): thumbprint is string =>
    thumbprint !== undefined && (!opts.clientThumbprints || opts.clientThumbprints.includes(thumbprint));

  /** Every answer is signed by the partner's key, bound to the request's signature when it has one. */
  const sendSigned = (
    req: FastifyRequest,
    reply: FastifyReply,
    answer: Answer,
    mode: DoorMode = 'normal',
  ) => {
    const bytes = answer.raw ?? Buffer.from(JSON.stringify(answer.body));
    const digest = contentDigest(bytes);
    reply
      .code(answer.status)
      .header('content-type', answer.contentType ?? 'application/json')
      .header('content-digest', digest);
    for (const [k, v] of Object.entries(answer.headers ?? {})) reply.header(k, v);
    if (mode !== 'unsigned') {
      const signedRequest =
        typeof req.headers['signature'] === 'string' && typeof req.headers['signature-input'] === 'string';
      let sig: { 'signature-input': string; signature: string };
      const sign = (components?: readonly string[]) =>
        signResponse({
          status: answer.status,
          headers: { 'content-digest': digest },
          request: { headers: signedRequest ? (req.headers as Record<string, string>) : {} },
          privateKey: mode === 'bad-signature' ? rogueKey : opts.identity.signing.privateKey,
          keyid: opts.identity.signing.kid,
          ...(components ? { components } : {}),
        });
      try {
        sig = signedRequest ? sign() : sign(UNBOUND_RESPONSE_COMPONENTS);
      } catch {
        sig = sign(UNBOUND_RESPONSE_COMPONENTS);
      }
      reply.header('signature-input', sig['signature-input']).header('signature', sig.signature);
    }
    return reply.send(bytes);
  };

  const refuse = (req: FastifyRequest, reply: FastifyReply, answer: Answer, signatureCode?: string) => {
    refusals.push({
      path: req.url,
      status: answer.status,
      problem: (answer.body as { type?: string } | undefined)?.type?.split(':').at(-1) ?? '',
      ...(signatureCode ? { signatureCode } : {}),
    });
    return sendSigned(req, reply, answer);
  };

  // RFC 6749 §4.4 client credentials; RFC 8705 §2.1 tls_client_auth: the certificate is the credential.
  app.post('/oauth/token', async (req, reply) => {
    const form = req.body instanceof URLSearchParams ? req.body : new URLSearchParams();
    const oauthError = (status: number, error: string) => {
      refusals.push({ path: req.url, status, problem: error });
      return reply.code(status).header('cache-control', 'no-store').send({ error });
    };
    if (form.get('grant_type') !== 'client_credentials') return oauthError(400, 'unsupported_grant_type');
    const thumbprint = peerThumbprint(req);
    if (form.get('client_id') !== opts.clientId || !clientAllowed(thumbprint)) {
      return oauthError(401, 'invalid_client');
    }
    // RFC 6749 §3.3: a space-separated list; every scope asked for must be one we grant.
    const asked = (form.get('scope') ?? DOOR_SCOPE).split(' ');
    if (asked.some((s) => !GRANTABLE_SCOPES.has(s))) return oauthError(400, 'invalid_scope');
    const scope = [...new Set(asked)].join(' ');
    const token = randomBytes(32).toString('base64url');
    tokens.set(token, { clientId: opts.clientId, thumbprint, scope, expiresAt: now() + tokenTtl * 1000 });
    state.tokensIssued++;
    return reply
      .header('cache-control', 'no-store')
      .send({ access_token: token, token_type: 'Bearer', expires_in: tokenTtl, scope });
  });

  /** Token with `scope` bound to this connection's certificate, then smart-home's signature (§3). */
  const authorize = async (
    req: FastifyRequest,
    scope: string,
    raw: Buffer | undefined,
  ): Promise<(JournalAnswer & { signatureCode?: string }) | undefined> => {
    const auth = req.headers.authorization;
    const token = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
    const issued = token ? tokens.get(token) : undefined;
    if (
      !issued ||
      issued.expiresAt <= now() ||
      issued.thumbprint !== peerThumbprint(req) ||
      !issued.scope.split(' ').includes(scope)
    ) {
      return problem('invalid-token', 401, 'The access token is missing or not valid');
    }
    const verified = await verifyRequest({
      method: req.method,
      targetUri: `https://${req.headers.host ?? ''}${req.url}`,
      headers: req.headers as Record<string, string | undefined>,
      body: raw ?? Buffer.alloc(0),
      requiredComponents:
        raw && raw.length > 0 ? REQUEST_COMPONENTS_WITH_BODY : REQUEST_COMPONENTS_WITHOUT_BODY,
      resolveKey: (kid) => (kid === smartHomeKid ? (smartHomeKey as KeyObject) : undefined),
      replayCache,
      now: Math.floor(now() / 1000),
    });
    if (!verified.ok) {
      return {
        ...problem('invalid-signature', 401, 'The request signature is missing or not valid'),
        signatureCode: verified.code,
      };
    }
    return undefined;
  };

  await app.register(
    journalRoutes({
      journal,
      witness,
      authorize,
      send: (req, reply, answer) => sendSigned(req, reply, answer),
      refuse: (req, reply, answer) =>
        refuse(req, reply, answer, (answer as { signatureCode?: string }).signatureCode),
      frameSizeLimit: opts.reconcileFrameBytes ?? 0,
    }),
    { prefix: '/v1/journal' },
  );
  if (opts.events) {
    const endpoint = opts.events;
    await app.register(
      eventsRoutes({
        endpoint,
        authorize,
        send: (req, reply, answer) => sendSigned(req, reply, answer),
        refuse: (req, reply, answer) =>
          refuse(req, reply, answer, (answer as { signatureCode?: string }).signatureCode),
        stopping: stopping.signal,
      }),
      { prefix: '/v1/events' },
    );
  }

  app.post<{ Params: { doorId: string } }>('/v1/doors/:doorId/open', async (req, reply) => {
    state.doorRequests++;
    // 0. The partner's own front door: throttled or unavailable before anything is checked or acted on.
    const front = doors.get(req.params.doorId);
    if (front?.mode === 'throttle' || front?.mode === 'unavailable') {
      const [status, code, title] =
        front.mode === 'throttle'
          ? [429, 'rate-limited', 'Too many requests']
          : [503, 'unavailable', 'Service unavailable'];
      return refuse(req, reply, {
        ...problem(code, status, title),
        headers: { 'retry-after': front.retryAfter },
      });
    }
    // 1. The token: known, unexpired, with the scope, bound to this connection's certificate.
    const auth = req.headers.authorization;
    const token = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
    const issued = token ? tokens.get(token) : undefined;
    const thumbprint = peerThumbprint(req);
    if (
      !issued ||
      issued.expiresAt <= now() ||
      issued.thumbprint !== thumbprint ||
      !issued.scope.split(' ').includes(DOOR_SCOPE)
    ) {
      return refuse(req, reply, problem('invalid-token', 401, 'The access token is missing or not valid'));
    }
    // 2. smart-home's signature (contract §3): pinned key, digest over the exact bytes, window, nonce.
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const verified = await verifyRequest({
      method: req.method,
      targetUri: `https://${req.headers.host ?? ''}${req.url}`,
      headers: req.headers as Record<string, string | undefined>,
      body: raw,
      requiredComponents: REQUEST_COMPONENTS_WITH_BODY,
      resolveKey: (kid) => (kid === smartHomeKid ? (smartHomeKey as KeyObject) : undefined),
      replayCache,
      now: Math.floor(now() / 1000),
    });
    if (!verified.ok) {
      return refuse(
        req,
        reply,
        problem('invalid-signature', 401, 'The request signature is missing or not valid'),
        verified.code,
      );
    }
    // 3. The command.
    let command: unknown;
    try {
      command = JSON.parse(raw.toString('utf8'));
    } catch {
      command = undefined;
    }
    if (!checkCommand.Check(command)) {
      return refuse(req, reply, problem('invalid-request', 400, 'The request is not valid'));
    }
    const requestedAt = Date.parse(command.requestedAt);
    const expiresAt = Date.parse(command.expiresAt);
    if (Number.isNaN(requestedAt) || Number.isNaN(expiresAt) || expiresAt - requestedAt > MAX_TTL_MS) {
      return refuse(req, reply, problem('invalid-request', 400, 'The request is not valid'));
    }
    const doorId = req.params.doorId;
    const behaviour = doors.get(doorId);
    if (!behaviour) return refuse(req, reply, problem('not-found', 404, 'Not found'));

    // 4. Idempotency: the same commandId is the same command, acted on once (contract §7).
    let entry = commands.get(command.commandId);
    if (entry && entry.doorId !== doorId) {
      return refuse(req, reply, problem('invalid-request', 400, 'The request is not valid'));
    }
    if (!entry) {
      const cmd = command;
      sweep();
      entry = {
        doorId,
        expiresAt,
        answer: execute(doorId, behaviour, cmd.commandId, cmd.subject, expiresAt),
      };
      commands.set(command.commandId, entry);
      // A 500 is not an answer to remember: the command may be sent again and then succeed.
      entry.answer.then((a) => {
        if (a.status >= 500 && commands.get(cmd.commandId) === entry) commands.delete(cmd.commandId);
      });
    }
    const answer = await entry.answer;
    if (behaviour.latencyMs > 0) await wait(behaviour.latencyMs);
    const current = doors.get(doorId);
    if (current && current.dropAnswers > 0) {
      current.dropAnswers--;
      reply.hijack();
      req.raw.socket.destroy();
      return;
    }
    if (behaviour.mode === 'wrong-command-id' && answer.status === 200) {
      return sendSigned(req, reply, {
        status: 200,
        body: { ...(answer.body as object), commandId: '0190f0f0-0000-7000-8000-000000000000' },
      });
    }
    return sendSigned(req, reply, answer, behaviour.mode);
  });

  /** Acts on a new command: never after its expiresAt (contract §7). */
  async function execute(
    doorId: string,
    behaviour: DoorBehaviour,
    commandId: string,
    subject: string,
    expiresAt: number,
  ): Promise<Answer> {
    /** Each status answered is one entry of the partner's journal (contract §8.3). */
    const answered = (status: string): Answer => {
      const t = now();
      journal.record(doorOpenProjection({ commandId, doorId, subject, status }), t);
      return { status: 200, body: { commandId, status, at: new Date(t).toISOString() } };
    };
    if (now() > expiresAt) return answered('expired');
    switch (behaviour.mode) {
      case 'error':
        return problem('internal', 500, 'Internal error');
      case 'offline':
        return answered('device_offline');
      case 'reject':
        return answered('rejected');
      case 'slow':
        await wait(behaviour.slowMs);
        break;
    }
    // The device acts only if the command is still valid once it gets to it.
    if (now() > expiresAt || stopping.signal.aborted) return answered('expired');
    const answer = answered('opened');
    openings.push({ doorId, commandId, subject, at: (answer.body as { at: string }).at });
    return answer;
  }

  await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 0 });
  const { port } = app.server.address() as { port: number };
  const host = opts.host ?? '127.0.0.1';
  return {
    url: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    serverCaPem: serverCa.certPem,
    serverCa,
    clientId: opts.clientId,
    openings,
    refusals,
    journal,
    witness,
    get tokensIssued() {
      return state.tokensIssued;
    },
    get doorRequests() {
      return state.doorRequests;
    },
    setDoor(doorId, behaviour) {
      const cur = doors.get(doorId);
      if (!cur) throw new Error(`unknown door ${doorId}`);
      doors.set(doorId, { ...cur, ...behaviour });
    },
    setClockSkew(ms) {
      clockSkew = ms;
    },
    revokeTokens() {
      tokens.clear();
    },
    async stop() {
      stopping.abort();
      await app.close();
      await replayCache.close();
    },
  };
}

/**
 * A partner's own HTTPS server with no doors: its token endpoint and its journal (contract §8) only —
 * what a barrier vendor runs so that smart-home can read, witness and reconcile its journal. Share
 * `journal` with the vendor's `PartnerClient` so the decisions it asks are journaled there.
 */
export function startPartnerJournalServer(
  opts: Omit<IntercomOptions, 'doors'> & { journal: SimulatorJournal },
): Promise<IntercomSimulator> {
  return startIntercomSimulator({ ...opts, doors: [] });
}

/**
 * What an intercom vendor receives from PropDevelopment at onboarding, read from a development data
 * directory (as `npm start` creates it): our service CA (its client certificates chain to it), the
 * thumbprint of our client certificate, and our public request-signing key.
 */
export async function smartHomeTrust(
  dataDir: string,
): Promise<Pick<IntercomOptions, 'clientCa' | 'smartHomeKey' | 'clientThumbprints'>> {
  const read = (...parts: string[]) => readFile(path.join(dataDir, ...parts), 'utf8');
  const { d: _d, ...smartHomeKey } = JSON.parse(await read('keys', 'response-signing.jwk')) as JWK;
  return {
    clientCa: await read('pki', 'service-ca.crt'),
    smartHomeKey,
    clientThumbprints: [certThumbprintS256(await read('pki', 'service-client.crt'))],
  };
}

type DocumentPartner = NonNullable<ProvisioningDocument['partners']>[number];

/** The partner's entry in a provisioning document for a running intercom simulator (contract §7). */
export function intercomPartnerEntry(
  sim: Pick<IntercomSimulator, 'url' | 'serverCaPem' | 'clientId'>,
  identity: PartnerIdentity,
  opts: { name?: string; complexes: string[]; networks: string[]; scopes?: DocumentPartner['scopes'] },
): DocumentPartner {
  return {
    code: identity.code,
    name: opts.name ?? `Intercom vendor ${identity.code}`,
    scopes: opts.scopes ?? ['events:write'],
    complexes: opts.complexes,
    networks: opts.networks,
    certificates: [identity.thumbprint],
    signingKeys: [identity.signing.publicJwk as DocumentPartner['signingKeys'][number]],
    encryptionKeys: [identity.encryption.publicJwk as DocumentPartner['encryptionKeys'][number]],
    baseUrl: sim.url,
    outbound: { serverCa: sim.serverCaPem, clientId: sim.clientId },
    ...partnerJournalKeys(identity),
  };
}

/** Contract §8.2: the partner's journal log key and witness key, as a provisioning document holds them. */
export function partnerJournalKeys(identity: PartnerIdentity): { logKey: string; witnessKey: string } {
  return { logKey: journalVerifierKey(identity), witnessKey: witnessVerifierKey(identity) };
}
