/**
 * The partner simulator as a witness of smart-home's journal log (contract §8.2, C2SP tlog-witness):
 * it trusts the log keys given at setup (smart-home's journal verifier key strings by origin), checks
 * each submitted checkpoint's signature and its consistency with the last one it cosigned, keeps the
 * newest, and answers a cosignature/v1 line signed with the partner's witness key.
 */
import {
  type NoteSigner,
  type NoteVerifier,
  parseVerifierKey,
  verifierFromKeyString,
} from '../src/tlog/note.ts';
import {
  parseAddCheckpoint,
  type WitnessedState,
  WitnessRefusal,
  witnessCheckpoint,
} from '../src/tlog/witness.ts';
import { type PartnerIdentity, witnessCosigner } from './identity.ts';

export interface WitnessAnswer {
  status: number;
  contentType: string;
  body: string;
}

export interface WitnessedCheckpoint extends WitnessedState {
  note: string;
  cosignature: string;
}

export class SimulatorWitness {
  readonly cosigner: NoteSigner;
  readonly #trusted = new Map<string, NoteVerifier[]>();
  readonly #state = new Map<string, WitnessedCheckpoint>();
  /** Submissions refused, by status (a test reads them). */
  readonly refusals: Array<{ status: number; message: string }> = [];

  constructor(opts: { identity: PartnerIdentity; trust?: readonly string[]; now?: () => number }) {
    this.cosigner = witnessCosigner(opts.identity, opts.now);
    for (const k of opts.trust ?? []) this.trust(k);
  }

  /** Trusts a log key (a C2SP verifier key string); its name is the log's origin. */
  trust(verifierKey: string): void {
    const { name } = parseVerifierKey(verifierKey);
    const list = this.#trusted.get(name) ?? [];
    list.push(verifierFromKeyString(verifierKey));
    this.#trusted.set(name, list);
  }

  /** The newest checkpoint cosigned for an origin. */
  latest(origin: string): WitnessedCheckpoint | undefined {
    return this.#state.get(origin);
  }

  /**
   * One `add-checkpoint` request body → the answer: 200 with the cosignature line, or a refusal
   * (400, 403, 404, 409 with the known size as `text/x.tlog.size`, 422). Synchronous, so check and
   * store happen as one step.
   */
  addCheckpoint(body: string): WitnessAnswer {
    try {
      const request = parseAddCheckpoint(body);
      const r = witnessCheckpoint({
        request,
        verifiers: (origin) => this.#trusted.get(origin),
        stored: (origin) => this.#state.get(origin),
        cosigner: this.cosigner,
      });
      this.#state.set(r.origin, { size: r.size, root: r.root, note: r.note, cosignature: r.cosignature });
      return { status: 200, contentType: 'text/plain; charset=utf-8', body: r.cosignature };
    } catch (err) {
      if (!(err instanceof WitnessRefusal)) throw err;
      this.refusals.push({ status: err.status, message: err.message });
      if (err.status === 409 && err.knownSize !== undefined)
        return { status: 409, contentType: 'text/x.tlog.size', body: `${err.knownSize}\n` };
      return { status: err.status, contentType: 'text/plain; charset=utf-8', body: `${err.message}\n` };
    }
  }
}
