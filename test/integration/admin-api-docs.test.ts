import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { Agent, request } from 'undici';
import { type Harness, startHarness } from '../support/harness.ts';

let h: Harness;
let agent: Agent;

before(async () => {
  h = await startHarness({ partners: [], document: () => ({ version: 1 }) });
  agent = new Agent({ connect: { ca: h.serverCa } });
});
after(async () => {
  await agent?.close();
  await h?.close();
});

const get = async (path: string) => {
  const res = await request(`${h.publicUrl}${path}`, { dispatcher: agent });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
};

test('/docs on the public listener lists the operations and serves the committed documents', async () => {
  const page = await get('/docs');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'/);
  assert.ok(page.text.includes('<code>/admin/v1/residents/{id}</code>'));
  assert.ok(page.text.includes('<code>/partner/v1/barriers/{barrierId}/decisions</code>'));
  for (const name of ['operator', 'resident', 'partner']) {
    const doc = await get(`/docs/openapi/${name}.json`);
    assert.equal(doc.status, 200, name);
    assert.equal(doc.text, readFileSync(new URL(`../../docs/openapi/${name}.json`, import.meta.url), 'utf8'));
  }
  assert.equal((await get('/docs/openapi/secrets.json')).status, 404);
});

test('the operator API is mounted on the public listener and refuses a request without a token', async () => {
  const r = await get('/admin/v1/residents');
  assert.equal(r.status, 401);
  assert.equal(JSON.parse(r.text).type, 'urn:smart-home:problem:invalid-token');
});
