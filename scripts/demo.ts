/**
 * `npm run demo`: smart-home and the partner simulator on loopback, playing a scripted scenario.
 * Everything runs in a fresh temporary directory (embedded database, development PKI, partner
 * identities), so the demo never touches ./data. Read along: each step prints what happens and the
 * command an operator or partner would run for it, or the HTTP call the residents' mobile app makes.
 * The resident signs in through the OAuth clients of examples/oauth-clients.yaml; the one-time code
 * goes to the console sender, which prints it as `npm start` would.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { saveIdentity } from '../simulator/identity.ts';
import {
  type IntercomSimulator,
  intercomPartnerEntry,
  smartHomeTrust,
  startIntercomSimulator,
} from '../simulator/intercom.ts';
import { startLocalStack } from '../simulator/local-stack.ts';
import { consoleOtp, ResidentApp } from '../simulator/resident-app.ts';
import { sql } from '../src/db/sql.ts';
import { loadDocumentFile } from '../src/registry/document.ts';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (n: number, title: string) => process.stdout.write(`\n${bold(`${n}. ${title}`)}\n`);
const say = (s: string) => process.stdout.write(`   ${s}\n`);
const cmd = (s: string) => process.stdout.write(`   $ ${s}\n`);
/** An HTTP call as the mobile app makes it (the token travels in the Authorization header). */
const http = (s: string) => process.stdout.write(`   → ${s}\n`);

/** The intercom vendor's own id of the entrance door (residents see only our id and name for it). */
const DOOR = 'door-k1-p1';
const CLIENTS_FILE = fileURLToPath(new URL('../examples/oauth-clients.yaml', import.meta.url));
let intercom: IntercomSimulator | undefined;
type Named = { id: string; name: string };

const started = performance.now();
step(1, 'smart-home starts: embedded PostgreSQL (PGlite), development PKI and keys, two TLS listeners');
cmd('SMART_HOME_OAUTH_CLIENTS_FILE=examples/oauth-clients.yaml npm start');
const stack = await startLocalStack({
  partners: [{ code: 'barrier-demo' }, { code: 'barrier-other' }, { code: 'intercom-demo' }],
  env: { LOG_LEVEL: 'warn', SMART_HOME_OAUTH_CLIENTS_FILE: CLIENTS_FILE },
  async document(ids, dataDir) {
    // The partners' onboarding packages land where examples/provisioning.yaml expects them.
    for (const [code, id] of ids) await saveIdentity(path.join(dataDir, 'data', 'simulator', code), id);
    await mkdir(path.join(dataDir, 'examples'), { recursive: true });
    const example = path.join(dataDir, 'examples', 'provisioning.yaml');
    await copyFile(new URL('../examples/provisioning.yaml', import.meta.url), example);
    const doc = await loadDocumentFile(example);
    // The intercom vendor runs its own HTTPS server with its own CA and token endpoint (contract §7);
    // smart-home is registered there by its client certificate and public signing key.
    const identity = ids.get('intercom-demo')!;
    intercom = await startIntercomSimulator({
      identity,
      ...(await smartHomeTrust(dataDir)),
      clientId: 'smart-home',
      doors: [DOOR],
    });
    doc.partners!.push(
      intercomPartnerEntry(intercom, identity, {
        name: 'Demo intercom vendor',
        complexes: ['sever'],
        networks: ['127.0.0.1/32'],
      }),
    );
    doc.devices!.push({
      partner: 'intercom-demo',
      externalId: DOOR,
      kind: 'door',
      name: 'Подъезд 1, Корпус 1',
      complex: 'sever',
      building: 'k1',
      entrance: 'p1',
    });
    return doc;
  },
});
say(`partner listener (mTLS) ${stack.partnerUrl}, public listener ${stack.publicUrl}`);
say(`ready in ${Math.round(performance.now() - started)} ms; data in ${stack.dataDir}`);

