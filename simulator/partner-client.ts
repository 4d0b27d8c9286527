import { createPublicKey, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';
import { Agent, request } from 'undici';
import { importPartnerKeysFromJwe } from '../src/crypto/key-export.ts';
import { canonicalisePlate, plateToken } from '../src/crypto/plate.ts';
import { contentDigest } from '../src/http-signatures/content-digest.ts';
import { signRequest, UNBOUND_RESPONSE_COMPONENTS, verifyResponse } from '../src/http-signatures/rfc9421.ts';
import { barrierDecisionProjection } from '../src/reconcile/projection.ts';
import { uuidv7 } from '../src/util/uuid.ts';
import type { PartnerIdentity } from './identity.ts';
import type { SimulatorJournal } from './journal.ts';

export interface PartnerClientOptions {
  identity: PartnerIdentity;
  /** smart-home's partner listener, e.g. https://localhost:9443 */
  baseUrl: string;
  /** CA that signed smart-home's partner listener certificate (pinned). */
  serverCa: string;
  /** smart-home's response-signing public JWK (received at onboarding, thumbprint confirmed). */
  smartHomeKey?: JWK;
  connections?: number;
  /** Overrides the source address (tests of the allowlist). */
  localAddress?: string;
  /** Extra headers on every request (tests: a spoofed X-Forwarded-For). */
  extraHeaders?: Record<string, string>;
  /** The partner's journal: each barrier decision it got is recorded there (contract §8.3). */
  journal?: SimulatorJournal;
}

export interface SignedResponse<T = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
  rawBody: Buffer;
  /** True when smart-home's response signature and digest verified; undefined without a key. */
  signatureValid: boolean | undefined;
}

export interface BarrierReadOptions {
  direction?: 'entry' | 'exit';
  capturedAt?: Date;
  eventId?: string;
  /** OCR alternatives after the best read (up to 2 more). */
  alternatives?: string[];
  /** Key id to use (defaults to the newest imported). */
  kid?: string;
}

/**
 * The partner side of the contract, as a barrier vendor would implement it: mTLS with its own client
 * certificate, OAuth2 client credentials (tokens cached until shortly before expiry), RFC 9421
 * request signing, verification of smart-home's signed responses, and plate tokens computed from what
 * the camera reads with the keys received through the key ceremony.
 */
export class PartnerClient {
  readonly identity: PartnerIdentity;
  readonly baseUrl: string;
  readonly agent: Agent;
  readonly journal: SimulatorJournal | undefined;
  readonly #smartHomeKey: KeyObject | undefined;
  readonly #extraHeaders: Record<string, string>;
  readonly #plateKeys = new Map<string, Buffer>();
  #currentKid: string | undefined;
  readonly #tokens = new Map<string, { token: string; refreshAt: number }>();

  constructor(opts: PartnerClientOptions) {
    this.identity = opts.identity;
    this.baseUrl = opts.baseUrl.replace(/\/$/, '');
    this.#smartHomeKey = opts.smartHomeKey
      ? createPublicKey({ key: opts.smartHomeKey as never, format: 'jwk' })
      : undefined;
    this.#extraHeaders = opts.extraHeaders ?? {};
    this.journal = opts.journal;
    this.agent = new Agent({
      connections: opts.connections ?? 8,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      connect: { cert: opts.identity.certPem, key: opts.identity.keyPem, ca: opts.serverCa },
    });
  }

  /** Imports the plate keys from the JWE of `smart-home partner export-keys`. */
  async importKeys(jwe: string): Promise<string[]> {
    const imported = await importPartnerKeysFromJwe(jwe.trim(), this.identity.encryption.privateJwk);
    for (const k of imported.plateKeys) this.#plateKeys.set(k.kid, Buffer.from(k.key));
    this.#currentKid = imported.plateKeys[0]?.kid;
    return imported.plateKeys.map((k) => k.kid);
  }

  setPlateKey(kid: string, key: Uint8Array): void {
    this.#plateKeys.set(kid, Buffer.from(key));
    this.#currentKid = kid;
  }

  /** Contract §5: what the camera read → canonical plate → keyed token. Throws on a non-plate. */
  plateCandidate(read: string, kid = this.#currentKid): { kid: string; token: string } {
    const key = kid ? this.#plateKeys.get(kid) : undefined;
    if (!kid || !key) throw new Error('no plate key imported: run the key ceremony first');
    return { kid, token: plateToken(key, canonicalisePlate(read)) };
  }

