/**
 * Device health end to end (issue 5): the simulator's devices report through POST /partner/v1/events
 * over real mTLS; the processor hands the events to device health in its transaction; an operator,
 * signed in through the people's authorization server, sees the device online, the tamper alert it
 * raised, resolves it, and the sweeper takes the device offline when its heartbeats stop (per-partner
 * settings); a reboot is reconciled. Stale events are recorded and acted upon never.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { PartnerEventLog } from '../../simulator/events.ts';
import { deliverEvents } from '../../simulator/events-sender.ts';
import { type LocalStack, startLocalStack } from '../../simulator/local-stack.ts';
import { ResidentApp } from '../../simulator/resident-app.ts';
import { sql } from '../../src/db/sql.ts';
import { livenessReconciler } from '../../src/device-health/reconciler.ts';
import { sweepDevices } from '../../src/device-health/sweeper.ts';
import { createOperator } from '../../src/identity/operators.ts';
import { writeOAuthClients } from '../support/oauth-clients.ts';
import { createTestDb } from '../support/test-db.ts';

const WEB_REDIRECT = 'https://console.example/callback';
const CONSOLE_SECRET = 'console-secret-console-secret-console-secret';
const PASSWORD = 'correct horse battery staple';
let h: LocalStack;
let op: ResidentApp;
let clientsDir: string;
const doors = new Map<string, string>();
const log = new PartnerEventLog({ seed: 42 });

before(async () => {
  clientsDir = await mkdtemp(path.join(tmpdir(), 'smart-home-health-'));
  const clientsFile = await writeOAuthClients(clientsDir, [
    {
      clientId: 'operator-console',
      role: 'operator',
      redirectUris: [WEB_REDIRECT],
      clientSecret: CONSOLE_SECRET,
    },
  ]);
  h = await startLocalStack({
    partners: [{ code: 'doors-north' }],
    db: await createTestDb(),
    env: { SMART_HOME_OAUTH_CLIENTS_FILE: clientsFile, SMART_HOME_EVENTS_STALE_AFTER_S: '300' },
    document: async (ids) => {
      const id = ids.get('doors-north')!;
      return {
        version: 1,
        complexes: [{ code: 'north', name: 'ЖК Северный', buildings: [] }],
        partners: [
          {
            code: 'doors-north',
            name: 'Intercom vendor',
            scopes: ['events:write'],
            complexes: ['north'],
            networks: ['127.0.0.1/32'],
            certificates: [id.thumbprint],
            signingKeys: [id.signing.publicJwk as never],
            encryptionKeys: [id.encryption.publicJwk as never],
            heartbeat: { intervalSeconds: 10, missed: 2 },
          },
        ],
        devices: ['door-1', 'door-2'].map((externalId) => ({
          partner: 'doors-north',
          externalId,
          kind: 'door' as const,
          name: externalId,
          complex: 'north',
        })),
      };
    },
  });
  for (const r of await h.runtime.db.query<{ id: string; external_id: string }>(
    sql`select id::text as id, external_id from devices`,
  ))
    doors.set(r.external_id, r.id);
  const { otpauthUri } = await createOperator(
    { db: h.runtime.db, cipher: h.runtime.cipher },
    'duty.health',
    PASSWORD,
  );
  op = new ResidentApp({
    issuer: h.publicUrl,
    ca: h.serverCa,
    clientId: 'operator-console',
    redirectUri: WEB_REDIRECT,
    clientSecret: CONSOLE_SECRET,
  });
  await op.signInOperator('duty.health', PASSWORD, new URL(otpauthUri).searchParams.get('secret')!);
});
after(async () => {
  await op?.close();
  await h?.close();
  await rm(clientsDir, { recursive: true, force: true });
});

/** The simulator's sender delivers; the processor runs (startServer runs it in the background). */
async function deliver(events: ReturnType<PartnerEventLog['append']>[]) {
  const report = await deliverEvents(events, { client: await h.client('doors-north') });
  assert.equal(report.events, events.length);
  await h.runtime.app.events.processAll();
}

type Device = { id: string; health: Record<string, unknown>; alerts?: Array<Record<string, unknown>> };
type Page<T> = { items: T[]; nextCursor: string | null };

