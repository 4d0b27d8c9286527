#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import type { JWK } from 'jose';
import { importPartnerKeysFromJwe } from '../src/crypto/key-export.ts';
import { createCsr } from '../src/pki/certificates.ts';
import { eventCommands } from './events-cli.ts';
import {
  journalVerifierKey,
  loadIdentity,
  newJwkPair,
  newLogKeys,
  saveLogKeys,
  witnessVerifierKey,
} from './identity.ts';
import { PartnerClient } from './partner-client.ts';

const program = new Command()
  .name('simulator')
  .description('reference partner (barrier vendor) for smart-home');
program
  .option('--home <dir>', 'where partner identities live', 'data/simulator')
  .option('--url <url>', "smart-home's partner listener", 'https://localhost:9443')
  .option('--ca <file>', "CA of smart-home's listener certificates (pinned)", 'data/pki/service-ca.crt')
  .option(
    '--smart-home-key <file>',
    "smart-home's response-signing public JWK (from `smart-home keys --out`)",
    'data/keys/smart-home.pub.jwk',
  );

const dirOf = (code: string) => path.join(program.opts<{ home: string }>().home, code);

function fail(message: string): never {
  process.stderr.write(`simulator: ${message}\n`);
  process.exit(1);
}

program
  .command('init')
  .argument('<code>', "the partner's client_id")
  .description('generate the partner keys and a CSR (private keys stay here)')
  .action(async (code: string) => {
    const dir = dirOf(code);
    if (existsSync(path.join(dir, 'client.key'))) fail(`${dir} already holds an identity`);
    await mkdir(path.join(dir, 'public'), { recursive: true, mode: 0o700 });
    const csr = await createCsr({ commonName: code });
    const signing = await newJwkPair('ed25519');
    const encryption = await newJwkPair('p256');
    const priv = { mode: 0o600 };
    await writeFile(path.join(dir, 'client.key'), csr.keyPem, priv);
    await writeFile(path.join(dir, 'client.csr'), csr.csrPem);
    await writeFile(path.join(dir, 'signing.jwk'), JSON.stringify(signing.privateJwk, null, 2), priv);
    await writeFile(path.join(dir, 'encryption.jwk'), JSON.stringify(encryption.privateJwk, null, 2), priv);
    await writeFile(path.join(dir, 'public', 'signing.jwk'), JSON.stringify(signing.publicJwk, null, 2));
    await writeFile(
      path.join(dir, 'public', 'encryption.jwk'),
      JSON.stringify(encryption.publicJwk, null, 2),
    );
    await writeFile(path.join(dir, 'code'), code);
    const logKeys = newLogKeys(code);
    await saveLogKeys(dir, logKeys);
    process.stdout.write(
      `created ${dir}\n  CSR: ${path.join(dir, 'client.csr')} (send it to PropDevelopment)\n` +
        `  signing key thumbprint:    ${signing.publicJwk.kid}\n  encryption key thumbprint: ${encryption.publicJwk.kid}\n` +
        'Read both thumbprints to PropDevelopment over a second channel.\n' +
        `  journal log key (logKey):  ${journalVerifierKey(logKeys)}\n` +
        `  witness key (witnessKey):  ${witnessVerifierKey(logKeys)}\n`,
    );
  });

program
  .command('import-keys')
  .argument('<code>')
  .option('--jwe <file>', 'the JWE from `smart-home partner export-keys`', '')
  .description('decrypt the plate keys delivered through the key ceremony and keep them (0600)')
  .action(async (code: string, opts: { jwe: string }) => {
    const dir = dirOf(code);
    const id = await loadIdentity(dir);
    const jwe = await readFile(opts.jwe || path.join(dir, 'keys.jwe'), 'utf8');
    const imported = await importPartnerKeysFromJwe(jwe.trim(), id.encryption.privateJwk);
    const stored = imported.plateKeys.map((k) => ({
      kid: k.kid,
      k: Buffer.from(k.key).toString('base64url'),
    }));
    await writeFile(path.join(dir, 'plate-keys.json'), JSON.stringify(stored, null, 2), { mode: 0o600 });
    process.stdout.write(`imported plate keys: ${stored.map((k) => k.kid).join(', ')}\n`);
  });

const barrier = program.command('barrier').description('barrier camera actions');
barrier
  .command('read')
  .argument('<code>', 'partner')
  .argument('<barrier>', "the barrier's id (the partner's own)")
  .argument('<plate>', 'what the camera read, e.g. "А123ВС77"')
  .option('--alt <plates...>', 'OCR alternatives')
  .option('--direction <d>', 'entry or exit', 'entry')
  .description('ask smart-home whether to open for a plate read, and print the signed decision')
  .action(
    async (
      code: string,
      barrierId: string,
      plate: string,
      opts: { alt?: string[]; direction: 'entry' | 'exit' },
    ) => {
      const g = program.opts<{ url: string; ca: string; smartHomeKey: string }>();
      const dir = dirOf(code);
      let smartHomeKey: JWK | undefined;
      if (existsSync(g.smartHomeKey)) {
        smartHomeKey = JSON.parse(await readFile(g.smartHomeKey, 'utf8')) as JWK;
        if (smartHomeKey.d)
          fail(`${g.smartHomeKey} holds a private key: a partner is given the public key only`);
      }
      const client = new PartnerClient({
        identity: await loadIdentity(dir),
        baseUrl: g.url,
        serverCa: await readFile(g.ca, 'utf8'),
        smartHomeKey,
      });
      try {
        const keys = JSON.parse(await readFile(path.join(dir, 'plate-keys.json'), 'utf8')) as Array<{
          kid: string;
          k: string;
        }>;
        for (const k of [...keys].reverse()) client.setPlateKey(k.kid, Buffer.from(k.k, 'base64url'));
        const res = await client.barrierRead(barrierId, plate, {
          direction: opts.direction,
          ...(opts.alt ? { alternatives: opts.alt } : {}),
        });
        const verdict =
          res.signatureValid === undefined
            ? `not checked (no key at ${g.smartHomeKey}: run \`smart-home keys --out ${g.smartHomeKey}\`)`
            : res.signatureValid
              ? 'valid'
              : 'NOT VALID';
        process.stdout.write(`${res.status} ${JSON.stringify(res.body)}\nresponse signature: ${verdict}\n`);
        if (res.signatureValid === false) process.exitCode = 1;
        if (res.status !== 200) process.exitCode = 1;
      } finally {
        await client.close();
      }
    },
  );

eventCommands(program, { dirOf, fail });

program.parseAsync().catch((err: Error) => fail(err.message));