  /** OAuth2 client credentials over mTLS (contract §2); cached until 60 s before expiry. */
  async token(scope: string): Promise<string> {
    const cached = this.#tokens.get(scope);
    if (cached && cached.refreshAt > Date.now()) return cached.token;
    const res = await request(`${this.baseUrl}/oauth/token`, {
      method: 'POST',
      dispatcher: this.agent,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...this.#extraHeaders },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: this.identity.code,
        scope,
        resource: 'urn:smart-home:partner-api',
      }).toString(),
    });
    const body = (await res.body.json().catch(() => ({}))) as {
      access_token?: string;
      expires_in?: number;
      error?: string;
      error_description?: string;
      type?: string;
    };
    if (res.statusCode !== 200 || !body.access_token) {
      const why = body.error
        ? `${body.error}${body.error_description ? ` (${body.error_description})` : ''}`
        : (body.type ?? '');
      throw new Error(`token request failed: ${res.statusCode} ${why}`);
    }
    this.#tokens.set(scope, {
      token: body.access_token,
      refreshAt: Date.now() + ((body.expires_in ?? 600) - 60) * 1000,
    });
    return body.access_token;
  }

  /** A signed request on the partner API, with the response's signature checked. */
  async send<T = unknown>(
    method: 'GET' | 'POST',
    path: string,
    opts: {
      scope: string;
      body?: unknown;
      rawBody?: Buffer;
      headers?: Record<string, string>;
      token?: string;
      sign?: boolean;
      /** Signature parameters to force (tests: stale `created`, a reused nonce). */
      created?: number;
      nonce?: string;
      /** Changes the request after it was signed (tests: tampering in transit). */
      tamper?: (req: {
        headers: Record<string, string>;
        body: Buffer | undefined;
      }) => { body: Buffer | undefined } | undefined;
    },
  ): Promise<SignedResponse<T>> {
    const url = `${this.baseUrl}${path}`;
    const token = opts.token ?? (await this.token(opts.scope));
    const body =
      opts.rawBody ?? (opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body)));
    const headers: Record<string, string> = {
      authorization: `Bearer ${token}`,
      ...this.#extraHeaders,
      ...(body ? { 'content-type': 'application/json', 'content-digest': contentDigest(body) } : {}),
    };
    if (opts.sign !== false) {
      const sig = signRequest({
        method,
        targetUri: url,
        headers,
        components: body
          ? ['@method', '@target-uri', 'authorization', 'content-digest']
          : ['@method', '@target-uri', 'authorization'],
        privateKey: this.identity.signing.privateKey,
        keyid: this.identity.signing.kid,
        ...(opts.created !== undefined ? { created: opts.created } : {}),
        ...(opts.nonce !== undefined ? { nonce: opts.nonce } : {}),
      });
      headers['signature-input'] = sig['signature-input'];
      headers['signature'] = sig.signature;
    }
    Object.assign(headers, opts.headers ?? {});
    let sent = body;
    if (opts.tamper) {
      const changed = opts.tamper({ headers, body });
      if (changed) sent = changed.body;
    }
    const res = await request(url, {
      method,
      dispatcher: this.agent,
      headers,
      ...(sent ? { body: sent } : {}),
    });
    const rawBody = Buffer.from(await res.body.arrayBuffer());
    let signatureValid: boolean | undefined;
    if (this.#smartHomeKey) {
      const key = this.#smartHomeKey;
      const v = await verifyResponse({
        status: res.statusCode,
        headers: res.headers as Record<string, string | undefined>,
        body: rawBody,
        request: { headers },
        resolveKey: () => key,
        ...(headers['signature'] ? {} : { requiredComponents: UNBOUND_RESPONSE_COMPONENTS }),
      });
      signatureValid = v.ok;
    }
    const text = rawBody.toString('utf8');
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: keep the text
    }
    return { status: res.statusCode, headers: res.headers, body: parsed as T, rawBody, signatureValid };
  }

  /** A camera read at a barrier: asks smart-home whether to open (contract §6). */
  async barrierRead(barrierId: string, read: string, opts: BarrierReadOptions = {}) {
    const reads = [read, ...(opts.alternatives ?? [])].slice(0, 3);
    const candidates = reads.map((r, i) => ({
      ...this.plateCandidate(r, opts.kid),
      confidence: Math.max(0.1, 0.95 - i * 0.2),
    }));
    const eventId = opts.eventId ?? uuidv7();
    const res = await this.send<Record<string, string>>(
      'POST',
      `/partner/v1/barriers/${encodeURIComponent(barrierId)}/decisions`,
      {
        scope: 'barrier:decide',
        body: {
          eventId,
          capturedAt: (opts.capturedAt ?? new Date()).toISOString(),
          direction: opts.direction ?? 'entry',
          candidates,
        },
      },
    );
    // A decision the barrier acted on is journaled once, however many times it was asked (§6 retries).
    const decision = res.body?.['decision'];
    if (
      this.journal &&
      res.status === 200 &&
      res.signatureValid !== false &&
      res.body?.['eventId'] === eventId &&
      (decision === 'open' || decision === 'deny') &&
      !this.journal.has(eventId)
    ) {
      this.journal.record(barrierDecisionProjection({ eventId, barrierId, decision }));
    }
    return res;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
