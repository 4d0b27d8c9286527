/**
 * smart-home's checkpoints witnessed by partners (contract §8.2): every `witness.submitMs` while our log
 * grows, the newest signed checkpoint goes to each partner that witnesses it — enabled, with an
 * outbound registration, `audit:exchange` and a registered witness key — as a C2SP tlog-witness
 * `add-checkpoint` request through the generic signed outbound call:
 *
 *   POST {partnerBase}/v1/journal/witness/add-checkpoint   (scope audit:exchange, text/plain)
 *   old <size the partner last cosigned>\n<consistency proof lines>\n\n<our signed checkpoint>
 *
 * The proof comes from our stored tiles. A 409 `text/x.tlog.size` names the size the partner holds:
 * we learn it and send once more from there. A 200 must carry a cosignature/v1 line by the partner's
 * registered witness key over exactly our checkpoint; it is stored (our note with that line appended:
 * a self-contained anchor for `journal verify`). A refusal, or an answer that is no valid cosignature,
 * is a `journal.witness.alert` entry and an error log line; a partner we cannot reach is a warning
 * (tried again next round).
 *
 * One instance submits at a time: on PostgreSQL the round holds an advisory transaction lock (the
 * other instances skip it); the embedded database serves a single process, where the round's own
 * in-process guard is enough and no transaction is held across network calls.
 */