try {
  step(2, 'a barrier vendor is onboarded');
  cmd('npm run simulator -- init barrier-demo            # its keys and CSR, private keys stay with it');
  cmd(
    'npm run smart-home -- pki issue --csr …/client.csr --out …/client   # our partner-issuing CA signs it',
  );
  cmd('npm run smart-home -- apply examples/provisioning.yaml');
  const demo = stack.identities.get('barrier-demo')!;
  say(`certificate thumbprint (x5t#S256) ${demo.thumbprint}`);
  say(`signing key ${demo.signing.kid}, perimeter: ЖК «Северный», network 127.0.0.1/32`);

  step(3, 'key ceremony: the plate key travels as a JWE to the vendor’s own key, never over the API');
  cmd('npm run smart-home -- partner export-keys barrier-demo --out keys.jwe');
  cmd('npm run simulator -- import-keys barrier-demo --jwe keys.jwe');
  const barrier = await stack.client('barrier-demo');
  say('the simulator now turns what its camera reads into keyed tokens; smart-home never receives a plate');

  const show = (
    label: string,
    res: { status: number; body: unknown; signatureValid: boolean | undefined },
  ) => {
    const b = res.body as Record<string, string>;
    const verdict =
      res.status === 200 ? `${b['decision']} (${b['reason']})` : `${res.status} ${b['type'] ?? ''}`;
    say(
      `${label} → ${bold(verdict)}; response signature ${res.signatureValid ? 'verified' : 'NOT verified'}`,
    );
  };

  step(4, "a resident's car arrives; the camera reads the plate in Cyrillic");
  cmd('npm run simulator -- barrier read barrier-demo gate-1 "А123ВС77"');
  show('А123ВС77 at gate-1', await barrier.barrierRead('gate-1', 'А123ВС77'));

  step(5, 'an unknown car is refused');
  show('Т001ТТ77 at gate-1', await barrier.barrierRead('gate-1', 'Т001ТТ77'));

  step(6, 'a guest pass works only inside its window');
  const now = Date.now();
  const doc = await loadDocumentFile(path.join(stack.dataDir, 'examples', 'provisioning.yaml'));
  doc.guestPasses = [
    {
      ref: 'ivanova-guest-now',
      issuedBy: 'ivanova-k1-3',
      plate: 'К333КК33',
      validFrom: new Date(now - 600_000).toISOString(),
      validUntil: new Date(now + 3_600_000).toISOString(),
      devices: ['barrier-demo/gate-1'],
    },
    {
      ref: 'ivanova-guest-tomorrow',
      issuedBy: 'ivanova-k1-3',
      plate: 'Н444НН44',
      validFrom: new Date(now + 86_400_000).toISOString(),
      validUntil: new Date(now + 90_000_000).toISOString(),
      devices: ['barrier-demo/gate-1'],
    },
  ];
  await stack.apply(doc);
  say('Мария issued two passes: one for the next hour, one for tomorrow');
  show('К333КК33 (pass valid now)', await barrier.barrierRead('gate-1', 'К333КК33'));
  show('Н444НН44 (pass for tomorrow)', await barrier.barrierRead('gate-1', 'Н444НН44'));

  step(7, "the vendor asks about another vendor's barrier: outside its perimeter, so it does not exist");
  show('А123ВС77 at gate-yug', await barrier.barrierRead('gate-yug', 'А123ВС77'));

  step(8, 'an intercom vendor is onboarded: smart-home commands its doors (contract §7)');
  cmd(
    'npm run smart-home -- apply …   # partner intercom-demo: baseUrl, pinned server CA, our client_id there',
  );
  say(`intercom simulator at ${intercom!.url}: its own CA, OAuth2 token endpoint (mTLS), door ${DOOR}`);
  say('door «Подъезд 1, Корпус 1» serves entrance p1 of Корпус 1 in ЖК «Северный»');

  step(9, 'Мария signs in to the mobile app with her phone number and a one-time code');
  const app = new ResidentApp({
    issuer: stack.publicUrl,
    ca: stack.serverCa,
    clientId: 'mobile-app',
    redirectUri: 'ru.propdevelopment.smarthome:/oauth/callback',
    dpop: true,
    par: true,
  });
  http(`GET  ${stack.publicUrl}/.well-known/openid-configuration`);
  http(
    'POST /oauth/par  client_id=mobile-app, code_challenge_method=S256, scope="openid offline_access api"',
  );
  http('GET  /oauth/authorize?client_id=mobile-app&request_uri=…   → the sign-in page (no JavaScript)');
  http(
    'POST /oauth/interaction/…/phone  phone="+7 916 123-45-67"   → the code goes by SMS; here, to the console:',
  );
  const tokens = await app.signIn('+7 916 123-45-67', consoleOtp('+79161234567'));
  http(
    'POST /oauth/interaction/…/code  code=…   → ru.propdevelopment.smarthome:/oauth/callback?code=…&iss=…',
  );
  http(
    'POST /oauth/token  grant_type=authorization_code, code_verifier=…, DPoP: <proof signed by the app’s key>',
  );
  say(
    `signed in: ${bold(tokens.tokenType === 'DPoP' ? 'DPoP-bound access token' : 'bearer access token')} (at+jwt, ES256, ${tokens.expiresAt - Math.floor(Date.now() / 1000)} s) and a refresh token that rotates on every use`,
  );
  http('GET  /api/v1/me   Authorization: DPoP <access token>, DPoP: <proof for this request>');
  const me = await app.api<{
    apartments: { number: string; entrance: Named; building: Named; complex: Named }[];
  }>('GET', '/me');
  for (const a of me.body.apartments)
    say(`her apartment: ${a.number}, ${a.entrance.name}, ${a.building.name}, ${a.complex.name}`);

  step(10, 'she sees the doors and barriers she may use (our ids and names, never the vendors’)');
  http('GET  /api/v1/access-points');
  const points = await app.api<{ items: { id: string; kind: string; name: string; enabled: boolean }[] }>(
    'GET',
    '/access-points',
  );
  for (const p of points.body.items) say(`${p.kind.padEnd(7)} ${p.name}  (${p.id})`);
  const door = points.body.items.find((p) => p.kind === 'door')!;
  const gate = points.body.items.find((p) => p.kind === 'barrier')!;

  step(11, 'she opens the entrance door from the app');
  http(`POST /api/v1/access-points/${door.id}/open`);
  const opened = await app.api<{ status: string; commandId: string }>(
    'POST',
    `/access-points/${door.id}/open`,
  );
  say(
    `smart-home → intercom: signed command ${opened.body.commandId} (mTLS, the vendor’s OAuth2 token, RFC 9421, expires in ≤ 10 s)`,
  );
  say(`${door.name} → ${bold(opened.body.status)}`);
  const acted = intercom!.openings.filter((o) => o.commandId === opened.body.commandId);
  say(
    `the intercom acted on it ${acted.length === 1 ? 'once' : `${acted.length} times`}; it knows her only as pseudonym ${acted[0]?.subject.slice(0, 12)}…`,
  );

  step(12, 'she registers her second car; the plate is checked against Russian formats');
  http('POST /api/v1/vehicles  {"plate":"Q123QQ77"}');
  const bad = await app.api<{ detail: string }>('POST', '/vehicles', { plate: 'Q123QQ77' });
  say(`${bad.status} invalid-plate: ${bad.body.detail}`);
  http('POST /api/v1/vehicles  {"plate":"е 777 кх 77"}');
  const car = await app.api<{ plate: string; format: string }>('POST', '/vehicles', { plate: 'е 777 кх 77' });
  say(
    `${car.status}: ${car.body.plate} (${car.body.format}); barrier tokens computed for every barrier vendor`,
  );
  show(`${car.body.plate} at gate-1`, await barrier.barrierRead('gate-1', 'Е777КХ77'));

  step(13, 'she issues a guest pass for the next two hours; the barrier honours it');
  const until = new Date(Date.now() + 2 * 3_600_000).toISOString();
  http(`POST /api/v1/guest-passes  {"plate":"М555МР55","validUntil":"${until}","barrierIds":["${gate.id}"]}`);
  const pass = await app.api<{ status: string; validUntil: string }>('POST', '/guest-passes', {
    plate: 'М555МР55',
    validUntil: until,
    barrierIds: [gate.id],
  });
  say(`${pass.status}: pass ${bold(pass.body.status)} until ${pass.body.validUntil}`);
  show('М555МР55 (her guest, pass from the app)', await barrier.barrierRead('gate-1', 'М555МР55'));

  step(14, 'she downloads everything stored about her (152-FZ art. 14)');
  http('GET  /api/v1/data-export');
  const exported = await app.api<{
    profile: { phone: string };
    apartments: unknown[];
    vehicles: { plate: string }[];
    guestPasses: { plate: string }[];
    history: { action: string; result: string }[];
    changes: unknown[];
  }>('GET', '/data-export');
  const x = exported.body;
  say(`one JSON document: ${Object.keys(x).join(', ')}`);
  say(`vehicles in the export: ${x.vehicles.map((v) => v.plate).join(', ')}`);
  say(`guest passes in the export: ${x.guestPasses.map((p) => p.plate).join(', ')}`);
  const tally = new Map<string, number>();
  for (const h of x.history)
    tally.set(`${h.action} ${h.result}`, (tally.get(`${h.action} ${h.result}`) ?? 0) + 1);
  say(
    `history in the export: ${[...tally].map(([k, n]) => (n > 1 ? `${k} ×${n}` : k)).join(', ')}; ${x.changes.length} registry changes`,
  );
  await app.close();

  step(15, 'every decision, command and sign-in is in the journal: internal ids only, no names, no plates');
  const rows = await stack.runtime.db.query<{
    at: Date;
    actor_type: string;
    action: string;
    result: string;
    subject_type: string | null;
    details: unknown;
  }>(
    // What partners and the resident did (the operator's provisioning entries are left out here).
    sql`select at, actor_type, action, result, subject_type, details from journal
        where actor_type in ('partner', 'resident') order by seq`,
  );
  for (const r of rows) {
    const d = (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, string>;
    say(
      `${r.at.toISOString()}  ${r.actor_type.padEnd(8)} ${r.action.padEnd(30)} ${r.result.padEnd(7)} ${(d['reason'] ?? '').padEnd(18)} subject: ${r.subject_type ?? '—'}`,
    );
  }
  process.stdout.write('\nDemo complete.\n');
} finally {
  await stack.close();
  await intercom?.stop();
}
