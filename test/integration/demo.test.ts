import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

test('npm run demo plays its whole scenario with the outcomes it promises', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['scripts/demo.ts'], {
    env: { ...process.env, DATABASE_URL: '' },
    timeout: 120_000,
  });
  assert.match(stdout, /А123ВС77 at gate-1 → open \(resident_vehicle\); response signature verified/);
  assert.match(stdout, /Т001ТТ77 at gate-1 → deny \(not_registered\)/);
  assert.match(stdout, /pass valid now\) → open \(guest_pass\)/);
  assert.match(stdout, /pass for tomorrow\) → deny \(pass_not_valid_now\)/);
  assert.match(stdout, /at gate-yug → 404 urn:smart-home:problem:not-found/);
  assert.match(stdout, /Demo complete\./);
  assert.ok(!stdout.includes('Мария Петровна'), 'the journal listing shows no names');
});
