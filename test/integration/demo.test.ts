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

  // The resident's part (issue 3): the console sender shows the one-time code, masked phone only.
  assert.match(stdout, /\[smart-home sign-in\] one-time code for \+7…67: \d{6}\n/);
  assert.ok(!stdout.includes('+79161234567'), 'the console shows no whole phone number');
  assert.match(stdout, /signed in: DPoP-bound access token \(at\+jwt, ES256, \d+ s\)/);
  assert.match(stdout, /her apartment: 3, Подъезд 1, Корпус 1, ЖК «Северный»/);
  // Access points: the intercom's door and the barrier, by our names, never a vendor's device id.
  assert.match(stdout, /door {4}Подъезд 1, Корпус 1 {2}\([0-9a-f-]{36}\)/);
  assert.match(stdout, /barrier Въезд на паркинг {2}\([0-9a-f-]{36}\)/);
  const listing = stdout.slice(stdout.indexOf('10. she sees'), stdout.indexOf('11. she opens'));
  assert.doesNotMatch(listing, /door-k1-p1|gate-1|intercom-demo|barrier-demo/);
  // The door opened, the intercom acted on the command exactly once, under a pseudonym.
  assert.match(stdout, /Подъезд 1, Корпус 1 → opened\n/);
  assert.match(stdout, /the intercom acted on it once; it knows her only as pseudonym /);
  // A plate that is not Russian is refused with a reason; the new car then opens the barrier.
  assert.match(stdout, /400 invalid-plate: plate: character 1 is not one of the 12 letters/);
  assert.match(stdout, /201: Е777КХ77 \(private\)/);
  assert.match(stdout, /Е777КХ77 at gate-1 → open \(resident_vehicle\); response signature verified/);
  // The guest pass issued from the app is honoured by the barrier.
  assert.match(stdout, /201: pass active until /);
  assert.match(stdout, /М555МР55 \(her guest, pass from the app\) → open \(guest_pass\)/);
  // The export holds her own data: both cars, the app's pass among hers, the door opening.
  assert.match(stdout, /vehicles in the export: (?=.*А123ВС77)(?=.*Е777КХ77)/);
  assert.match(stdout, /guest passes in the export: (?=.*М555МР55)(?=.*К333КК33)/);
  assert.match(
    stdout,
    /history in the export: (?=[^\n]*door\.open\.result opened)(?=[^\n]*auth\.resident\.sign_in success)/,
  );
  // The journal keeps the resident's actions too, with ids only.
  assert.match(stdout, /resident door\.open\.result +opened/);
  assert.match(stdout, /resident resident\.data-export +ok/);
  assert.match(stdout, /Demo complete\./);
  assert.ok(!stdout.includes('Мария Петровна'), 'the output shows no full names');
  assert.ok(!stdout.includes('Петров Олег'), "another resident's data never appears");
});
