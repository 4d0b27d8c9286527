#!/usr/bin/env node
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { calculateJwkThumbprint } from 'jose';
import { start } from './cluster.ts';
import { type Config, ConfigError, loadConfig } from './config/config.ts';
import { FieldCipher } from './crypto/field-cipher.ts';
import { exportPartnerKeysAsJwe } from './crypto/key-export.ts';
import { migrate } from './db/migrate.ts';
import { openDb } from './db/open-db.ts';
import { sql } from './db/sql.ts';
import { createOperator } from './identity/operators.ts';
import { readPassword } from './identity/read-password.ts';
import { EXPORT_FORMATS, type ExportFormat, exportJournal } from './journal/export/export.ts';
import { exportProjections } from './journal/export/projections.ts';
import { resolvePartner, UnknownPartnerError } from './journal/export/rows.ts';
import { fileSink, OutputExistsError, type Sink, streamSink } from './journal/export/sink.ts';
import { appendJournal } from './journal/journal.ts';
import { latestCheckpoint } from './journal/log/sequencer.ts';
import { verifyLog } from './journal/log/verify.ts';
import { registerReconcileCommand } from './journal/reconcile/cli.ts';
import { witnessedAnchors } from './journal/witness/anchors.ts';
import { loadWitnessCosigner } from './journal/witness/identity.ts';
import { loadSigningKey } from './keys/service-keys.ts';
import { certInfo, certThumbprintS256, issueClientCert, issueClientCertFromCsr } from './pki/certificates.ts';
import { applyDocument } from './registry/apply.ts';
import { DocumentError, loadDocumentFile } from './registry/document.ts';
import { retirePartnerKey, rotatePartnerKeys } from './registry/partner-key-rotation.ts';
import { loadPartnerKeys } from './registry/partner-secrets.ts';
import { DATA_KEY_PURPOSES, ensureDevelopmentMaterial, loadJournalLog, loadKek } from './server.ts';
import { verifierFromKeyString } from './tlog/note.ts';
import { progressLine } from './util/progress.ts';

const program = new Command()
  .name('smart-home')
  .description('SmartHome Integration Service of PropDevelopment')
  .showHelpAfterError();

function fail(message: string, code = 1): never {
  process.stderr.write(`smart-home: ${message}\n`);
  process.exit(code);
}

function config() {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message, 2);
    throw err;
  }
}

/** The configuration, with the development PKI and keys created where missing (never in production). */
async function configWithMaterial(): Promise<Config> {
  const cfg = config();
  await ensureDevelopmentMaterial(cfg);
  return cfg;
}

/** The migrated database and the field cipher; `cfg` when the command already has it from {@link configWithMaterial}. */
async function withDb<T>(
  fn: (deps: { db: Awaited<ReturnType<typeof openDb>>; cipher: FieldCipher }) => Promise<T>,
  given?: Config,
) {
  const cfg = given ?? (await configWithMaterial());
  const db = await openDb({ url: cfg.database.url, pgliteDir: cfg.database.pgliteDir, poolMax: 2 });
  try {
    await migrate(db);
    const cipher = await FieldCipher.open(db, await loadKek(cfg), DATA_KEY_PURPOSES);
    return await fn({ db, cipher });
  } finally {
    await db.close();
  }
}

program
  .command('start')
  .description('run both listeners (creates a development PKI and keys under DATA_DIR on first start)')
  .action(async () => {
    await start(config());
  });

program
  .command('migrate')
  .description('apply pending database migrations and exit')
  .action(async () => {
    const cfg = config();
    const db = await openDb({ url: cfg.database.url, pgliteDir: cfg.database.pgliteDir, poolMax: 1 });
    try {
      const { applied } = await migrate(db);
      process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
    } finally {
      await db.close();
    }
  });

