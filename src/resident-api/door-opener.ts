import type { DoorOutcome } from '../outbound/door-open.ts';
import { OutboundError } from '../outbound/errors.ts';
import type { Outbound } from '../outbound/outbound.ts';

/**
 * What the resident API needs from the outbound partner channel (src/outbound/, contract §7): a door
 * command made first (so it is journaled before anything leaves), then sent and answered with its
 * outcome. The channel computes the per-partner pseudonym, signs the request, and never sends or
 * retries after `expiresAt`.
 */
export type { DoorOutcome };

/** Every outcome of {@link DoorOutcome}: what the resident API answers and journals. */
export const DOOR_OUTCOMES: readonly DoorOutcome[] = [
  'opened',
  'rejected',
  'expired',
  'device_offline',
  'timeout',
  'partner_error',
];

export interface DoorSendResult {
  status: DoorOutcome;
  failure?: string | undefined;
  partnerMs?: number | undefined;
}

export interface PreparedDoorCommand {
  /** UUIDv7; the partner treats a repeated id as the same command (§7). */
  commandId: string;
  requestedAt: Date;
  expiresAt: Date;
  /**
   * Sends the command; resolves with its outcome by `expiresAt`. `failure` is for the journal only;
   * `partnerMs` is the time spent waiting on the partner (Server-Timing `partner`), when known.
   */
  send(): Promise<DoorSendResult>;
}

export interface DoorOpener {
  /** Makes the command without sending it; throws {@link DoorNotCommandable} when the partner takes none. */
  prepare(input: {
    partnerId: string;
    doorExternalId: string;
    residentId: string;
  }): Promise<PreparedDoorCommand>;
}

/** The door's partner takes no commands from us (no outbound registration, or disabled). */
export class DoorNotCommandable extends Error {
  override readonly name = 'DoorNotCommandable';
}

/** The resident API's doors through the outbound channel (`runtime.outbound`, `AppDeps.outbound`). */
export function outboundDoorOpener(outbound: Pick<Outbound, 'prepareDoorOpen' | 'sendDoorOpen'>): DoorOpener {
  return {
    async prepare(input) {
      let cmd: Awaited<ReturnType<Outbound['prepareDoorOpen']>>;
      try {
        cmd = await outbound.prepareDoorOpen({
          partner: input.partnerId,
          doorExternalId: input.doorExternalId,
          residentId: input.residentId,
        });
      } catch (err) {
        if (
          err instanceof OutboundError &&
          (err.code === 'ERR_OUTBOUND_NOT_CONFIGURED' || err.code === 'ERR_OUTBOUND_UNKNOWN_DOOR')
        )
          throw new DoorNotCommandable(err.message, { cause: err });
        throw err;
      }
      return {
        commandId: cmd.commandId,
        requestedAt: new Date(cmd.requestedAt),
        expiresAt: new Date(cmd.expiresAt),
        async send() {
          const r = await outbound.sendDoorOpen(cmd);
          return { status: r.status, failure: r.reason, partnerMs: r.partnerMs };
        },
      };
    },
  };
}
