/**
 * bench:journal's responder: a small HTTPS server on loopback holding each scenario's set as a
 * ReconIndex and answering Negentropy v1 messages (the §8.4 exchange without the partner zone's
 * mTLS, token and signatures, which the door and barrier benchmarks measure), and, for the baseline,
 * its whole set as hex lines (one element each, in journal order). Prints `{"url","ca"}` once listening.
 *
 *   node bench/journal-recon-server.ts <size>
 */
import { createServer } from 'node:https';
import { createCa, issueServerCert } from '../src/pki/certificates.ts';
import type { ReconIndex } from '../src/reconcile/index.ts';
import { Negentropy } from '../src/reconcile/negentropy.ts';
import {
  baseColumns,
  type Columns,
  hexLines,
  indexOf,
  SCENARIOS,
  type Scenario,
  scenarioColumns,
} from './journal-sets.ts';

const size = Number(process.argv[2] ?? 1_000_000);
const base = baseColumns(size);
const sets = new Map<Scenario, { columns: Columns; index: ReconIndex }>();
for (const s of SCENARIOS) {
  const columns = s === 'same' ? base : scenarioColumns(base, s);
  sets.set(s, { columns, index: indexOf(columns) });
}

const ca = await createCa({ commonName: 'bench journal CA' });
const cert = await issueServerCert(ca, { commonName: '127.0.0.1', ipAddresses: ['127.0.0.1'] });

const server = createServer(
  { cert: cert.certPem, key: cert.keyPem, keepAliveTimeout: 60_000 },
  (req, res) => {
    const url = new URL(req.url ?? '/', 'https://127.0.0.1');
    const set = sets.get(url.searchParams.get('scenario') as Scenario);
    if (!set) {
      res.writeHead(404).end();
      return;
    }
    if (req.method === 'GET' && url.pathname === '/export') {
      // The baseline: the whole set, as a journal export would give it.
      res.writeHead(200, { 'content-type': 'text/plain' }).end(hexLines(set.columns));
      return;
    }
    if (req.method !== 'POST' || url.pathname !== '/reconcile') {
      res.writeHead(404).end();
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const answer = new Negentropy(set.index).reconcile(Buffer.concat(chunks));
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(answer);
      } catch (err) {
        res.writeHead(400).end((err as Error).message);
      }
    });
  },
);
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ url: `https://127.0.0.1:${port}`, ca: ca.certPem })}\n`);
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