program
  .command('apply')
  .argument('<file>', 'provisioning document (YAML or JSON), see docs/provisioning.md')
  .option('--dry-run', 'validate and apply in a transaction that is rolled back')
  .description(
    'provision complexes, partners, devices, residents, vehicles and passes, idempotently, in one transaction',
  )
  .action(async (file: string, opts: { dryRun?: boolean }) => {
    let doc: Awaited<ReturnType<typeof loadDocumentFile>>;
    try {
      doc = await loadDocumentFile(file);
    } catch (err) {
      if (err instanceof DocumentError)
        fail(`${file}${err.message.startsWith('/') ? '' : ': '}${err.message}`);
      fail(`${file}: ${(err as Error).message}`);
    }
    await withDb(async ({ db, cipher }) => {
      try {
        const summary = await applyDocument(
          { db, cipher },
          doc,
          { type: 'operator', id: 'cli' },
          { dryRun: opts.dryRun ?? false },
        );
        for (const line of summary.changes) process.stdout.write(`  ${line}\n`);
        process.stdout.write(
          `${opts.dryRun ? 'dry run: would apply' : 'applied'}: ${summary.created} created, ${summary.updated} updated, ${summary.unchanged} unchanged\n`,
        );
      } catch (err) {
        if (err instanceof DocumentError) fail(`${file}: ${err.message} (nothing was applied)`);
        throw err;
      }
    });
  });

const pki = program.command('pki').description('the partner-issuing CA');
pki
  .command('issue')
  .description("issue a partner's client certificate from its CSR (or, for development, with a new key)")
  .option('--csr <file>', "the partner's PKCS#10 certificate signing request (PEM)")
  .option('--dev <commonName>', 'development only: generate a key pair and certificate for this common name')
  .option(
    '--days <n>',
    'validity in days',
    (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 825) throw new InvalidArgumentError('1 to 825');
      return n;
    },
    365,
  )
  .requiredOption('--out <prefix>', 'write <prefix>.crt (and <prefix>.key with --dev)')
  .action(async (opts: { csr?: string; dev?: string; days: number; out: string }) => {
    const cfg = config();
    if (!opts.csr === !opts.dev) fail('give exactly one of --csr or --dev');
    if (opts.dev && cfg.env === 'production')
      fail('--dev is refused in production: partners generate their own keys');
    await ensureDevelopmentMaterial(cfg);
    const ca = {
      certPem: await readFile(cfg.partner.clientCa, 'utf8'),
      keyPem: await readFile(cfg.partner.issuingCaKey, 'utf8'),
    };
    let certPem: string;
    if (opts.csr) {
      certPem = await issueClientCertFromCsr(ca, await readFile(opts.csr, 'utf8'), {
        validityDays: opts.days,
      });
    } else {
      const pair = await issueClientCert(ca, { commonName: opts.dev!, validityDays: opts.days });
      certPem = pair.certPem;
      await writeFile(`${opts.out}.key`, pair.keyPem, { mode: 0o600, flag: 'wx' });
    }
    await writeFile(`${opts.out}.crt`, certPem, { flag: 'wx' });
    const info = certInfo(certPem);
    process.stdout.write(
      `wrote ${opts.out}.crt (CN=${info.subjectCommonName}, valid until ${info.notAfter.toISOString()})\n` +
        `x5t#S256 thumbprint (register it under the partner's certificates): ${certThumbprintS256(certPem)}\n`,
    );
  });

