import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { PartnerClient } from '../../simulator/partner-client.ts';
import { sql } from '../../src/db/sql.ts';
import { retirePartnerKey, rotatePartnerKeys } from '../../src/registry/partner-key-rotation.ts';
import { type Harness, startHarness } from '../support/harness.ts';
import { PLATES, standardWorld } from '../support/world.ts';

let h: Harness;
let north: PartnerClient;
const actor = { type: 'operator' as const, id: 'test' };

before(async () => {
  h = await startHarness({
    partners: [{ code: 'barrier-north' }, { code: 'barrier-south' }],
    document: (ids) => standardWorld(ids),
  });
  north = await h.client('barrier-north');
});
after(() => h.close());

test('a rotated plate key works alongside the old one, and a retired one is refused', async () => {
  const deps = { db: h.runtime.db, cipher: h.runtime.cipher };
  const { kid, tokens } = await rotatePartnerKeys(deps, 'barrier-north', actor);
  assert.equal(kid, 'barrier-north-v2');
  assert.equal(tokens, 8, '2 vehicles + 2 passes, for each of the two active kids');
  await h.runtime.app.reloadDirectory();
  // The partner receives both keys through the ceremony again.
  assert.deepEqual(await north.importKeys(await h.exportKeys('barrier-north')), [
    'barrier-north-v2',
    'barrier-north-v1',
  ]);
  for (const k of ['barrier-north-v1', 'barrier-north-v2']) {
    const res = await north.barrierRead('gate-1', PLATES.anna, { kid: k });
    assert.equal(res.body['decision'], 'open', `kid ${k}`);
  }
  await retirePartnerKey(deps, 'barrier-north', 'barrier-north-v1', actor);
  await h.runtime.app.reloadDirectory();
  assert.equal((await north.barrierRead('gate-1', PLATES.anna, { kid: 'barrier-north-v1' })).status, 400);
  assert.equal(
    (await north.barrierRead('gate-1', PLATES.anna, { kid: 'barrier-north-v2' })).body['decision'],
    'open',
  );
  await assert.rejects(retirePartnerKey(deps, 'barrier-north', 'barrier-north-v2', actor), /only active key/);
  const journaled = await h.runtime.db.query(
    sql`select action from journal where action like 'registry.partner.key-%' order by seq`,
  );
  assert.deepEqual(
    journaled.map((r) => r['action']),
    ['registry.partner.key-rotate', 'registry.partner.key-retire'],
  );
});
