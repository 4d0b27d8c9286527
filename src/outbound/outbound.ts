/**
 * The outbound partner channel as the rest of the service uses it: one {@link PartnerChannel} per
 * partner, built from the partner directory (rebuilt when a partner's registration changes), the
 * per-partner pseudonym of a resident, and the door-open of contract §7.
 *
 *   const outbound = new Outbound({ db, cipher, directory: () => app.directory(), clientTls,
 *                                   signingKey: responseKey, options: config.outbound });
 *   const result = await outbound.openDoor({ partnerId, doorExternalId, residentId });
 *
 * A route that journals the command before sending it uses {@link Outbound.prepareDoorOpen} (the
 * commandId is the journal's eventId, contract §8.3), then {@link Outbound.sendDoorOpen}.
 *
 * Any other call to a partner (the journal exchange of §8) goes through {@link Outbound.send}:
 *
 *   const answer = await outbound.send(partnerId, 'POST', '/v1/journal/witness/add-checkpoint',
 *     { scope: AUDIT_SCOPE, body: Buffer.from(text), contentType: 'text/plain; charset=utf-8',
 *       accept: 'text/plain' });
 *   // answer.status, answer.headers, answer.body (verified bytes)
 */
import type { Logger } from 'pino';
import type { FieldCipher } from '../crypto/field-cipher.ts';
import { pseudonym } from '../crypto/partner-keys.ts';
import type { Queryable } from '../db/db.ts';
import type { SigningKey } from '../keys/service-keys.ts';
import type { OutboundEndpoint, PartnerDirectory, PartnerInfo } from '../partners/partner-directory.ts';
import { loadPartnerKeys } from '../registry/partner-secrets.ts';
import { uuidv7 } from '../util/uuid.ts';
import {
  type DoorCommand,
  type DoorOpenResult,
  MAX_DOOR_COMMAND_TTL_MS,
  sendDoorCommand,
} from './door-open.ts';
import { OutboundError } from './errors.ts';
import {
  type ChannelOptions,
  PartnerChannel,
  type SendOptions,
  type SignedAnswer,
} from './partner-channel.ts';
import type { ResilienceOptions } from './resilience.ts';

export interface OutboundOptions extends ChannelOptions {
  /** Backoff base of retries (see {@link ResilienceOptions.retryDelayMs}). */
  retryDelayMs: number;
  /** `expiresAt` − `requestedAt` of a door command, ms (≤ 10,000, contract §7). */
  doorCommandTtlMs: number;
}

export interface OutboundDeps {
  db: Queryable;
  cipher: FieldCipher;
  /** The directory in force (the app's, reloaded on registry changes). */
  directory: () => PartnerDirectory;
  /** Our client certificate (chain) and its key, PEM. */
  clientTls: { cert: string; key: string };
  /** Ed25519 key that signs our requests (the service's response key, contract §3). */
  signingKey: SigningKey;
  options: OutboundOptions;
  /**
   * Clock of the token cache only, ms (tests move it to reach a token's expiry). Default Date.now.
   * Commands and their deadlines always use the real clock.
   */
  tokenClock?: () => number;
  /** Breaker transitions are logged here (partner ids and failure codes only). */
  logger?: Logger;
}

export interface OpenDoorInput {
  /** Our id of the partner, or its entry in the directory. */
  partner: string | PartnerInfo;
  /** The partner's own id of the door (contract §7 `{doorId}`). */
  doorExternalId: string;
  /** Our internal resident id; only its pseudonym leaves the service. */
  residentId: string;
  /** When the command is made (`requestedAt`); default now. */
  now?: Date;
}

interface ChannelEntry {
  channel: PartnerChannel;
  /** The directory entry last seen for it: the same object needs no comparison at all. */
  info: PartnerInfo;
  /** What the channel was built from; a different registration builds a new channel. */
  fingerprint: string;
}

const fingerprintOf = (e: OutboundEndpoint, keys: ReadonlyMap<string, unknown>) =>
  JSON.stringify([e.baseUrl, e.tokenEndpoint, e.clientId, e.serverCa, [...keys.keys()].sort()]);

export class Outbound {
  readonly #deps: OutboundDeps;
  readonly #channels = new Map<string, ChannelEntry>();
  /** Pseudonym key per partner, with the key id it came from. */
  readonly #pseudonymKeys = new Map<string, { kids: string; key: Promise<Buffer> }>();
  constructor(deps: OutboundDeps) {
    if (deps.options.doorCommandTtlMs > MAX_DOOR_COMMAND_TTL_MS || deps.options.doorCommandTtlMs <= 0) {
      throw new RangeError('doorCommandTtlMs must be in (0, 10000] (contract §7)');
    }
    this.#deps = deps;
  }

