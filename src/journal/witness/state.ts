/**
 * smart-home as the witness of a partner's journal log (contract §8.2, C2SP tlog-witness): one
 * `add-checkpoint` request is decided by {@link witnessCheckpoint} against the newest checkpoint we
 * cosigned for that partner's log, and the new one is stored — check and store in ONE transaction
 * under the state row's lock, so two instances answering at once never cosign two different views nor
 * roll a size back.
 *
 * Only the calling partner's own log can be witnessed: the origin must be the name of the log key
 * registered for that partner (any other origin, another partner's included, is `404 unknown log`).
 * A checkpoint that contradicts what we cosigned — same size with another root (409), or a
 * consistency proof that does not hold (422) — is evidence of a forked or rewritten log: it is journaled
 * as `journal.witness.alert` in the same transaction and logged as an error.
 */
import type { Db, Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import type { Logger } from '../../logger.ts';
import type { PartnerInfo } from '../../partners/partner-directory.ts';
import type { NoteSigner } from '../../tlog/note.ts';
import {
  type AddCheckpointRequest,
  parseAddCheckpoint,
  WitnessRefusal,
  witnessCheckpoint,
} from '../../tlog/witness.ts';
import { appendJournal, type JournalEntry } from '../journal.ts';

/** The journal action of every witnessing alert, incoming and outgoing. */
export const WITNESS_ALERT_ACTION = 'journal.witness.alert';

/** C2SP tlog-witness: the content type of a 409 answer that names the size the witness holds. */
export const TLOG_SIZE_TYPE = 'text/x.tlog.size';

export interface WitnessAnswer {
  status: 200 | 400 | 403 | 404 | 409 | 422;
  contentType: string;
  body: string;
}

const TEXT = 'text/plain; charset=utf-8';

/**
 * Journals a witnessing alert in `tx` and logs it as an error. `details` hold origins, sizes, statuses
 * and fixed reasons only.
 */
export async function witnessAlert(
  tx: Queryable,
  logger: Logger | undefined,
  e: Omit<JournalEntry, 'action'> & { details: Record<string, unknown> },
): Promise<void> {
  await appendJournal(tx, { ...e, action: WITNESS_ALERT_ACTION });
  logger?.error({ partnerId: e.partnerId, result: e.result, ...e.details }, 'journal witnessing alert');
}

/**
 * Decides and stores one `add-checkpoint` request of `partner` (its body as received). Never throws
 * for anything the partner sent; database errors propagate (a 500).
 */
export async function addCheckpoint(opts: {
  db: Db;
  partner: PartnerInfo;
  body: Buffer;
  cosigner: NoteSigner;
  logger?: Logger;
}): Promise<WitnessAnswer> {
  const { partner, logger } = opts;
  const refuse = (status: WitnessAnswer['status'], message: string): WitnessAnswer => ({
    status,
    contentType: TEXT,
    body: `${message}\n`,
  });
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(opts.body);
  } catch {
    return refuse(400, 'the body is not UTF-8');
  }
  let request: AddCheckpointRequest;
  try {
    request = parseAddCheckpoint(text);
  } catch (err) {
    if (err instanceof WitnessRefusal) return refuse(err.status, err.message);
    throw err;
  }
  const nl = request.note.indexOf('\n');
  const origin = nl > 0 ? request.note.slice(0, nl) : '';
  const log = partner.log;
  // A partner can only submit its own log: any other origin is unknown to it.
  if (!log || origin !== log.name) {
    logger?.warn({ partnerId: partner.id }, 'witness: a checkpoint of a log not registered for the partner');
    return refuse(404, 'unknown log origin');
  }
  return opts.db.transaction(async (tx) => {
    await tx.query(sql`insert into witness_state (partner_id, origin) values (${partner.id}::uuid, ${origin})
      on conflict (partner_id, origin) do nothing`);
    const st = await tx.one<{ size: string; root: Buffer | null }>(sql`
      select size::text as size, root from witness_state
      where partner_id = ${partner.id}::uuid and origin = ${origin} for update`);
    if (!st) throw new Error('witness_state row vanished under its lock');
    const storedSize = Number(st.size);
    try {
      const r = witnessCheckpoint({
        request,
        verifiers: (o) => (o === log.name ? [log.verifier] : undefined),
        stored: () =>
          storedSize > 0 && st.root ? { size: storedSize, root: Buffer.from(st.root) } : undefined,
        cosigner: opts.cosigner,
      });
      await tx.query(sql`update witness_state set size = ${String(r.size)}::bigint, root = ${r.root},
          note = ${r.note}, updated_at = clock_timestamp()
        where partner_id = ${partner.id}::uuid and origin = ${origin}`);
      return { status: 200, contentType: TEXT, body: r.cosignature };
    } catch (err) {
      if (!(err instanceof WitnessRefusal)) throw err;
      if (err.status === 409 && err.knownSize !== undefined) {
        // C2SP tlog-witness: the partner retries from the size we hold.
        return { status: 409, contentType: TLOG_SIZE_TYPE, body: `${err.knownSize}\n` };
      }
      if (err.status === 409 || err.status === 422) {
        await witnessAlert(tx, logger, {
          actorType: 'partner',
          actorId: partner.id,
          partnerId: partner.id,
          result: err.status === 409 ? 'conflict' : 'inconsistent',
          details: {
            direction: 'partner-log',
            origin,
            status: err.status,
            reason: err.message,
            oldSize: request.oldSize,
            witnessedSize: storedSize,
          },
        });
      } else {
        logger?.warn({ partnerId: partner.id, status: err.status, reason: err.message }, 'witness: refused');
      }
      return refuse(err.status, err.message);
    }
  });
}
