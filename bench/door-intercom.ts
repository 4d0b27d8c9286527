/**
 * One side of `npm run bench:door`: the intercom partner (simulator/intercom.ts) in its own process,
 * answering every door at once, so it shares an event loop with neither the service nor the load.
 * Prints one JSON line `{ "url": … }` once it listens, and serves until killed.
 *
 *   node bench/door-intercom.ts <smart-home data dir> <partner identity dir> <server CA json> <port>
 *
 * The server CA (`{certPem, keyPem}`) and the port are chosen by bench/door.ts beforehand, so that the
 * partner's registration (base URL, pinned CA) is provisioned before this process starts.
 *
 * It also times the partner's own handling of each door command, from the request's headers parsed to
 * the signed answer handed to the socket (node:diagnostics_channel on the HTTP server): SIGUSR1 starts
 * a new sample, SIGUSR2 prints it as one JSON line `{ "handlingMs": [...] }`.
 */
import diagnosticsChannel from 'node:diagnostics_channel';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { loadIdentity } from '../simulator/identity.ts';
import { smartHomeTrust, startIntercomSimulator } from '../simulator/intercom.ts';
import type { KeyPairPem } from '../src/pki/certificates.ts';
import { benchDoors, DOOR_BENCH_CLIENT_ID } from './door-world.ts';

const [dataDir, identityDir, caFile, port] = process.argv.slice(2);
if (!dataDir || !identityDir || !caFile || !port) {
  process.stderr.write('usage: door-intercom.ts DATA_DIR IDENTITY_DIR CA_JSON PORT\n');
  process.exit(2);
}

const startedAt = new WeakMap<IncomingMessage, number>();
let handlingMs: number[] = [];
diagnosticsChannel.subscribe('http.server.request.start', (m) => {
  const { request } = m as { request: IncomingMessage };
  if (request.method === 'POST' && request.url?.endsWith('/open')) startedAt.set(request, performance.now());
});
diagnosticsChannel.subscribe('http.server.response.finish', (m) => {
  const t = startedAt.get((m as { request: IncomingMessage }).request);
  if (t !== undefined) handlingMs.push(performance.now() - t);
});
process.on('SIGUSR1', () => {
  handlingMs = [];
});
process.on('SIGUSR2', () => {
  process.stdout.write(`${JSON.stringify({ handlingMs })}\n`);
});

const sim = await startIntercomSimulator({
  identity: await loadIdentity(identityDir),
  ...(await smartHomeTrust(dataDir)),
  serverCa: JSON.parse(await readFile(caFile, 'utf8')) as KeyPairPem,
  clientId: DOOR_BENCH_CLIENT_ID,
  doors: benchDoors(),
  host: '127.0.0.1',
  port: Number(port),
});
process.stdout.write(`${JSON.stringify({ url: sim.url })}\n`);

const stop = async () => {
  await sim.stop();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
