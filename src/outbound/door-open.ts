/**
 * Contract §7, smart-home's side: a door-open command to the intercom partner.
 *
 *   POST {partnerBase}/v1/doors/{doorId}/open
 *   {"commandId","subject","requestedAt","expiresAt"}  →  200 {"commandId","status","at"}
 *
 * Rules kept here: `expiresAt` ≤ 10 s after `requestedAt`; nothing is sent, nor sent again, once
 * `expiresAt` has passed; the command is idempotent by `commandId` (the partner treats a repeat as the
 * same command), so it follows the channel's retry rule for idempotent requests (src/outbound/
 * resilience.ts: after a connection error or a 429/502/503/504, at most `retryAttempts` attempts,
 * full-jitter backoff) with `expiresAt` as its deadline; a partner whose circuit is open, whose
 * bulkhead is full, or whose Retry-After runs past `expiresAt` gets nothing at all. The whole wait
 * ends at `expiresAt`. Journaling is the caller's.
 */
import { type Static, Type as T } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { isUuidV7 } from '../util/uuid.ts';
import { OutboundError } from './errors.ts';
import { type PartnerChannel, pause } from './partner-channel.ts';
import { isRetryableStatus } from './resilience.ts';

/** Contract §7: `expiresAt` is at most 10 s after `requestedAt`. */
export const MAX_DOOR_COMMAND_TTL_MS = 10_000;

/** The answers a partner may give (contract §7). */
export type PartnerDoorStatus = 'opened' | 'rejected' | 'expired' | 'device_offline';

/**
 * What a door-open ends with: the partner's answer, or `timeout` (no answer by `expiresAt` or by the
 * call's total timeout), or `partner_error` (no trustworthy answer: TLS not trusted, token refused,
 * an HTTP error, an unsigned or badly signed answer, an answer outside the schema or about another
 * command). `expired` is also what a command gets when its `expiresAt` passed before it could be sent.
 */
export type DoorOutcome = PartnerDoorStatus | 'timeout' | 'partner_error';

/** Why a door-open ended in `partner_error`, `timeout` or a locally decided `expired` (for journal and logs). */
export type DoorFailureReason =
  | 'expired_before_send'
  /** The partner's circuit breaker is open (it failed repeatedly): nothing sent. */
  | 'circuit_open'
  /** The partner's bulkhead is full: nothing sent. */
  | 'overloaded'
  /** The partner asked to wait (429/503 Retry-After) past `expiresAt`: nothing (more) sent. */
  | 'throttled'
  | 'tls'
  | 'connect'
  | 'timeout'
  | 'token'
  | 'signature'
  | 'http_status'
  | 'invalid_answer'
  | 'command_mismatch';

/** The command as sent (contract §7); `subject` is the partner's pseudonym of the resident. */
export interface DoorCommand {
  partnerId: string;
  doorExternalId: string;
  commandId: string;
  subject: string;
  requestedAt: string;
  expiresAt: string;
}

export interface DoorOpenResult {
  status: DoorOutcome;
  command: DoorCommand;
  /** The partner's `at` (RFC 3339) when it answered with one. */
  at?: string;
  /** HTTP status of the last answer, when one was received and verified. */
  httpStatus?: number;
  /** Requests actually sent (0 when the command expired before it could be). */
  attempts: number;
  reason?: DoorFailureReason;
  /**
   * ms spent waiting on the partner (performance.now()): its token endpoint when the cached token is
   * renewed, each request from handing it to the HTTP client until the answer's last byte (or the
   * failure), and pauses before a retry. Our own work (signing, verifying, parsing) is not in it; the
   * `partner` metric of the door-open route's Server-Timing header.
   */
  partnerMs: number;
}

const RFC3339 = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,9})?(Z|[+-]\\d{2}:\\d{2})$';

/** The partner's answer (contract §7); unknown fields are refused like everywhere else. */
export const DoorAnswer = T.Object(
  {
    commandId: T.String({ maxLength: 36 }),
    status: T.Union([
      T.Literal('opened'),
      T.Literal('rejected'),
      T.Literal('expired'),
      T.Literal('device_offline'),
    ]),
    at: T.Optional(T.String({ pattern: RFC3339, maxLength: 40 })),
  },
  { additionalProperties: false },
);
export type DoorAnswer = Static<typeof DoorAnswer>;
const checkAnswer = TypeCompiler.Compile(DoorAnswer);

/** The command body (contract §7), as the partner's side validates it too. */
export const DoorCommandBody = T.Object(
  {
    commandId: T.String({
      pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$',
    }),
    subject: T.String({ pattern: '^[A-Za-z0-9_-]{43}$' }),
    requestedAt: T.String({ pattern: RFC3339, maxLength: 40 }),
    expiresAt: T.String({ pattern: RFC3339, maxLength: 40 }),
  },
  { additionalProperties: false },
);
export type DoorCommandBody = Static<typeof DoorCommandBody>;

export function doorPath(doorExternalId: string): string {
  return `/v1/doors/${encodeURIComponent(doorExternalId)}/open`;
}

/**
 * Sends a prepared command and waits for the verified answer, at most until its `expiresAt`.
 * Never throws for anything the partner or the network does: every such case is an outcome.
 */
/** Failures of the channel's guard: nothing left for the partner. */
const NOT_SENT = new Set([
  'ERR_OUTBOUND_CIRCUIT_OPEN',
  'ERR_OUTBOUND_BULKHEAD_FULL',
  'ERR_OUTBOUND_THROTTLED',
]);

