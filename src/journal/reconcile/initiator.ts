/**
 * The initiator of a reconciliation (issue 4, contract §8.4): pins both logs (our newest checkpoint,
 * the partner's, checked with its registered log key), runs Negentropy against the partner until done,
 * asks the partner's projections of every differing element (ours come from our own index; the
 * partner may hold one of ours outside its window), looks up by eventId those only the partner has in
 * the window (we may hold one outside ours), classifies every difference, signs the report and records
 * the run in the journal (`journal.reconcile`, counts only).
 *
 *   const signed = await runReconcile({ db, store, log, peer, partner, from, to, options });
 */

import type { FieldCipher } from '../../crypto/field-cipher.ts';
import type { Db } from '../../db/db.ts';
import { Negentropy } from '../../reconcile/negentropy.ts';
import { elementHex, type ProjectionRecord } from '../../reconcile/projection.ts';
import { type NoteVerifier, openNote, parseCheckpoint } from '../../tlog/note.ts';
import { uuidv7 } from '../../util/uuid.ts';
import { type ActorType, appendJournal } from '../journal.ts';
import type { LogIdentity } from '../log/sequencer.ts';
import {
  classify,
  type Difference,
  recordingSkews,
  type SideItem,
  sortDifferences,
  summarise,
} from './classify.ts';
import { ReconcileError, type ReconcilePeer } from './peer.ts';
import {
  checkpointRef,
  REPORT_CONTEXT,
  type ReconcileReport,
  reportText,
  type SignedReport,
  sha256Hex,
  signReport,
} from './report.ts';
import { Projector, rowsByEventId } from './source.ts';
import type { ReconItem, ReconStore } from './store.ts';

export interface ReconcileRunOptions {
  frameBytes: number;
  maxRounds: number;
  skewToleranceMs: number;
  clockMarginMs: number;
}

export interface ReconcileProgress {
  phase: 'exchange' | 'projections' | 'classify';
  rounds: number;
  bytes: number;
  differences: number;
}

export interface RunReconcileInput {
  db: Db;
  cipher: FieldCipher;
  store: ReconStore;
  log: LogIdentity;
  peer: ReconcilePeer;
  /** `log`: the verifier of the partner's checkpoints (its registered log key), when it has one. */
  partner: { id: string; code: string; log?: NoteVerifier | undefined };
  from: number;
  to: number;
  options: ReconcileRunOptions;
  actor: { type: ActorType; id: string | null };
  requestId?: string;
  /** Called after each round trip (the CLI draws its progress line from it). */
  onProgress?: (p: ReconcileProgress) => void;
  /** Extra details for the journal entry (e.g. `scheduled: true`). */
  journalDetails?: Record<string, unknown>;
}

const sideOf = (it: ReconItem): SideItem => ({
  element: elementHex(it.element),
  time: it.time,
  projection: it.projection,
  at: it.at,
});

const sideOfRecord = (r: ProjectionRecord): SideItem => ({
  element: r.element,
  time: r.time,
  projection: r.projection,
  at: r.at === undefined ? undefined : Date.parse(r.at),
});

