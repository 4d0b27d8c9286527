import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { OPENAPI_DOCUMENTS, type OpenApiName } from './openapi.ts';
import { generateOpenApiDocuments, openApiFile } from './openapi-build.ts';

test('docs/openapi/*.json are generated from the registered routes (run `npm run docs:openapi`)', async () => {
  const docs = await generateOpenApiDocuments();
  for (const name of Object.keys(OPENAPI_DOCUMENTS) as OpenApiName[]) {
    const committed = readFileSync(openApiFile(name), 'utf8');
    assert.equal(committed, docs[name], `docs/openapi/${name}.json drifted from the routes`);
  }
  // What the documents must show, whatever else changes.
  const operator = JSON.parse(docs.operator);
  assert.equal(operator.openapi, '3.1.0');
  for (const p of ['/admin/v1/complexes', '/admin/v1/partners/{id}', '/admin/v1/journal'])
    assert.ok(operator.paths[p], p);
  const createResident = operator.paths['/admin/v1/residents'].post;
  assert.equal(createResident.requestBody.content['application/json'].schema.additionalProperties, false);
  assert.ok(createResident.responses['409'] && createResident.responses['400']);
  const partner = JSON.parse(docs.partner);
  assert.ok(partner.paths['/partner/v1/barriers/{barrierId}/decisions'].post);
  assert.ok(Object.keys(partner.paths).every((p) => p.startsWith('/partner/v1/')));
});