export async function sendDoorCommand(
  channel: PartnerChannel,
  command: DoorCommand,
): Promise<DoorOpenResult> {
  const now = Date.now;
  const deadline = Date.parse(command.expiresAt);
  if (!isUuidV7(command.commandId) || Number.isNaN(deadline)) {
    throw new TypeError('not a prepared door command');
  }
  const body: DoorCommandBody = {
    commandId: command.commandId,
    subject: command.subject,
    requestedAt: command.requestedAt,
    expiresAt: command.expiresAt,
  };
  const path = doorPath(command.doorExternalId);
  let attempts = 0;
  let retriedAfter401 = false;
  let partnerMs = 0;
  /** Awaits something the partner decides the duration of, adding it to partnerMs. */
  const waitOn = async <R>(p: Promise<R>): Promise<R> => {
    const t0 = performance.now();
    try {
      return await p;
    } finally {
      partnerMs += performance.now() - t0;
    }
  };
  const end = (status: DoorOutcome, extra: Partial<DoorOpenResult> = {}): DoorOpenResult => ({
    status,
    command,
    attempts,
    ...extra,
    partnerMs,
  });

  let unreachable = false;
  // Out of time: nothing ever tried is `expired`; a partner we tried and could not get an answer
  // from (unreachable, or no answer) is `timeout`.
  const outOfTime = () =>
    attempts === 0 && !unreachable
      ? end('expired', { reason: 'expired_before_send' })
      : end('timeout', { reason: unreachable ? 'connect' : 'timeout' });
  const guard = channel.guard;
  /** Tries (token requests that could not connect included) against the retry budget. */
  let tries = 0;
  /** Whether another try fits: budget left, and its backoff ends before expiresAt. Pauses if so. */
  const another = async (): Promise<boolean> => {
    if (tries >= guard.options.retryAttempts) return false;
    const delay = guard.retryDelay(tries);
    if (now() + delay >= deadline) return false;
    guard.retrying();
    await waitOn(pause(delay));
    return true;
  };
  /** What a failure of the channel that gave no answer means for the command. */
  const failed = (e: OutboundError, whileToken: boolean): DoorOpenResult => {
    switch (e.code) {
      case 'ERR_OUTBOUND_TIMEOUT':
        return end('timeout', { reason: 'timeout' });
      case 'ERR_OUTBOUND_TLS':
        return end('partner_error', { reason: 'tls' });
      case 'ERR_OUTBOUND_SIGNATURE':
        return end('partner_error', { reason: 'signature' });
      case 'ERR_OUTBOUND_CIRCUIT_OPEN':
        return end('partner_error', { reason: 'circuit_open' });
      case 'ERR_OUTBOUND_BULKHEAD_FULL':
        return end('partner_error', { reason: 'overloaded' });
      case 'ERR_OUTBOUND_THROTTLED':
        return end('partner_error', { reason: 'throttled' });
      case 'ERR_OUTBOUND_CONNECT':
        return now() >= deadline ? outOfTime() : end('timeout', { reason: 'connect' });
      default:
        return end('partner_error', { reason: whileToken ? 'token' : 'invalid_answer' });
    }
  };

  for (;;) {
    // Contract §7: never sent, nor sent again, once expiresAt has passed.
    if (now() >= deadline) return outOfTime();
    tries++;
    let token: string;
    try {
      token = await waitOn(channel.token(deadline));
    } catch (err) {
      if (!(err instanceof OutboundError)) throw err;
      if (err.code === 'ERR_OUTBOUND_CONNECT') {
        unreachable = true;
        if (await another()) continue;
      }
      return failed(err, true);
    }
    if (now() >= deadline) return outOfTime();

    attempts++;
    unreachable = false;
    let answer: Awaited<ReturnType<PartnerChannel['post']>>;
    const sentAt = performance.now();
    try {
      answer = await channel.post(path, body, token, deadline);
      partnerMs += answer.exchangeMs;
    } catch (err) {
      // No answer to take the exchange from: the whole attempt was spent on the partner.
      partnerMs += performance.now() - sentAt;
      if (!(err instanceof OutboundError)) throw err;
      // Refused by the channel's guard before the network: the command was not sent.
      if (NOT_SENT.has(err.code)) attempts--;
      if (err.code === 'ERR_OUTBOUND_CONNECT') {
        // The partner may or may not have received it; the same commandId makes a retry safe.
        unreachable = true;
        if (await another()) continue;
      }
      return failed(err, false);
    }

    if (answer.status === 401 && !retriedAfter401) {
      // The partner no longer accepts the cached token (revoked, rotated keys): one fresh token,
      // same command. Nothing was acted on for a 401, so it is not counted as a try.
      retriedAfter401 = true;
      tries--;
      channel.invalidateToken(token);
      continue;
    }
    if (isRetryableStatus(answer.status)) {
      // A Retry-After past expiresAt leaves nothing to wait for: the channel refuses the next try.
      if (guard.blockedUntil >= deadline) {
        return end('partner_error', { reason: 'throttled', httpStatus: answer.status });
      }
      if (await another()) continue;
    }
    if (answer.status !== 200) {
      if (answer.status === 401) channel.invalidateToken(token);
      return end('partner_error', { reason: 'http_status', httpStatus: answer.status });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer.body.toString('utf8'));
    } catch {
      return end('partner_error', { reason: 'invalid_answer', httpStatus: 200 });
    }
    if (!checkAnswer.Check(parsed)) {
      return end('partner_error', { reason: 'invalid_answer', httpStatus: 200 });
    }
    if (parsed.commandId !== command.commandId) {
      return end('partner_error', { reason: 'command_mismatch', httpStatus: 200 });
    }
    return end(parsed.status, { httpStatus: 200, ...(parsed.at !== undefined ? { at: parsed.at } : {}) });
  }
}
