import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../config/config.ts';
import { openPgliteDb } from '../db/pglite-db.ts';
import { createRuntime, ensureDevelopmentMaterial } from '../server.ts';
import { OPENAPI_DOCUMENTS, type OpenApiName, openApiDocument, renderOpenApi } from './openapi.ts';

/**
 * Builds the whole app as `start` does (both listeners, every route, nothing listening) on a throw-away
 * data directory and in-memory database, and renders the three OpenAPI documents from its routes.
 */
export async function generateOpenApiDocuments(): Promise<Record<OpenApiName, string>> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'smart-home-openapi-'));
  try {
    const config = loadConfig({ NODE_ENV: 'development', LOG_LEVEL: 'silent', SMART_HOME_DATA_DIR: dataDir });
    await ensureDevelopmentMaterial(config);
    const runtime = await createRuntime(config, undefined, { db: await openPgliteDb() });
    try {
      const { publicApp, partnerApp } = runtime.app;
      await publicApp.ready();
      await partnerApp.ready();
      const out = {} as Record<OpenApiName, string>;
      for (const name of Object.keys(OPENAPI_DOCUMENTS) as OpenApiName[])
        out[name] = renderOpenApi(openApiDocument(name, { publicApp, partnerApp }));
      return out;
    } finally {
      await runtime.close();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Where `npm run docs:openapi` writes each document. */
export const openApiFile = (name: OpenApiName) => new URL(`../../docs/openapi/${name}.json`, import.meta.url);
