/**
 * C2SP tlog-witness `add-checkpoint` (contract §8.2), independent of storage and transport: the
 * request body's format, and the witness's decision given the latest checkpoint it cosigned for the
 * origin. The caller loads that state and stores the new one atomically (in one transaction with a
 * row lock), and maps {@link WitnessRefusal} statuses to HTTP.
 */
import { verifyConsistency } from './merkle.ts';
import {
  NoteError,
  type NoteSigner,
  type NoteVerifier,
  openNote,
  parseCheckpoint,
  signatureLine,
} from './note.ts';

/** At most this many consistency proof lines (the spec's limit). */
export const MAX_PROOF_LINES = 63;

export class WitnessRefusal extends Error {
  override readonly name = 'WitnessRefusal';
  /** 400 malformed, 403 no trusted signature, 404 unknown origin, 409 conflict, 422 bad proof. */
  readonly status: 400 | 403 | 404 | 409 | 422;
  /** For 409 on an old-size mismatch: the size the witness holds (answered as `text/x.tlog.size`). */
  readonly knownSize: number | undefined;
  constructor(status: 400 | 403 | 404 | 409 | 422, message: string, knownSize?: number) {
    super(message);
    this.status = status;
    this.knownSize = knownSize;
  }
}

export interface AddCheckpointRequest {
  oldSize: number;
  proof: Buffer[];
  /** The checkpoint as a signed note. */
  note: string;
}

export function formatAddCheckpoint(req: AddCheckpointRequest): string {
  return `old ${req.oldSize}\n${req.proof.map((p) => `${p.toString('base64')}\n`).join('')}\n${req.note}`;
}

export function parseAddCheckpoint(body: string): AddCheckpointRequest {
  const lines: string[] = [];
  let rest = body;
  for (;;) {
    const nl = rest.indexOf('\n');
    if (nl < 0) throw new WitnessRefusal(400, 'the body ends before the checkpoint');
    const line = rest.slice(0, nl);
    rest = rest.slice(nl + 1);
    if (line === '') break;
    lines.push(line);
    if (lines.length > MAX_PROOF_LINES + 1) throw new WitnessRefusal(400, 'too many consistency proof lines');
  }
  const m = /^old (0|[1-9][0-9]{0,15})$/.exec(lines[0] ?? '');
  if (!m) throw new WitnessRefusal(400, 'the first line must be `old <size>`');
  const oldSize = Number(m[1]);
  const proof = lines.slice(1).map((l) => {
    if (!/^[A-Za-z0-9+/]{43}=$/.test(l)) throw new WitnessRefusal(400, 'a proof line is not a base64 hash');
    return Buffer.from(l, 'base64');
  });
  return { oldSize, proof, note: rest };
}

export interface WitnessedState {
  size: number;
  root: Buffer;
}

/**
 * The witness's decision: the checkpoint to store (and the cosignature lines to answer), or a
 * {@link WitnessRefusal}. `verifiers(origin)` gives the log keys trusted for an origin, undefined for an
 * unknown origin.
 */
export function witnessCheckpoint(opts: {
  request: AddCheckpointRequest;
  verifiers: (origin: string) => readonly NoteVerifier[] | undefined;
  /** The latest checkpoint cosigned for the request's origin, if any. */
  stored: (origin: string) => WitnessedState | undefined;
  cosigner: NoteSigner;
}): { origin: string; size: number; root: Buffer; note: string; cosignature: string } {
  const { request } = opts;
  let text: string;
  // The origin is the first line of the note text, read before any signature is checked.
  const nl = request.note.indexOf('\n');
  if (nl <= 0) throw new WitnessRefusal(400, 'no checkpoint');
  const origin = request.note.slice(0, nl);
  const trusted = opts.verifiers(origin);
  if (!trusted) throw new WitnessRefusal(404, 'unknown log origin');
  try {
    text = openNote(request.note, trusted).text;
  } catch (err) {
    if (err instanceof NoteError && /no signature by a known key|does not verify/.test(err.message)) {
      throw new WitnessRefusal(403, 'no valid signature by a trusted log key');
    }
    throw new WitnessRefusal(400, `malformed checkpoint: ${(err as Error).message}`);
  }
  let cp: ReturnType<typeof parseCheckpoint>;
  try {
    cp = parseCheckpoint(text);
  } catch (err) {
    throw new WitnessRefusal(400, `malformed checkpoint: ${(err as Error).message}`);
  }
  if (cp.origin !== origin) throw new WitnessRefusal(400, 'malformed checkpoint');
  if (request.oldSize > cp.size) throw new WitnessRefusal(400, 'old size is larger than the checkpoint');
  const stored = opts.stored(origin) ?? { size: 0, root: Buffer.alloc(0) };
  if (request.oldSize !== stored.size) {
    throw new WitnessRefusal(409, `the witness holds size ${stored.size}`, stored.size);
  }
  if (request.oldSize === cp.size) {
    if (stored.size > 0 && !stored.root.equals(cp.root))
      throw new WitnessRefusal(409, 'same size, another root');
    if (request.proof.length > 0) throw new WitnessRefusal(422, 'a proof between equal sizes must be empty');
  } else if (request.oldSize === 0) {
    if (request.proof.length > 0) throw new WitnessRefusal(422, 'the proof from size 0 must be empty');
  } else if (!verifyConsistency(stored.size, cp.size, request.proof, stored.root, cp.root)) {
    throw new WitnessRefusal(422, 'the consistency proof does not verify');
  }
  const sig = opts.cosigner.sign(Buffer.from(text, 'utf8'));
  return {
    origin,
    size: cp.size,
    root: cp.root,
    note: request.note,
    cosignature: `${signatureLine(opts.cosigner.name, opts.cosigner.keyId, sig)}\n`,
  };
}
