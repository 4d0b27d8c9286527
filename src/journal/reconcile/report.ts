/**
 * The signed report of a reconciliation run (contract §8.4: "the initiator signs its report — both
 * checkpoints it was pinned to, the range, every difference").
 *
 * Format: one JSON object `{"report": {…}, "signature": {…}}`. The signature is a detached Ed25519
 * signature by the journal's checkpoint key (SMART_HOME_JOURNAL_KEY_FILE) over
 *
 *   "smart-home/journal-reconcile-report/v1\n" ‖ JCS(report)            (RFC 8785)
 *
 * The context line keeps a report from ever being read as a checkpoint of the log (whose first line is
 * the log's origin). `signature.verifierKey` is the log's C2SP verifier key (`name+id+key`), the same
 * one partners and auditors already check checkpoints with; `verifyReport` checks a file against it.
 */
import { createHash } from 'node:crypto';
import { keyIdHex, type NoteSigner, type NoteVerifier, parseCheckpoint, parseNote } from '../../tlog/note.ts';
import { canonicalJson } from '../../util/jcs.ts';
import type { Difference, Summary } from './classify.ts';

export const REPORT_CONTEXT = 'smart-home/journal-reconcile-report/v1';

export interface CheckpointRef {
  /** The signed note as received (C2SP tlog-checkpoint). */
  note: string;
  origin?: string;
  size?: number;
  /** The partner's: checked with its registered log key (null when it has none registered). */
  verified?: boolean | null;
}

export interface ReconcileReport {
  type: typeof REPORT_CONTEXT;
  runId: string;
  /** `exchange`: against the partner over §8.4; `offline`: two exported projection files. */
  mode: 'exchange' | 'offline';
  partner?: { id: string; code: string };
  range: { from: string; to: string };
  startedAt: string;
  finishedAt: string;
  checkpoints: { ours: CheckpointRef | null; partner: CheckpointRef | null };
  options: { skewToleranceMs: number; clockMarginMs?: number };
  exchange?: { rounds: number; bytesSent: number; bytesReceived: number; ourItems: number; ms: number };
  /** Offline mode: the two files compared (names and SHA-256). */
  files?: {
    ours: { name: string; sha256: string; items: number };
    theirs: { name: string; sha256: string; items: number };
  };
  summary: Summary;
  differences: Difference[];
}

export interface SignedReport {
  report: ReconcileReport;
  signature: {
    alg: 'Ed25519';
    context: typeof REPORT_CONTEXT;
    keyName: string;
    keyId: string;
    verifierKey: string;
    /** base64 */
    value: string;
  };
}

export function checkpointRef(note: string | undefined | null): CheckpointRef | null {
  if (!note) return null;
  try {
    const c = parseCheckpoint(parseNote(note).text);
    return { note, origin: c.origin, size: c.size };
  } catch {
    return { note };
  }
}

const signedBytes = (report: ReconcileReport) =>
  Buffer.from(`${REPORT_CONTEXT}\n${canonicalJson(report)}`, 'utf8');

export function signReport(given: ReconcileReport, signer: NoteSigner): SignedReport {
  // Exactly what JSON will carry (no undefined members), so the file verifies as written.
  const report = JSON.parse(JSON.stringify(given)) as ReconcileReport;
  return {
    report,
    signature: {
      alg: 'Ed25519',
      context: REPORT_CONTEXT,
      keyName: signer.name,
      keyId: keyIdHex(signer.keyId),
      verifierKey: signer.verifierKey,
      value: signer.sign(signedBytes(report)).toString('base64'),
    },
  };
}

/** Checks a signed report (parsed JSON) against a trusted verifier of the journal's key. */
export function verifyReport(signed: unknown, verifier: NoteVerifier): boolean {
  const s = signed as Partial<SignedReport> | null;
  if (!s || typeof s !== 'object' || !s.report || !s.signature) return false;
  const sig = s.signature;
  if (sig.alg !== 'Ed25519' || sig.context !== REPORT_CONTEXT || typeof sig.value !== 'string') return false;
  if (sig.keyName !== verifier.name || sig.keyId !== keyIdHex(verifier.keyId)) return false;
  return verifier.verify(signedBytes(s.report), Buffer.from(sig.value, 'base64'));
}

/** The report file's text (pretty JSON; the signature covers the canonical form, not the layout). */
export function reportText(signed: SignedReport): string {
  return `${JSON.stringify(signed, null, 2)}\n`;
}

export const sha256Hex = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** The summary table printed by the CLI. */
export function summaryTable(r: ReconcileReport): string {
  const rows: Array<[string, string]> = [
    ['missing_at_partner', String(r.summary.missing_at_partner)],
    ['missing_at_us', String(r.summary.missing_at_us)],
    ['content_mismatch', String(r.summary.content_mismatch)],
    [`timing_skew (> ${r.options.skewToleranceMs} ms)`, String(r.summary.timing_skew)],
  ];
  const w = Math.max(...rows.map(([k]) => k.length), 'difference'.length);
  const lines = [`${'difference'.padEnd(w)}  count`, `${'-'.repeat(w)}  -----`];
  for (const [k, v] of rows) lines.push(`${k.padEnd(w)}  ${v.padStart(5)}`);
  const total = r.differences.length;
  lines.push(`${'total'.padEnd(w)}  ${String(total).padStart(5)}`);
  return `${lines.join('\n')}\n`;
}
