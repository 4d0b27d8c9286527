import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';

/**
 * OpenAPI 3.1 documents of the three APIs, generated from the route schemas: the operator API
 * (`/admin/v1`) and the resident API (`/api/v1`) from the public listener, the partner API
 * (`/partner/v1`) from the partner listener. `docs/openapi/*.json` are these documents as written by
 * `npm run docs:openapi`; a test fails when they drift.
 */
export const OPENAPI_DOCUMENTS = {
  operator: { listener: 'public', prefix: '/admin/v1', title: 'smart-home operator API' },
  resident: { listener: 'public', prefix: '/api/v1', title: 'smart-home resident API' },
  partner: { listener: 'partner', prefix: '/partner/v1', title: 'smart-home partner API' },
} as const;
export type OpenApiName = keyof typeof OPENAPI_DOCUMENTS;

const DESCRIPTIONS: Record<OpenApiName, string> = {
  operator:
    'Registry administration and journal search for PropDevelopment operators. Bearer access token of the operator role (audience urn:smart-home:api). Errors are RFC 9457 problem details. See docs/operator-api.md.',
  resident:
    'What a resident does from the app: their apartments, doors, vehicles and guest passes. Access token of the resident role (audience urn:smart-home:api).',
  partner:
    'Barrier decisions and events for partners: mutual TLS, OAuth 2.0 client credentials bound to the certificate, RFC 9421 signed requests and responses. See the partner API contract.',
};

/**
 * Registers @fastify/swagger on a listener; call before its routes are added (it collects them as they
 * are registered). `listener` picks the security schemes shown.
 */
export async function registerOpenApi(app: FastifyInstance, listener: 'public' | 'partner'): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: `smart-home ${listener} listener`, version: '1' },
      components: {
        securitySchemes:
          listener === 'public'
            ? { bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } }
            : {
                oauth2: {
                  type: 'oauth2',
                  flows: {
                    clientCredentials: {
                      tokenUrl: '/oauth/token',
                      scopes: { 'barrier:decide': 'barrier decisions' },
                    },
                  },
                },
              },
      },
    },
  });
}

/** Objects with their keys sorted, recursively: the committed files diff by content, never by order. */
export function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

type Doc = {
  openapi: string;
  info?: unknown;
  paths?: Record<string, unknown>;
  components?: Record<string, unknown>;
};

/** One API's document out of a listener's: its paths only, under its own title. Apps must be ready. */
export function openApiDocument(
  name: OpenApiName,
  apps: { publicApp: FastifyInstance; partnerApp: FastifyInstance },
) {
  const d = OPENAPI_DOCUMENTS[name];
  const app = d.listener === 'public' ? apps.publicApp : apps.partnerApp;
  const full = (app as unknown as { swagger(): Doc }).swagger();
  const paths: Record<string, unknown> = {};
  for (const [p, item] of Object.entries(full.paths ?? {})) if (p.startsWith(`${d.prefix}/`)) paths[p] = item;
  return sortKeys({
    openapi: '3.1.0',
    info: { title: d.title, version: '1', description: DESCRIPTIONS[name] },
    paths,
    components: { securitySchemes: full.components?.['securitySchemes'] ?? {} },
  }) as Record<string, unknown>;
}

/** The committed text of a document: sorted keys, two-space indent, final newline. */
export function renderOpenApi(doc: unknown): string {
  return `${JSON.stringify(sortKeys(doc), null, 2)}\n`;
}

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/**
 * `/docs` on the public listener: a static page listing every operation of the three APIs, and the
 * documents themselves at `/docs/openapi/{operator,resident,partner}.json`. No script, no asset from
 * elsewhere.
 */
export function apiDocs(apps: { publicApp: FastifyInstance; partnerApp: FastifyInstance }) {
  return async (app: FastifyInstance) => {
    app.get('/docs/openapi/:name', { schema: { hide: true } }, async (req, reply) => {
      const m = /^(operator|resident|partner)\.json$/.exec((req.params as { name: string }).name);
      if (!m) return reply.callNotFound();
      return reply.type('application/json').send(renderOpenApi(openApiDocument(m[1] as OpenApiName, apps)));
    });
    app.get('/docs', { schema: { hide: true } }, async (_req, reply) => {
      let body = '';
      for (const name of Object.keys(OPENAPI_DOCUMENTS) as OpenApiName[]) {
        const doc = openApiDocument(name, apps) as {
          paths: Record<string, Record<string, { summary?: string }>>;
        };
        body += `<h2>${escapeHtml(OPENAPI_DOCUMENTS[name].title)}</h2>\n<p><a href="/docs/openapi/${name}.json">${name}.json</a> (OpenAPI 3.1)</p>\n<table>\n`;
        for (const [path, ops] of Object.entries(doc.paths)) {
          for (const [method, op] of Object.entries(ops)) {
            body += `<tr><td><code>${method.toUpperCase()}</code></td><td><code>${escapeHtml(path)}</code></td><td>${escapeHtml(op.summary ?? '')}</td></tr>\n`;
          }
        }
        body += '</table>\n';
      }
      return reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'")
        .send(
          `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>smart-home API</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}td{padding:2px 8px}code{font-size:13px}</style></head>
<body><h1>smart-home API</h1>\n${body}</body></html>\n`,
        );
    });
  };
}