export async function runReconcile(input: RunReconcileInput): Promise<SignedReport> {
  const { db, store, peer, partner, from, to, options: o } = input;
  const started = new Date();
  const runId = uuidv7(started.getTime());
  const window = { from, to };
  let rounds = 0;
  let bytesSent = 0;
  let bytesReceived = 0;
  const progress = (phase: ReconcileProgress['phase'], differences = 0) =>
    input.onProgress?.({ phase, rounds, bytes: bytesSent + bytesReceived, differences });
  try {
    // Pinned: the partner's checkpoint first, then our view (our newest checkpoint) for the whole run.
    const theirCheckpoint = await peer.checkpoint();
    const partnerRef = checkpointRef(theirCheckpoint);
    if (partnerRef)
      partnerRef.verified = partner.log ? checkPartnerCheckpoint(partnerRef.note, partner.log) : null;
    const view = await store.view(partner.id, from, to);
    const t0 = performance.now();
    const neg = new Negentropy(view.storage, { frameSizeLimit: o.frameBytes });
    const have: Buffer[] = [];
    const need: Buffer[] = [];
    let msg: Buffer | null = neg.initiate();
    while (msg) {
      if (rounds >= o.maxRounds)
        throw new ReconcileError(
          `no agreement after ${o.maxRounds} round trips (SMART_HOME_RECONCILE_MAX_ROUNDS)`,
        );
      bytesSent += msg.length;
      const answer = await peer.reconcile(window, msg);
      bytesReceived += answer.length;
      rounds++;
      const r = neg.reconcileAsInitiator(answer);
      have.push(...r.have);
      need.push(...r.need);
      msg = r.next;
      progress('exchange', have.length + need.length);
    }
    const exchangeMs = performance.now() - t0;

    // Our side from our index. The partner's projections of every differing element — those only it
    // holds in the window, and ours too: one it holds recorded outside the window's clock margin is
    // still answered by element, and is a timing difference rather than a missing entry.
    const ours: SideItem[] = [];
    for (const e of have) {
      const it = view.lookup(e);
      if (it) ours.push(sideOf(it));
    }
    progress('projections', have.length + need.length);
    const needHex = [...new Set(need.map((e) => elementHex(e)))];
    const asked = [...new Set([...needHex, ...ours.map((x) => x.element)])];
    const theirs = (await peer.projections(window, asked)).map(sideOfRecord);
    const answered = new Set(theirs.map((t) => t.element));
    const unanswered = needHex.filter((e) => !answered.has(e));
    if (unanswered.length > 0)
      throw new ReconcileError(`the partner holds ${unanswered.length} element(s) it gave no projection for`);

    // An eventId only the partner has in the window may be ours too, recorded outside the clock margin.
    const ourIds = new Set(ours.map((x) => x.projection.eventId));
    const lonely = [...new Set(theirs.map((t) => t.projection.eventId))].filter((id) => !ourIds.has(id));
    const outside: SideItem[] = [];
    if (lonely.length > 0) {
      const projector = new Projector(db, input.cipher, partner.id);
      try {
        for (const it of await projector.project(await rowsByEventId(db, partner.id, lonely, view.size))) {
          if (view.lookup(it.element)) continue; // in the window after all
          outside.push({
            element: elementHex(it.element),
            time: it.time,
            projection: it.projection,
            at: it.at,
          });
        }
      } finally {
        await projector.dispose();
      }
    }
    progress('classify', have.length + need.length);
    const diffs: Difference[] = classify([...ours, ...outside], theirs, {
      skewToleranceMs: o.skewToleranceMs,
    });
    // Found only outside the margin: their recording is the skew, whatever else differs.
    const seen = new Set(diffs.filter((d) => d.kind === 'timing_skew').map((d) => d.eventId));
    for (const d of recordingSkews(view.skewed(o.skewToleranceMs).map(sideOf).concat(outside), o)) {
      if (!seen.has(d.eventId)) {
        seen.add(d.eventId);
        diffs.push(d);
      }
    }
    sortDifferences(diffs);

    const report: ReconcileReport = {
      type: REPORT_CONTEXT,
      runId,
      mode: 'exchange',
      partner: { id: partner.id, code: partner.code },
      range: { from: new Date(from).toISOString(), to: new Date(to).toISOString() },
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      checkpoints: { ours: checkpointRef(view.checkpoint), partner: partnerRef },
      options: { skewToleranceMs: o.skewToleranceMs, clockMarginMs: o.clockMarginMs },
      exchange: {
        rounds,
        bytesSent,
        bytesReceived,
        ourItems: view.storage.size,
        ms: Math.round(exchangeMs * 1000) / 1000,
      },
      summary: summarise(diffs),
      differences: diffs,
    };
    const signed = signReport(report, input.log.signer);
    await appendJournal(db, {
      actorType: input.actor.type,
      actorId: input.actor.id,
      action: 'journal.reconcile',
      partnerId: partner.id,
      result: diffs.length === 0 ? 'consistent' : 'differences',
      requestId: input.requestId ?? null,
      details: {
        runId,
        from: report.range.from,
        to: report.range.to,
        ourSize: view.size,
        partnerSize: report.checkpoints.partner?.size ?? null,
        rounds,
        ...report.summary,
        reportSha256: sha256Hex(reportText(signed)),
        ...input.journalDetails,
      },
    });
    return signed;
  } catch (err) {
    await appendJournal(db, {
      actorType: input.actor.type,
      actorId: input.actor.id,
      action: 'journal.reconcile',
      partnerId: partner.id,
      result: 'failed',
      requestId: input.requestId ?? null,
      details: {
        runId,
        from: new Date(from).toISOString(),
        to: new Date(to).toISOString(),
        rounds,
        error: (err as { code?: string }).code ?? (err as Error).name,
        ...input.journalDetails,
      },
    }).catch(() => {});
    throw err;
  }
}

/** The partner's checkpoint must be signed by its registered log key and name that log as its origin. */
function checkPartnerCheckpoint(note: string, log: NoteVerifier): true {
  try {
    const { text } = openNote(note, [log]);
    if (parseCheckpoint(text).origin !== log.name) throw new Error('another origin');
  } catch (err) {
    throw new ReconcileError(
      `the partner's checkpoint does not verify with its registered log key: ${(err as Error).message}`,
    );
  }
  return true;
}