import type { Db, Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import type { Logger } from '../../logger.ts';
import { OutboundError } from '../../outbound/errors.ts';
import type { Outbound } from '../../outbound/outbound.ts';
import { AUDIT_SCOPE } from '../../outbound/partner-channel.ts';
import type { PartnerDirectory, PartnerInfo } from '../../partners/partner-directory.ts';
import { cosignatureTime, type NoteSignature, parseNote, parseSignatureLine } from '../../tlog/note.ts';
import { formatAddCheckpoint } from '../../tlog/witness.ts';
import { consistencyHashes } from '../log/proofs.ts';
import { latestCheckpoint } from '../log/sequencer.ts';
import { TLOG_SIZE_TYPE, witnessAlert } from './state.ts';

/** Advisory lock key of the submitter (a constant shared by every instance). */
export const WITNESS_SUBMIT_LOCK = 727_011;

/** Path of the add-checkpoint endpoint under a partner's base URL (contract §8: ours minus `/partner`). */
export const PARTNER_WITNESS_PATH = '/v1/journal/witness/add-checkpoint';

/** Largest answer read: cosignature lines, or a size. */
const MAX_ANSWER_BYTES = 16 * 1024;

export interface SubmitterDeps {
  db: Db;
  outbound: Outbound;
  directory: () => PartnerDirectory;
  logger?: Logger;
  /**
   * The last alert journaled per partner (kept by the background submitter across rounds): the same
   * refusal round after round is journaled once, then only logged, until the partner cosigns again or
   * refuses otherwise — each round's alert would otherwise grow the log, and so cause the next round.
   * Without it, every alert is journaled.
   */
  alertMemo?: Map<string, string>;
}

export type SubmitOutcome =
  /** Cosigned and stored. */
  | 'cosigned'
  /** The partner already cosigned our newest checkpoint. */
  | 'current'
  /** Unreachable, timed out, or an untrustworthy answer (no signature): tried again next round. */
  | 'unreachable'
  /** Refused, or answered something that is no valid cosignature: journaled as an alert. */
  | 'alert';

export interface SubmitResult {
  partnerId: string;
  outcome: SubmitOutcome;
  /** The size submitted (our newest checkpoint). */
  size: number;
  /** HTTP status of the partner's last answer, if any. */
  status?: number;
  /** Stable reason for `unreachable` and `alert`. */
  reason?: string;
}

/** Partners that witness our log: enabled, callable, with `audit:exchange` and a witness key. */
export function witnessingPartners(directory: PartnerDirectory): PartnerInfo[] {
  return [...directory.byId.values()].filter(
    (p) => p.enabled && p.outbound && p.witness && p.scopes.has(AUDIT_SCOPE),
  );
}

/**
 * One round: our newest checkpoint to every witnessing partner not yet holding it. Returns undefined
 * when another instance holds the round (PostgreSQL), else one result per partner tried.
 */
export async function submitRound(deps: SubmitterDeps): Promise<SubmitResult[] | undefined> {
  const run = async (q: Queryable) => {
    const newest = await latestCheckpoint(q);
    if (!newest) return [];
    // All partners at once: the round (and the lock's transaction) lasts about one call, each bounded
    // by the outbound timeouts.
    return Promise.all(witnessingPartners(deps.directory()).map((p) => submitTo(deps, q, p, newest)));
  };
  if (deps.db.engine !== 'postgres') return run(deps.db);
  return deps.db.transaction(async (tx) => {
    const lock = await tx.one<{ ok: boolean }>(
      // Keyed by schema too: instances share a round only when they share the tables.
      sql`select pg_try_advisory_xact_lock(${WITNESS_SUBMIT_LOCK}, hashtext(current_schema())) as ok`,
    );
    if (!lock?.ok) return undefined;
    return run(tx);
  });
}

async function lastCosigned(q: Queryable, partnerId: string): Promise<number> {
  const r = await q.one<{ size: string | null }>(
    sql`select max(size)::text as size from witness_cosignatures where partner_id = ${partnerId}::uuid`,
  );
  return r?.size ? Number(r.size) : 0;
}

async function submitTo(
  deps: SubmitterDeps,
  q: Queryable,
  partner: PartnerInfo,
  newest: { size: number; root: Buffer; note: string },
): Promise<SubmitResult> {
  const witness = partner.witness!;
  const base = { partnerId: partner.id, size: newest.size };
  const alert = async (
    result: 'refused' | 'conflict' | 'bad-cosignature',
    reason: string,
    extra: Record<string, unknown> = {},
  ): Promise<SubmitResult> => {
    const memoKey = `${result} ${reason} ${String(extra['status'] ?? '')}`;
    if (deps.alertMemo?.get(partner.id) === memoKey) {
      deps.logger?.error(
        { partnerId: partner.id, result, reason, ...extra },
        'journal witnessing alert (repeated)',
      );
    } else {
      await witnessAlert(q, deps.logger, {
        actorType: 'system',
        actorId: 'witness-submitter',
        partnerId: partner.id,
        result,
        details: { direction: 'our-log', reason, size: newest.size, ...extra },
      });
      deps.alertMemo?.set(partner.id, memoKey);
    }
    return {
      ...base,
      outcome: 'alert',
      reason,
      ...(typeof extra['status'] === 'number' ? { status: extra['status'] } : {}),
    };
  };

  let oldSize = await lastCosigned(q, partner.id);
  if (oldSize > newest.size) {
    // The partner cosigned a size our newest checkpoint no longer reaches: our log lost its tail.
    return alert('conflict', 'a stored cosignature covers more than our newest checkpoint', {
      cosignedSize: oldSize,
    });
  }
  if (oldSize === newest.size) return { ...base, outcome: 'current' };
  for (let attempt = 0; ; attempt++) {
    const proof =
      oldSize === 0 || oldSize === newest.size ? [] : await consistencyHashes(q, oldSize, newest.size);
    const body = formatAddCheckpoint({ oldSize, proof, note: newest.note });
    let answer: Awaited<ReturnType<Outbound['send']>>;
    try {
      answer = await deps.outbound.send(partner, 'POST', PARTNER_WITNESS_PATH, {
        scope: AUDIT_SCOPE,
        body: Buffer.from(body, 'utf8'),
        contentType: 'text/plain; charset=utf-8',
        accept: `text/plain, ${TLOG_SIZE_TYPE}`,
        maxResponseBytes: MAX_ANSWER_BYTES,
      });
    } catch (err) {
      if (!(err instanceof OutboundError)) throw err;
      deps.logger?.warn(
        { partnerId: partner.id, code: err.code },
        'witness submission: no answer from the partner',
      );
      return { ...base, outcome: 'unreachable', reason: err.code };
    }
    const type = String(answer.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim()
      .toLowerCase();
    const text = answer.body.toString('utf8');
    if (answer.status === 409 && type === TLOG_SIZE_TYPE && attempt === 0) {
      // C2SP tlog-witness: the witness holds another size; send again from it (once).
      const m = /^(0|[1-9][0-9]{0,15})\n?$/.exec(text);
      const known = m ? Number(m[1]) : Number.NaN;
      if (!Number.isSafeInteger(known))
        return alert('refused', 'malformed size in a 409 answer', { status: 409 });
      if (known > newest.size) {
        // The partner cosigned a larger tree of our origin than we ever signed: our log lost a tail,
        // or someone else signs with our key.
        return alert('conflict', 'the partner holds a larger size than our newest checkpoint', {
          status: 409,
          partnerSize: known,
        });
      }
      if (known === oldSize) return alert('refused', '409 naming the size we sent', { status: 409 });
      // (known = our newest size: it cosigned it already; the proof is empty and it answers the line.)
      oldSize = known;
      continue;
    }
    if (answer.status !== 200) {
      const conflict = answer.status === 409 || answer.status === 422;
      return alert(
        conflict ? 'conflict' : 'refused',
        answer.status === 409
          ? 'the partner holds another root at our size'
          : answer.status === 422
            ? 'the partner found our consistency proof wrong'
            : `the partner answered ${answer.status}`,
        { status: answer.status, oldSize },
      );
    }
    // 200: a cosignature/v1 line by the registered witness key over exactly our checkpoint.
    const checkpointText = Buffer.from(parseNote(newest.note).text, 'utf8');
    let line: NoteSignature | undefined;
    for (const l of text.split('\n')) {
      let s: NoteSignature;
      try {
        s = parseSignatureLine(l);
      } catch {
        continue;
      }
      if (s.name !== witness.name || s.keyId !== witness.verifier.keyId) continue;
      if (witness.verifier.verify(checkpointText, s.sig)) {
        line = s;
        break;
      }
    }
    if (!line)
      return alert('bad-cosignature', 'no valid cosignature by the registered witness key', { status: 200 });
    const cosigned = `${newest.note}${line.line}\n`;
    await q.query(sql`insert into witness_cosignatures (partner_id, size, root, note, witness_key, cosigned_at)
      values (${partner.id}::uuid, ${String(newest.size)}::bigint, ${newest.root}, ${cosigned}, ${witness.key},
        to_timestamp(${cosignatureTime(line.sig)}))
      on conflict (partner_id, size) do nothing`);
    deps.alertMemo?.delete(partner.id);
    return { ...base, outcome: 'cosigned', status: 200 };
  }
}

export interface WitnessSubmitter {
  /** Runs one round now (tests); resolves with its results. */
  runOnce(): Promise<SubmitResult[] | undefined>;
  /** Stops after the round in progress. */
  stop(): Promise<void>;
}

/** Submits a round every `intervalMs` in the background of an instance. */
export function startWitnessSubmitter(deps: SubmitterDeps, opts: { intervalMs: number }): WitnessSubmitter {
  deps = { ...deps, alertMemo: deps.alertMemo ?? new Map() };
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<SubmitResult[] | undefined> | undefined;
  let failing = false;
  const round = () => {
    // In-process guard: never two rounds of one instance at once.
    running ??= submitRound(deps)
      .then((r) => {
        if (failing) deps.logger?.info('witness submitter recovered');
        failing = false;
        return r;
      })
      .catch((err) => {
        if (!failing) deps.logger?.error({ err }, 'witness submission round failed; retrying');
        failing = true;
        return undefined;
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const tick = () => {
    void round().then(() => {
      if (!stopped) {
        timer = setTimeout(tick, opts.intervalMs);
        timer.unref();
      }
    });
  };
  timer = setTimeout(tick, opts.intervalMs);
  timer.unref();
  return {
    runOnce: round,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
