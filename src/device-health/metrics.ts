/**
 * Device health instruments (src/metrics/registry.ts). Labels are internal ids and codes only. Gauges
 * per device are this process's view of the devices whose events it processed; the database
 * (`device_health`) is the shared truth every instance reads through the operator API.
 */
import { counter, gauge } from '../metrics/registry.ts';

export const skewSeconds = gauge(
  'smart_home_device_clock_skew_seconds',
  'receivedAt − occurredAt of the newest event of a device, seconds (issue 5: clock skew per device)',
  ['device'],
);
export const skewFlagged = gauge(
  'smart_home_device_clock_skew_flagged',
  '1 when the device’s clock skew is beyond SMART_HOME_DEVICE_MAX_SKEW_MS, else 0',
  ['device'],
);
export const alertsRaised = counter(
  'smart_home_device_alerts_raised_total',
  'Operator alerts opened (tamper, door_forced, door_held_open); a repeat while one is open is not counted',
  ['kind'],
);
export const devicesTimedOut = counter(
  'smart_home_device_heartbeat_timeouts_total',
  'Devices declared offline after missing their heartbeats (contract §9)',
);
export const devicesByState = gauge(
  'smart_home_devices',
  'Devices by health state (unknown: never heard from), as the sweeper last counted them',
  ['state'],
);
export const reconciliations = counter(
  'smart_home_device_reconciliations_total',
  'Device reconciliations run after a reboot, by result',
  ['result'],
);
