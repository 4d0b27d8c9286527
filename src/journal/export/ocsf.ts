/**
 * A journal row as an OCSF event of class API Activity (class_uid 6003, category Application Activity)
 * for a SIEM. Mapping:
 * - `time`: the row's time in epoch milliseconds; `metadata.uid`: the entry id; `metadata.sequence`:
 *   the journal `seq`; `metadata.correlation_uid`: the action's eventId (contract §8.3, the partner's
 *   UUIDv7) or commandId (our door command); `metadata.log_name`: the log's origin.
 * - `activity_id` from the action's last word (`*.create` → Create, `*.view` → Read, `*.revoke` →
 *   Delete, …), Other (99) with the action itself as `activity_name` otherwise.
 * - `actor.user`: the actor's internal id (resident, operator, partner) or `smart-home` for the system,
 *   `type_id` User / Admin / System / Other (partner).
 * - `api.operation`: the action; `api.request.uid`: the request id.
 * - `device`: the device's internal id; `resources`: the subject (type and internal id or pseudonym).
 * - `status_id`: Success / Failure / Other from the result; `status_detail`: the result as recorded.
 * - `unmapped`: the partner id and the entry's details.
 * Entries hold internal ids and pseudonyms only, and so does every event made from them: no names,
 * phones, plates or addresses (no source IP is recorded either, hence the bare `src_endpoint`).
 */

import type { JournalRow } from '../log/leaf.ts';
import { entryTimeMs } from './time.ts';

export const OCSF_VERSION = '1.3.0';
export const OCSF_CLASS_API_ACTIVITY = 6003;
const CATEGORY_APPLICATION_ACTIVITY = 6;

const ACTIVITIES: Record<number, string> = { 1: 'Create', 2: 'Read', 3: 'Update', 4: 'Delete' };
const VERB_ACTIVITY: Record<string, number> = {
  create: 1,
  add: 1,
  view: 2,
  read: 2,
  get: 2,
  list: 2,
  'data-export': 2,
  export: 2,
  update: 3,
  'key-rotate': 3,
  rotate: 3,
  delete: 4,
  remove: 4,
  revoke: 4,
  'key-retire': 4,
  retire: 4,
};

const SUCCESS = new Set([
  'ok',
  'allow',
  'allowed',
  'granted',
  'created',
  'updated',
  'deleted',
  'sent',
  'opened',
  'accepted',
  'success',
]);
const FAILURE = new Set([
  'deny',
  'denied',
  'rejected',
  'refused',
  'expired',
  'device_offline',
  'timeout',
  'partner_error',
  'failed',
  'error',
]);

const USER_TYPES: Record<string, { type_id: number; type: string }> = {
  resident: { type_id: 1, type: 'User' },
  operator: { type_id: 2, type: 'Admin' },
  system: { type_id: 3, type: 'System' },
  partner: { type_id: 99, type: 'Partner' },
};

export function activityOf(action: string): { id: number; name: string } {
  const verb = action.slice(action.lastIndexOf('.') + 1);
  const id = VERB_ACTIVITY[verb];
  return id ? { id, name: ACTIVITIES[id]! } : { id: 99, name: action };
}

export function statusOf(result: string): { id: number; name: string } {
  if (SUCCESS.has(result)) return { id: 1, name: 'Success' };
  if (FAILURE.has(result)) return { id: 2, name: 'Failure' };
  return { id: 99, name: 'Other' };
}

export interface OcsfOptions {
  /** The log's origin line (contract §8.1), as `metadata.log_name`. */
  origin: string;
}

export function ocsfEvent(row: JournalRow, opts: OcsfOptions): Record<string, unknown> {
  const activity = activityOf(row.action);
  const status = statusOf(row.result);
  const user = USER_TYPES[row.actor_type] ?? { type_id: 0, type: 'Unknown' };
  const details = row.details ?? {};
  const correlation = details['eventId'] ?? details['commandId'];
  const event: Record<string, unknown> = {
    class_uid: OCSF_CLASS_API_ACTIVITY,
    class_name: 'API Activity',
    category_uid: CATEGORY_APPLICATION_ACTIVITY,
    category_name: 'Application Activity',
    activity_id: activity.id,
    activity_name: activity.name,
    type_uid: OCSF_CLASS_API_ACTIVITY * 100 + activity.id,
    type_name: `API Activity: ${activity.name}`,
    severity_id: 1,
    severity: 'Informational',
    time: entryTimeMs(row.at_us),
    message: `${row.action}: ${row.result}`,
    status_id: status.id,
    status: status.name,
    status_detail: row.result,
    metadata: {
      version: OCSF_VERSION,
      product: { name: 'smart-home', vendor_name: 'PropDevelopment' },
      uid: row.id,
      sequence: Number(row.seq),
      log_name: opts.origin,
      log_provider: 'smart-home journal',
      ...(typeof correlation === 'string' ? { correlation_uid: correlation } : {}),
    },
    actor: { user: { uid: row.actor_id ?? 'smart-home', ...user } },
    api: {
      operation: row.action,
      service: { name: 'smart-home' },
      ...(row.request_id ? { request: { uid: row.request_id } } : {}),
    },
    cloud: { provider: 'self-hosted' },
    src_endpoint:
      row.actor_type === 'partner' && row.partner_id
        ? { uid: row.partner_id, type: 'partner' }
        : { name: row.actor_type },
    ...(row.device_id ? { device: { uid: row.device_id, type_id: 99, type: 'access point' } } : {}),
    ...(row.subject_id || row.subject_type
      ? { resources: [{ uid: row.subject_id, type: row.subject_type }] }
      : {}),
    unmapped: { partner_id: row.partner_id, details },
  };
  return event;
}
