// Test support only (imported by *.test.ts): the operator API over real TLS on loopback, behind a small
// access-token check that verifies real ES256 JWTs (the production check lives in src/api-auth/).
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { generateKeyPair, jwtVerify, type KeyObject, SignJWT } from 'jose';
import { Agent, request } from 'undici';
import { API_AUDIENCE, type Principal, ROLE_CLAIM } from '../api-auth/principal.ts';
import { installProblemHandlers, STRICT_AJV } from '../http/problem-handler.ts';
import { createCa, issueServerCert } from '../pki/certificates.ts';
import { uuidv7 } from '../util/uuid.ts';
import { type AdminApiDeps, adminApi } from './plugin.ts';

const ISSUER = 'urn:smart-home:test-issuer';

export interface AdminTestServer {
  app: FastifyInstance;
  url: string;
  /** A token for `sub` with `role`; `foreign` signs it with a key the server does not trust. */
  token(sub: string, role: 'operator' | 'resident', opts?: { foreign?: boolean }): Promise<string>;
  call(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    path: string,
    opts?: { token?: string | null; body?: unknown },
  ): Promise<{ status: number; body: Record<string, unknown> & { items?: Array<Record<string, unknown>> } }>;
  close(): Promise<void>;
}

export async function startAdminTestServer(deps: AdminApiDeps): Promise<AdminTestServer> {
  const ca = await createCa({ commonName: 'admin api test CA' });
  const server = await issueServerCert(ca, { commonName: 'localhost', dnsNames: ['localhost'] });
  const trusted = await generateKeyPair('ES256', { extractable: true });
  const foreign = await generateKeyPair('ES256', { extractable: true });
  const app = Fastify({
    ajv: STRICT_AJV,
    genReqId: () => uuidv7(),
    requestIdHeader: false,
    https: { cert: server.certPem, key: server.keyPem, minVersion: 'TLSv1.2' },
  }) as unknown as FastifyInstance;
  installProblemHandlers(app);
  await app.register(
    async (api) => {
      api.addHook('onRequest', async (req) => {
        const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
        if (!m) return;
        try {
          const { payload } = await jwtVerify(m[1]!, trusted.publicKey as KeyObject, {
            issuer: ISSUER,
            audience: API_AUDIENCE,
            algorithms: ['ES256'],
          });
          const sub = String(payload.sub);
          const scopes = new Set(String(payload['scope'] ?? '').split(' '));
          const principal: Principal =
            payload[ROLE_CLAIM] === 'operator'
              ? { kind: 'operator', operatorId: sub, subject: sub, scopes, clientId: undefined }
              : { kind: 'resident', residentId: sub, subject: sub, scopes, clientId: undefined };
          req.principal = principal;
        } catch {
          // Unverified: no principal, and the operator API refuses the request.
        }
      });
      await api.register(adminApi(deps));
    },
    { prefix: '/admin/v1' },
  );
  await app.listen({ host: '127.0.0.1', port: 0 });
  const url = `https://localhost:${(app.server.address() as AddressInfo).port}`;
  const agent = new Agent({ connect: { ca: ca.certPem } });
  return {
    app,
    url,
    async token(sub, role, opts = {}) {
      const key = (opts.foreign ? foreign : trusted).privateKey;
      return new SignJWT({ [ROLE_CLAIM]: role, scope: 'admin' })
        .setProtectedHeader({ alg: 'ES256' })
        .setIssuer(ISSUER)
        .setAudience(API_AUDIENCE)
        .setSubject(sub)
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(key);
    },
    async call(method, path, opts = {}) {
      const headers: Record<string, string> = {};
      if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
      if (opts.body !== undefined) headers['content-type'] = 'application/json';
      const res = await request(`${url}/admin/v1${path}`, {
        method,
        headers,
        dispatcher: agent,
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
      });
      const text = await res.body.text();
      return { status: res.statusCode, body: text ? JSON.parse(text) : {} };
    },
    async close() {
      await app.close();
      await agent.close();
    },
  };
}
