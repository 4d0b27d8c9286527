/**
 * `npm run demo`: smart-home and the partner simulator on loopback, playing a scripted scenario.
 * Everything runs in a fresh temporary directory (embedded database, development PKI, partner
 * identities), so the demo never touches ./data. Read along: each step prints what happens and the
 * command an operator or partner would run for it.
 */
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { saveIdentity } from '../simulator/identity.ts';
import { startLocalStack } from '../simulator/local-stack.ts';
import { sql } from '../src/db/sql.ts';
import { loadDocumentFile } from '../src/registry/document.ts';

const bold = (s: string) => (process.stdout.isTTY ? `\x1b[1m${s}\x1b[0m` : s);
const step = (n: number, title: string) => process.stdout.write(`\n${bold(`${n}. ${title}`)}\n`);
const say = (s: string) => process.stdout.write(`   ${s}\n`);
const cmd = (s: string) => process.stdout.write(`   $ ${s}\n`);

const started = performance.now();
step(1, 'smart-home starts: embedded PostgreSQL (PGlite), development PKI and keys, two TLS listeners');
cmd('npm start');
const stack = await startLocalStack({
  partners: [{ code: 'barrier-demo' }, { code: 'barrier-other' }],
  env: { LOG_LEVEL: 'warn' },
  async document(ids, dataDir) {
    // The partners' onboarding packages land where examples/provisioning.yaml expects them.
    for (const [code, id] of ids) await saveIdentity(path.join(dataDir, 'data', 'simulator', code), id);
    await mkdir(path.join(dataDir, 'examples'), { recursive: true });
    const example = path.join(dataDir, 'examples', 'provisioning.yaml');
    await copyFile(new URL('../examples/provisioning.yaml', import.meta.url), example);
    return loadDocumentFile(example);
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

  step(8, 'every decision is in the journal: internal ids only, no names, no plates');
  const rows = await stack.runtime.db.query<{
    at: Date;
    action: string;
    result: string;
    subject_type: string | null;
    details: unknown;
  }>(
    sql`select at, action, result, subject_type, details from journal where action = 'barrier.decision' order by seq`,
  );
  for (const r of rows) {
    const d = (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, string>;
    say(
      `${r.at.toISOString()}  ${r.action}  ${r.result.padEnd(4)}  ${d['reason']?.padEnd(18)} subject: ${r.subject_type ?? '—'}`,
    );
  }
  process.stdout.write('\nDemo complete.\n');
} finally {
  await stack.close();
}
