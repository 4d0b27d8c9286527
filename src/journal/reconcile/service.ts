/**
 * Reconciliation as the service runs it: one {@link ReconStore} per instance (shared by the partner
 * endpoints and our own runs), and runs against a partner over the outbound channel — from the CLI,
 * the operator API or the daily schedule.
 */
import type { Config } from '../../config/config.ts';
import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Db } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import type { Outbound } from '../../outbound/outbound.ts';
import type { PartnerDirectory, PartnerInfo } from '../../partners/partner-directory.ts';
import { isUuid } from '../../util/uuid.ts';
import type { ActorType } from '../journal.ts';
import type { LogIdentity } from '../log/sequencer.ts';
import { type ReconcileProgress, runReconcile } from './initiator.ts';
import { outboundPeer, ReconcileError, type ReconcilePeer } from './peer.ts';
import type { SignedReport } from './report.ts';
import { DAY_MS, ReconStore } from './store.ts';

export type ReconcileConfig = Config['reconcile'];

export class UnknownPartnerError extends ReconcileError {}

export interface ReconcilerDeps {
  db: Db;
  cipher: FieldCipher;
  log: LogIdentity;
  outbound: Outbound | undefined;
  directory: () => PartnerDirectory;
  options: ReconcileConfig;
  store?: ReconStore;
}

export interface ReconcileRequest {
  /** Our id of the partner or its code. */
  partner: string;
  from: number;
  to: number;
  actor: { type: ActorType; id: string | null };
  skewToleranceMs?: number;
  requestId?: string;
  onProgress?: (p: ReconcileProgress) => void;
  journalDetails?: Record<string, unknown>;
  /** Another peer than the partner's outbound endpoint (tests). */
  peer?: ReconcilePeer;
}

export function newReconStore(
  db: Db,
  cipher: FieldCipher,
  o: ReconcileConfig,
  directory?: () => PartnerDirectory,
): ReconStore {
  return new ReconStore({
    db,
    cipher,
    clockMarginMs: o.clockMarginMs,
    cacheDays: o.cacheDays,
    ...(directory ? { registryVersion: registryVersionOf(directory) } : {}),
  });
}

/**
 * What a partner's projections depend on in the directory: its devices' ids (ours → theirs) and its
 * live key versions (the pseudonym key). Remembered per directory entry, which a reload replaces.
 */
export function registryVersionOf(directory: () => PartnerDirectory): (partnerId: string) => string {
  const seen = new WeakMap<PartnerInfo, string>();
  return (partnerId) => {
    const p = directory().byId.get(partnerId);
    if (!p) return '';
    let v = seen.get(p);
    if (v === undefined) {
      const devices = [...p.devices.values()].map((d) => `${d.id}=${d.externalId}`).sort();
      v = JSON.stringify([devices, [...p.plateKids].sort()]);
      seen.set(p, v);
    }
    return v;
  };
}

export class Reconciler {
  readonly store: ReconStore;
  readonly #d: ReconcilerDeps;

  constructor(deps: ReconcilerDeps) {
    this.#d = deps;
    this.store = deps.store ?? newReconStore(deps.db, deps.cipher, deps.options, deps.directory);
  }

  get options(): ReconcileConfig {
    return this.#d.options;
  }

  partner(idOrCode: string): PartnerInfo {
    const dir = this.#d.directory();
    const p =
      (isUuid(idOrCode) ? dir.byId.get(idOrCode.toLowerCase()) : undefined) ?? dir.byCode.get(idOrCode);
    if (!p) throw new UnknownPartnerError(`no partner ${JSON.stringify(idOrCode)}`);
    return p;
  }

  checkWindow(from: number, to: number): void {
    if (!(Number.isFinite(from) && Number.isFinite(to) && to > from))
      throw new ReconcileError('--from must be before --to');
    if (to - from > this.#d.options.maxWindowDays * DAY_MS)
      throw new ReconcileError(
        `the window may span at most ${this.#d.options.maxWindowDays} days (SMART_HOME_RECONCILE_MAX_WINDOW_DAYS)`,
      );
  }

  async run(r: ReconcileRequest): Promise<SignedReport> {
    const partner = this.partner(r.partner);
    this.checkWindow(r.from, r.to);
    const o = this.#d.options;
    let peer = r.peer;
    if (!peer) {
      if (!this.#d.outbound)
        throw new ReconcileError('this instance runs without the outbound partner channel');
      if (!partner.outbound)
        throw new ReconcileError('the partner has no outbound endpoint (base URL) registered');
      peer = outboundPeer(this.#d.outbound, partner, { maxMessageBytes: o.maxMessageBytes });
    }
    return runReconcile({
      db: this.#d.db,
      cipher: this.#d.cipher,
      store: this.store,
      log: this.#d.log,
      peer,
      partner: { id: partner.id, code: partner.code, log: partner.log?.verifier },
      from: r.from,
      to: r.to,
      options: {
        frameBytes: o.frameBytes,
        maxRounds: o.maxRounds,
        skewToleranceMs: r.skewToleranceMs ?? o.skewToleranceMs,
        clockMarginMs: o.clockMarginMs,
      },
      actor: r.actor,
      ...(r.requestId ? { requestId: r.requestId } : {}),
      ...(r.onProgress ? { onProgress: r.onProgress } : {}),
      ...(r.journalDetails ? { journalDetails: r.journalDetails } : {}),
    });
  }

  /** The partners a scheduled run covers: enabled, with an outbound endpoint. */
  scheduledPartners(): PartnerInfo[] {
    return [...this.#d.directory().byId.values()].filter((p) => p.enabled && p.outbound);
  }

  /** Whether a scheduled run of this partner and day was already recorded (by any instance). */
  async alreadyScheduled(partnerId: string, day: string): Promise<boolean> {
    const row = await this.#d.db.one(sql`select 1 from journal
      where action = 'journal.reconcile' and partner_id = ${partnerId}::uuid
        and details->>'scheduledDay' = ${day} and result <> 'failed' limit 1`);
    return row !== undefined;
  }
}