  #partner(p: string | PartnerInfo): PartnerInfo {
    if (typeof p !== 'string') return p;
    const found = this.#deps.directory().byId.get(p);
    if (!found) throw new OutboundError('ERR_OUTBOUND_NOT_CONFIGURED', 'unknown partner');
    return found;
  }

  /** The channel to a partner, built on first use and rebuilt when its registration changed. */
  channel(partnerOrId: string | PartnerInfo): PartnerChannel {
    const partner = this.#partner(partnerOrId);
    const endpoint = partner.outbound;
    if (!endpoint || !partner.enabled) {
      throw new OutboundError('ERR_OUTBOUND_NOT_CONFIGURED', 'the partner takes no commands');
    }
    const cur = this.#channels.get(partner.id);
    if (cur?.info === partner) return cur.channel;
    // A reloaded directory has new objects: rebuild only if what the channel uses changed.
    const fingerprint = fingerprintOf(endpoint, partner.signingKeys);
    if (cur?.fingerprint === fingerprint) {
      cur.info = partner;
      return cur.channel;
    }
    if (cur) void cur.channel.close().catch(() => {});
    const channel = new PartnerChannel({
      partner,
      endpoint,
      clientTls: this.#deps.clientTls,
      signingKey: this.#deps.signingKey,
      options: this.#deps.options,
      ...(this.#deps.tokenClock ? { now: this.#deps.tokenClock } : {}),
      logger: this.#deps.logger,
    });
    this.#channels.set(partner.id, { channel, info: partner, fingerprint });
    return channel;
  }

  /**
   * Contract §7 `subject`: the resident's pseudonym for this partner, under the pseudonym key of the
   * partner's current (newest, not retired) secret version.
   */
  async subject(partnerOrId: string | PartnerInfo, residentId: string): Promise<string> {
    const partner = this.#partner(partnerOrId);
    return pseudonym(await this.#pseudonymKey(partner), residentId);
  }

  #pseudonymKey(partner: PartnerInfo): Promise<Buffer> {
    // The directory's set of live key ids changes with a rotation: the cached key follows it.
    const kids = [...partner.plateKids].sort().join(',');
    const cached = this.#pseudonymKeys.get(partner.id);
    if (cached?.kids === kids) return cached.key;
    const key = loadPartnerKeys(this.#deps.db, this.#deps.cipher, partner.id).then((versions) => {
      const current = versions.find((v) => !v.retired);
      for (const v of versions) if (v !== current) v.pseudonymKey.fill(0);
      for (const v of versions) v.plateKey.fill(0);
      if (!current) throw new OutboundError('ERR_OUTBOUND_NOT_CONFIGURED', 'the partner has no live secret');
      return current.pseudonymKey;
    });
    key.catch(() => {
      if (this.#pseudonymKeys.get(partner.id)?.key === key) this.#pseudonymKeys.delete(partner.id);
    });
    this.#pseudonymKeys.set(partner.id, { kids, key });
    return key;
  }

  /** Builds the command (commandId UUIDv7, subject, requestedAt, expiresAt) without sending it. */
  async prepareDoorOpen(input: OpenDoorInput): Promise<DoorCommand> {
    const partner = this.#partner(input.partner);
    this.channel(partner); // refuses a partner that takes no commands, before anything is journaled
    const door = partner.devices.get(input.doorExternalId);
    if (door?.kind !== 'door') {
      throw new OutboundError('ERR_OUTBOUND_UNKNOWN_DOOR', 'not a door of this partner');
    }
    const requestedAt = input.now ?? new Date();
    return {
      partnerId: partner.id,
      doorExternalId: input.doorExternalId,
      commandId: uuidv7(requestedAt.getTime()),
      subject: await this.subject(partner, input.residentId),
      requestedAt: requestedAt.toISOString(),
      expiresAt: new Date(requestedAt.getTime() + this.#deps.options.doorCommandTtlMs).toISOString(),
    };
  }

  /**
   * Sends a prepared command; resolves with its outcome by its `expiresAt` at the latest. The partner
   * is looked up by the command's `partnerId` unless its directory entry is given.
   */
  async sendDoorOpen(command: DoorCommand, partner?: PartnerInfo): Promise<DoorOpenResult> {
    if (partner && partner.id !== command.partnerId)
      throw new TypeError('the command is for another partner');
    return sendDoorCommand(this.channel(partner ?? command.partnerId), command);
  }

  /**
   * A generic signed call to the partner's base URL (see {@link PartnerChannel.send}): a token of
   * `opts.scope`, the request signed, the answer's signature verified, status, header fields and raw
   * body back. Throws an {@link OutboundError} when there is no trustworthy answer.
   */
  async send(
    partnerOrId: string | PartnerInfo,
    method: string,
    path: string,
    opts: SendOptions,
  ): Promise<SignedAnswer> {
    return this.channel(partnerOrId).send(method, path, opts);
  }

  /** Contract §7 in one call: prepare, send, verified outcome. */
  async openDoor(input: OpenDoorInput): Promise<DoorOpenResult> {
    const partner = this.#partner(input.partner);
    return this.sendDoorOpen(await this.prepareDoorOpen({ ...input, partner }), partner);
  }

  async close(): Promise<void> {
    const channels = [...this.#channels.values()];
    this.#channels.clear();
    this.#pseudonymKeys.clear();
    await Promise.allSettled(channels.map((c) => c.channel.close()));
  }
}