test('a tamper reported by the simulator raises an alert the operator sees, and resolves', async () => {
  await deliver([
    log.append({ type: 'device.heartbeat', device: 'door-1' }),
    log.append({ type: 'device.status', device: 'door-1', status: 'tamper' }),
    log.append({ type: 'device.heartbeat', device: 'door-2' }),
  ]);
  const alerts = await op.admin<Page<Record<string, unknown>>>('GET', '/alerts');
  assert.equal(alerts.status, 200, JSON.stringify(alerts.body));
  assert.deepEqual(
    alerts.body.items.map((a) => [a['kind'], a['deviceId']]),
    [['tamper', doors.get('door-1')]],
  );
  const device = await op.admin<Device>('GET', `/devices/${doors.get('door-1')}`);
  assert.equal(device.body.health['state'], 'online');
  assert.equal(device.body.health['openAlerts'], 1);
  assert.equal(device.body.alerts?.[0]?.['id'], alerts.body.items[0]!['id']);
  const raised = await h.runtime.db.query<{ subject_id: string }>(
    sql`select subject_id from journal where action = 'device.alert.raised'`,
  );
  assert.deepEqual(
    raised.map((r) => r.subject_id),
    [alerts.body.items[0]!['id']],
  );
  const resolved = await op.admin<Record<string, unknown>>(
    'POST',
    `/alerts/${alerts.body.items[0]!['id']}/resolve`,
    { note: 'checked on site' },
  );
  assert.equal(resolved.status, 200, JSON.stringify(resolved.body));
  const operator = await h.runtime.db.one<{ id: string }>(
    sql`select id::text as id from operators where login = 'duty.health'`,
  );
  assert.equal(resolved.body['resolvedBy'], operator!.id, 'the operator’s id, never a login or name');
  assert.deepEqual((await op.admin<Page<unknown>>('GET', '/alerts')).body.items, []);
});

test('stale events are recorded, never acted upon; the heartbeat time-out and a reboot follow the partner’s settings', async () => {
  const old = Date.now() - 3600_000;
  await deliver([
    log.append({ type: 'device.status', device: 'door-2', status: 'door_forced', occurredAt: old }),
    log.append({ type: 'device.status', device: 'door-2', status: 'offline', occurredAt: old + 1 }),
  ]);
  const list = await op.admin<Page<Device>>('GET', '/devices?state=online');
  assert.deepEqual(new Set(list.body.items.map((d) => d.id)), new Set(doors.values()));
  const door2 = (await op.admin<Device>('GET', `/devices/${doors.get('door-2')}`)).body;
  assert.equal(door2.health['openAlerts'], 0);
  assert.equal(door2.health['skewFlagged'], true, 'an hour late is far beyond the skew bound');
  // 10 s × 2 missed heartbeats for this partner (the default would be 30 s × 3); door-1 reboots now.
  await deliver([log.append({ type: 'device.status', device: 'door-1', status: 'reboot' })]);
  const sweep = (afterMs: number) =>
    sweepDevices(h.runtime.db, new Date(Date.now() + afterMs), { reconciler: livenessReconciler });
  const early = await sweep(15_000);
  assert.deepEqual(early.timedOut, []);
  assert.deepEqual(early.reconciled, [doors.get('door-1')]);
  const late = await sweep(25_000);
  assert.deepEqual(new Set(late.timedOut), new Set(doors.values()));
  const offline = await op.admin<Page<Device>>('GET', '/devices?state=offline');
  assert.deepEqual(new Set(offline.body.items.map((d) => d.id)), new Set(doors.values()));
  const history = (
    await op.admin<Device & { statusHistory: Array<Record<string, unknown>> }>(
      'GET',
      `/devices/${doors.get('door-2')}`,
    )
  ).body.statusHistory;
  assert.deepEqual(
    history.map((s) => [s['status'], s['source'], s['stale']]),
    [
      ['offline', 'heartbeat-timeout', false],
      ['offline', 'event', true],
      ['door_forced', 'event', true],
    ],
  );
  const reconcile = await h.runtime.db.query<{ device_id: string; details: Record<string, unknown> }>(
    sql`select device_id::text as device_id, details from journal where action = 'device.reconcile'`,
  );
  assert.deepEqual(
    reconcile.map((r) => [r.device_id, r.details['checked']]),
    [[doors.get('door-1'), ['liveness']]],
  );
});
