/**
 * The ceiling of `npm run bench:barrier`: a bare Fastify route over the same mutual TLS as the partner
 * listener (same certificates, client certificate required), answering a constant.
 *   node bench/ceiling-server.ts <dataDir>
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import Fastify from 'fastify';

const dataDir = process.argv[2]!;
const pki = (f: string) => readFile(path.join(dataDir, 'pki', f), 'utf8');
const app = Fastify({
  https: {
    cert: await pki('partner-server.crt'),
    key: await pki('partner-server.key'),
    ca: await pki('partner-issuing-ca.crt'),
    requestCert: true,
    rejectUnauthorized: true,
  },
  keepAliveTimeout: 65_000,
});
const answer = {
  decisionId: '00000000-0000-7000-8000-000000000000',
  decision: 'deny',
  reason: 'not_registered',
};
app.post('/partner/v1/barriers/:barrierId/decisions', async () => answer);
await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(
  `${JSON.stringify({ url: `https://localhost:${(app.server.address() as { port: number }).port}` })}\n`,
);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