const partner = program.command('partner').description('partner key ceremony');
partner
  .command('export-keys')
  .argument('<partner>', 'partner code')
  .requiredOption('--out <file>', 'where to write the JWE (compact serialization)')
  .description(
    "write the partner's plate keys as a JWE to its registered encryption key, for delivery on another channel",
  )
  .action(async (code: string, opts: { out: string }) => {
    await withDb(async ({ db, cipher }) => {
      const p = await db.one<{ id: string }>(sql`select id from partners where code = ${code}`);
      if (!p) fail(`unknown partner "${code}"`);
      const enc = await db.one<{ public_jwk: unknown }>(
        sql`select public_jwk from partner_encryption_keys where partner_id = ${p.id} order by added_at desc limit 1`,
      );
      if (!enc) fail(`partner "${code}" has no registered encryption key`);
      const keys = (await loadPartnerKeys(db, cipher, p.id)).filter((k) => !k.retired);
      const recipient = typeof enc.public_jwk === 'string' ? JSON.parse(enc.public_jwk) : enc.public_jwk;
      const out = await exportPartnerKeysAsJwe({
        plateKeys: keys.map((k) => ({ kid: k.kid, key: k.plateKey })),
        recipient,
        partnerId: code,
      });
      await writeFile(opts.out, `${out.jwe}\n`, { mode: 0o600, flag: 'wx' });
      process.stdout.write(
        `wrote ${path.resolve(opts.out)} — deliver it on another channel; never over the API.\n` +
          `recipient key thumbprint: ${out.recipientThumbprint}\n` +
          out.keyThumbprints.map((k) => `key ${k.kid} thumbprint: ${k.thumbprint}\n`).join('') +
          'Read these thumbprints back to the partner over a second channel (RFC 7638).\n',
      );
    });
  });

partner
  .command('rotate-keys')
  .argument('<partner>', 'partner code')
  .description('add a new plate-key version (tokens recomputed); the old one works until retired')
  .action(async (code: string) => {
    await withDb(async (deps) => {
      const { kid, tokens } = await rotatePartnerKeys(deps, code, { type: 'operator', id: 'cli' });
      process.stdout.write(
        `new key ${kid}: ${tokens} plate tokens computed. Deliver it with \`partner export-keys ${code}\`, ` +
          `then retire the old key with \`partner retire-key ${code} <kid>\` once the partner has switched.\n`,
      );
    });
  });

partner
  .command('retire-key')
  .argument('<partner>', 'partner code')
  .argument('<kid>', 'key id to retire')
  .description('retire a plate-key version: its tokens are deleted and requests naming it are refused')
  .action(async (code: string, kid: string) => {
    await withDb(async (deps) => {
      await retirePartnerKey(deps, code, kid, { type: 'operator', id: 'cli' });
      process.stdout.write(`retired ${kid}\n`);
    });
  });

const operator = program
  .command('operator')
  .description('operators of PropDevelopment (sign-in to the operator console)');
operator
  .command('add')
  .argument('<login>', 'the operator login: a-z, 0-9, ".", "_", "-"')
  .description(
    'create an operator: the password is prompted (or read from the first line of stdin); prints the TOTP otpauth:// URI once',
  )
  .action(async (login: string) => {
    const password = await readPassword();
    await withDb(async (deps) => {
      // The operator and its journal entry commit together.
      const { id, otpauthUri } = await deps.db.transaction(async (tx) => {
        const created = await createOperator({ db: tx, cipher: deps.cipher }, login, password);
        await appendJournal(tx, {
          actorType: 'operator',
          actorId: 'cli',
          action: 'registry.operator.create',
          subjectType: 'operator',
          subjectId: created.id,
          result: 'created',
        });
        return created;
      });
      process.stdout.write(
        `operator ${login} created (${id})\nadd this TOTP secret to an authenticator app now; it is not shown again:\n${otpauthUri}\n`,
      );
    });
  });

