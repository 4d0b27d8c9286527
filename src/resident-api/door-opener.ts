/**
 * What the resident API needs from the outbound partner channel (src/outbound/, contract §7): one
 * door command, answered with its outcome. The channel computes the per-partner pseudonym, signs the
 * request, and never sends or retries after `expiresAt`; the resident API journals before and after.
 */
export type DoorOutcome = 'opened' | 'rejected' | 'expired' | 'device_offline' | 'timeout' | 'partner_error';

export const DOOR_OUTCOMES: readonly DoorOutcome[] = [
  'opened',
  'rejected',
  'expired',
  'device_offline',
  'timeout',
  'partner_error',
];

export interface DoorCommand {
  /** UUIDv7; the partner treats a repeated id as the same command (§7). */
  commandId: string;
  partnerId: string;
  /** The partner's own id of the door (the only device id it knows). */
  doorExternalId: string;
  /** residents.id: the channel turns it into the partner's pseudonym; it never leaves as is. */
  residentId: string;
  requestedAt: Date;
  expiresAt: Date;
  /** Our request id, for the channel's logs. */
  requestId: string;
}

export interface DoorOpener {
  /**
   * Sends the command and resolves with its outcome; should not throw (a throw is recorded as
   * `partner_error`). The resident API stops waiting at `expiresAt` and records `timeout`.
   */
  openDoor(cmd: DoorCommand): Promise<DoorOutcome>;
}

/** Without an outbound channel configured every door answers `partner_error` (nothing is sent). */
export const NO_DOOR_OPENER: DoorOpener = {
  openDoor: async () => 'partner_error',
};
