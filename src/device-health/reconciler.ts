/**
 * What smart-home does after a device reboots (issue 5): "a device reboot triggers reconciliation of what
 * the partner should hold for it (for now: nothing but its liveness; face templates will use the same
 * hook)". The sweeper (sweeper.ts) runs the reconciler for every device whose `reconcile_pending` flag a
 * reboot set, in a transaction that also journals `device.reconcile` and clears the flag.
 */
import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';

export interface ReconcileTarget {
  deviceId: string;
  partnerId: string;
  /** When the (first unreconciled) reboot was received, our clock. */
  requestedAt: Date;
}

export interface DeviceReconciler {
  /**
   * Checks (and, for later checks, restores) what the partner should hold for the device. Runs inside
   * the sweeper's transaction; returns what it checked, for the journal entry (internal ids and codes
   * only). Throwing leaves the reconciliation pending for the next sweep.
   */
  reconcile(
    tx: Queryable,
    target: ReconcileTarget,
    now: Date,
  ): Promise<{ checked: string[] } & Record<string, unknown>>;
}

/** Liveness only: the device's health state and how long ago it was last heard. */
export const livenessReconciler: DeviceReconciler = {
  async reconcile(tx, target, now) {
    const h = await tx.one<{ state: string; last_heartbeat_at: Date | null; last_seen_at: Date | null }>(
      sql`select state, last_heartbeat_at, last_seen_at from device_health where device_id = ${target.deviceId}`,
    );
    return {
      checked: ['liveness'],
      state: h?.state ?? 'unknown',
      lastHeartbeatAt: h?.last_heartbeat_at?.toISOString() ?? null,
      sinceHeartbeatMs: h?.last_heartbeat_at ? now.getTime() - h.last_heartbeat_at.getTime() : null,
    };
  },
};
