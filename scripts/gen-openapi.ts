import { mkdirSync, writeFileSync } from 'node:fs';
import type { OpenApiName } from '../src/admin-api/openapi.ts';
import { generateOpenApiDocuments, openApiFile } from '../src/admin-api/openapi-build.ts';

const docs = await generateOpenApiDocuments();
mkdirSync(new URL('../docs/openapi/', import.meta.url), { recursive: true });
for (const [name, text] of Object.entries(docs)) {
  writeFileSync(openApiFile(name as OpenApiName), text);
  process.stdout.write(`wrote docs/openapi/${name}.json\n`);
}
