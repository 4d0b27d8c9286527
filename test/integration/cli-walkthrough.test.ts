/**
 * The README's "by hand" walk-through, command by command, as a newcomer would type it: the partner
 * simulator's keys and CSR, our CA issuing its certificate, `apply`, the key ceremony, `start`,
 * camera reads, and the start of a resident's sign-in through the development OAuth clients — each a
 * separate process on a fresh data directory.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { Agent, request } from 'undici';

const run = promisify(execFile);
let dir: string;
let server: ChildProcess | undefined;
const env = () => ({
  ...process.env,
  NODE_ENV: 'development',
  SMART_HOME_DATA_DIR: path.join(dir, 'data'),
  SMART_HOME_PARTNER_PORT: '0',
  SMART_HOME_PUBLIC_PORT: '0',
  DATABASE_URL: '',
  REDIS_URL: '',
  LOG_LEVEL: 'warn',
});
const cli = (script: string, args: string[]) =>
  run(process.execPath, [path.resolve(script), ...args], { cwd: dir, env: env(), timeout: 60_000 });
const smartHome = (...args: string[]) => cli('src/cli.ts', args);
const simulator = (...args: string[]) => cli('simulator/cli.ts', ['--home', 'data/simulator', ...args]);

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'smart-home-cli-'));
  await run('cp', ['-r', path.resolve('examples'), dir]);
});
after(async () => {
  // The server still writes its embedded database while it shuts down: wait for it to exit first.
  if (server && server.exitCode === null && server.signalCode === null) {
    const exited = new Promise((resolve) => server!.once('exit', resolve));
    server.kill('SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 10_000))]);
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
});

test('onboarding, provisioning, key ceremony and a camera read, through the CLIs only', async () => {
  for (const code of ['barrier-demo', 'barrier-other']) {
    const init = await simulator('init', code);
    assert.match(init.stdout, /signing key thumbprint: +[A-Za-z0-9_-]{43}/);
    const issued = await smartHome(
      'pki',
      'issue',
      '--csr',
      `data/simulator/${code}/client.csr`,
      '--out',
      `data/simulator/${code}/public/client`,
    );
    assert.match(issued.stdout, /x5t#S256 thumbprint .*: [A-Za-z0-9_-]{43}/);
  }
  const applied = await smartHome('apply', 'examples/provisioning.yaml');
  assert.match(applied.stdout, /applied: \d+ created, 0 updated, 0 unchanged/);
  const again = await smartHome('apply', 'examples/provisioning.yaml');
  assert.match(again.stdout, /applied: 0 created, 0 updated, \d+ unchanged/);

  await assert.rejects(smartHome('apply', 'examples/missing.yaml'), /examples\/missing\.yaml/);

  const exported = await smartHome(
    'partner',
    'export-keys',
    'barrier-demo',
    '--out',
    'data/simulator/barrier-demo/keys.jwe',
  );
  assert.match(exported.stdout, /key barrier-demo-v1 thumbprint: [A-Za-z0-9_-]{43}/);
  assert.match(
    (await simulator('import-keys', 'barrier-demo')).stdout,
    /imported plate keys: barrier-demo-v1/,
  );
  // Our public signing key, which the partner pins; the private file never leaves us.
  const keys = await smartHome('keys', '--out', 'data/keys/smart-home.pub.jwk');
  assert.match(keys.stdout, /thumbprint [A-Za-z0-9_-]{43}/);
  assert.ok(!keys.stdout.includes('"d"'), 'only public keys are printed');

  server = spawn(process.execPath, [path.resolve('src/cli.ts'), 'start'], {
    cwd: dir,
    env: env(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let banner = '';
  const [port, publicPort] = await new Promise<[string, string]>((resolve, reject) => {
    server!.stderr!.on('data', (d) => {
      banner += d;
      const m = /partner listener \(mTLS\) +https:\/\/127\.0\.0\.1:(\d+)/.exec(banner);
      const p = /public listener +https:\/\/127\.0\.0\.1:(\d+)/.exec(banner);
      if (m && p && banner.includes('provision with')) resolve([m[1]!, p[1]!]);
    });
    server!.once('exit', (code) => reject(new Error(`start exited with ${code}: ${banner}`)));
  });
  // While the service holds the embedded database, a second process is refused instead of corrupting it.
  await assert.rejects(smartHome('apply', 'examples/provisioning.yaml'), /in use by process/);

  const read = (barrier: string, plate: string) =>
    simulator('--url', `https://localhost:${port}`, 'barrier', 'read', 'barrier-demo', barrier, plate).then(
      (r) => r.stdout,
      (e: { stdout: string }) => e.stdout,
    );
  assert.match(
    await read('gate-1', 'А123ВС77'),
    /^200 .*"decision":"open","reason":"resident_vehicle".*\nresponse signature: valid/s,
  );
  assert.match(await read('gate-1', 'Т001ТТ77'), /"decision":"deny","reason":"not_registered"/);
  assert.match(await read('gate-yug', 'А123ВС77'), /^404 .*not-found/);

  // Without SMART_HOME_OAUTH_CLIENTS_FILE a fresh development instance offers sign-in clients: a
  // newcomer's authorization request (PKCE S256) reaches the resident's phone form.
  assert.match(banner, /sign-in \(OAuth\) clients +\S*data\/oauth-clients\.yaml/);
  const agent = new Agent({
    connect: { ca: await readFile(path.join(dir, 'data', 'pki', 'service-ca.crt'), 'utf8') },
  });
  try {
    const base = `https://localhost:${publicPort}`;
    const authorize = (clientId: string) =>
      request(
        `${base}/oauth/authorize?${new URLSearchParams({
          client_id: clientId,
          response_type: 'code',
          scope: 'openid offline_access api',
          redirect_uri: 'http://127.0.0.1:8765/callback',
          code_challenge: createHash('sha256').update('v'.repeat(64)).digest('base64url'),
          code_challenge_method: 'S256',
          state: 'try1',
        })}`,
        { dispatcher: agent },
      );
    const started = await authorize('dev-resident');
    await started.body.dump();
    assert.equal(started.statusCode, 303);
    const interaction = String(started.headers.location);
    assert.match(interaction, /^\/oauth\/interaction\/[A-Za-z0-9_-]+$/);
    const setCookie = started.headers['set-cookie'];
    const cookies = (Array.isArray(setCookie) ? setCookie : [String(setCookie)]).map((c) => c.split(';')[0]);
    const page = await request(`${base}${interaction}`, {
      dispatcher: agent,
      headers: { cookie: cookies.join('; '), 'accept-language': 'en' },
    });
    assert.equal(page.statusCode, 200);
    assert.match(await page.body.text(), /name="phone"/);
    // A client the file does not declare is refused on the spot.
    const unknown = await authorize('no-such-app');
    assert.equal(unknown.statusCode, 400);
    assert.match(await unknown.body.text(), /invalid_client/);
  } finally {
    await agent.close();
  }
});