program
  .command('keys')
  .description(
    "print smart-home's public keys for partners, with RFC 7638 thumbprints to confirm over a second channel",
  )
  .option('--out <file>', 'also write the response-signing public JWK to this file (what a partner pins)')
  .action(async (opts: { out?: string }) => {
    const cfg = await configWithMaterial();
    const signing = await loadSigningKey(cfg.keys.signingKeyFile, 'Ed25519');
    const token = await loadSigningKey(cfg.keys.tokenKeyFile, 'ES256');
    const log = await loadJournalLog(cfg);
    const witness = await loadWitnessCosigner(cfg);
    const pub = { ...signing.publicJwk, use: 'sig' };
    process.stdout.write(
      `response/request signing key (Ed25519, contract §3):\n  ${JSON.stringify(pub)}\n` +
        `  thumbprint ${await calculateJwkThumbprint(pub, 'sha256')}\n` +
        `access-token signing key (ES256, contract §2; also at ${cfg.partner.url}/oauth/jwks):\n` +
        `  ${JSON.stringify(token.publicJwk)}\n  thumbprint ${await calculateJwkThumbprint(token.publicJwk, 'sha256')}\n` +
        `journal log verifier key (C2SP signed note, Ed25519, contract §8.1; its name is our log origin):\n` +
        `  ${log.signer.verifierKey}\n` +
        `witness key (C2SP cosignature/v1, contract §8.2; register it as the witness of your log):\n` +
        `  ${witness.verifierKey}\n`,
    );
    if (opts.out) {
      await writeFile(opts.out, `${JSON.stringify(pub, null, 2)}\n`, { flag: 'wx' });
      process.stdout.write(`wrote ${opts.out}\n`);
    }
  });

const journal = program.command('journal').description('the journal as a tamper-evident Merkle log');
journal
  .command('verify')
  .description(
    'recompute the log from the journal rows and check every signed checkpoint, the tiles and the sequencer state',
  )
  .option('--anchor <file...>', 'signed checkpoints kept outside the database (e.g. cosigned by a witness)')
  .option('--key <vkey...>', 'more trusted verifier keys (name+id+key): an earlier log key, a witness')
  .option('--no-witnesses', "skip the partners' stored cosignatures of our checkpoints (contract §8.2)")
  .action(async (opts: { anchor?: string[]; key?: string[]; witnesses?: boolean }) => {
    const cfg = await configWithMaterial();
    const log = await loadJournalLog(cfg);
    const verifiers = [log.signer.verifier];
    for (const k of opts.key ?? []) {
      try {
        verifiers.push(verifierFromKeyString(k));
      } catch (err) {
        fail(`--key ${k}: ${(err as Error).message}`, 2);
      }
    }
    const anchors: string[] = [];
    for (const f of opts.anchor ?? []) {
      try {
        anchors.push(await readFile(f, 'utf8'));
      } catch (err) {
        fail(`--anchor ${f}: ${(err as Error).message}`, 2);
      }
    }
    await withDb(async ({ db }) => {
      const started = performance.now();
      // Contract §8.2: the newest checkpoint each partner cosigned, checked with its registered witness key.
      const witnessed = opts.witnesses === false ? [] : await witnessedAnchors(db);
      const progress = progressLine('verifying');
      const r = await verifyLog(db, {
        origin: log.origin,
        verifiers,
        anchors,
        witnessed,
        onProgress: (done, total) => progress(done, total),
      });
      progress.done();
      const seconds = (performance.now() - started) / 1000;
      const rate = Math.round(r.size / Math.max(seconds, 0.001)).toLocaleString('en');
      const rows = Number(
        (await db.one<{ n: string }>(sql`select count(*)::text as n from journal`))?.n ?? 0,
      );
      const pending =
        rows > r.size ? `; ${(rows - r.size).toLocaleString('en')} newer rows await the sequencer` : '';
      if (r.ok) {
        process.stdout.write(
          `journal verified: ${r.size.toLocaleString('en')} entries, ${r.checkpoints.toLocaleString('en')} signed checkpoints, ${anchors.length} anchors${witnessed.length > 0 ? `, ${witnessed.length} witness cosignatures` : ''} (${rate} entries/s)${pending}\n`,
        );
        return;
      }
      for (const p of r.problems) process.stderr.write(`  ${p}\n`);
      process.stdout.write(
        `journal verification FAILED: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'} in ${r.size.toLocaleString('en')} entries\n`,
      );
      process.exitCode = 1;
    }, cfg);
  });
journal
  .command('checkpoint')
  .description("print the newest signed checkpoint and the log's verifier key")
  .action(async () => {
    const cfg = await configWithMaterial();
    const log = await loadJournalLog(cfg);
    await withDb(async ({ db }) => {
      const cp = await latestCheckpoint(db);
      process.stdout.write(`verifier key: ${log.signer.verifierKey}\n`);
      process.stdout.write(
        cp ? cp.note : 'no checkpoint yet (the sequencer signs one after the first batch)\n',
      );
    }, cfg);
  });

function rfc3339(v: string): Date {
  const d = new Date(v);
  if (
    !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(v) ||
    Number.isNaN(d.getTime())
  )
    throw new InvalidArgumentError('an RFC 3339 time with its offset, e.g. 2026-12-01T00:00:00Z');
  return d;
}

journal
  .command('export')
  .description(
    'write journal entries as JSON Lines (each line the log entry as its leaf hashes it) or OCSF API Activity events, or a partner’s contract §8.3 projections, streamed from one snapshot',
  )
  .option('--format <format>', `${EXPORT_FORMATS.join(' | ')}`, 'jsonl')
  .option(
    '--projections',
    'with --partner: its §8.3 projections in the signed log, one {element,time,projection,at} record a line (what `journal reconcile --offline` reads); --from/--to then select by eventId time',
  )
  .option('--from <time>', 'entries at or after this RFC 3339 time', rfc3339)
  .option('--to <time>', 'entries before this RFC 3339 time', rfc3339)
  .option('--partner <id|code>', "only entries about this partner (its own or its devices')")
  .option('--out <file>', 'write to this file (appears only once complete); standard output otherwise')
  .option('--force', 'replace --out if it exists')
  .action(
    async (opts: {
      format: string;
      from?: Date;
      to?: Date;
      partner?: string;
      out?: string;
      force?: boolean;
      projections?: boolean;
    }) => {
      if (opts.projections && !opts.partner) fail('--projections needs --partner', 2);
      if (!(EXPORT_FORMATS as readonly string[]).includes(opts.format))
        fail(`--format ${opts.format}: one of ${EXPORT_FORMATS.join(', ')}`, 2);
      if (opts.from && opts.to && opts.from >= opts.to) fail('--from must be before --to', 2);
      const cfg = await configWithMaterial();
      const log = await loadJournalLog(cfg);
      await withDb(async ({ db, cipher }) => {
        let partnerId: string | undefined;
        if (opts.partner) {
          try {
            partnerId = (await resolvePartner(db, opts.partner)).id;
          } catch (err) {
            if (err instanceof UnknownPartnerError) fail(`--partner: ${err.message}`, 2);
            throw err;
          }
        }
        let sink: Sink;
        try {
          sink = opts.out
            ? await fileSink(opts.out, { overwrite: opts.force ?? false })
            : streamSink(process.stdout);
        } catch (err) {
          if (err instanceof OutputExistsError) fail(err.message, 2);
          throw err;
        }
        const progress = progressLine('exporting');
        const onProgress = (done: number, total: number) => progress(done, total);
        const r =
          opts.projections && partnerId
            ? await exportProjections(db, cipher, sink, {
                partnerId,
                from: opts.from,
                to: opts.to,
                clockMarginMs: cfg.reconcile.clockMarginMs,
                onProgress,
              })
            : await exportJournal(db, sink, {
                format: opts.format as ExportFormat,
                filter: { from: opts.from, to: opts.to, partnerId },
                origin: log.origin,
                onProgress,
              });
        progress.done();
        process.stderr.write(
          `exported ${r.entries.toLocaleString('en')} ${opts.projections ? 'projections' : 'entries'}${opts.out ? ` to ${opts.out}` : ''}\n`,
        );
      }, cfg);
    },
  );

registerReconcileCommand(journal, {
  config,
  fail,
  async journalLog(cfg) {
    await ensureDevelopmentMaterial(cfg);
    return loadJournalLog(cfg);
  },
  withDb,
});

program.parseAsync().catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  fail(e.code?.startsWith('ERR_') ? `${e.message}` : `unexpected error: ${e.message}`);
});
