import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import Fastify from 'fastify';
import pg from 'pg';
import { isDatabaseUnavailable } from '../db/unavailable.ts';
import { freePort } from '../util/free-port.ts';
import { installProblemHandlers } from './problem-handler.ts';

/** The error node-postgres really raises when nothing listens on the database's port. */
async function refusedError(): Promise<unknown> {
  const port = await freePort();
  const pool = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:${port}/test`, max: 1 });
  try {
    await pool.query('select 1');
  } catch (err) {
    return err;
  } finally {
    await pool.end();
  }
  throw new Error('expected the connection to be refused');
}

/** The error node-postgres raises when the server drops the connection (a restart) mid-handshake. */
async function droppedError(): Promise<unknown> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.once('data', () => s.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  const client = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/test` });
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    return err;
  } finally {
    await client.end().catch(() => {});
    for (const s of sockets) s.destroy();
    server.close();
  }
  throw new Error('expected the connection to be dropped');
}

test('a database that cannot be reached is told apart from a bad statement', async () => {
  assert.equal(isDatabaseUnavailable(await refusedError()), true, 'connection refused');
  assert.equal(isDatabaseUnavailable(await droppedError()), true, 'connection dropped by the server');
  for (const code of ['57P01', '57P03', '08006', '53300'])
    assert.equal(isDatabaseUnavailable(Object.assign(new Error('x'), { code })), true, code);
  // A wrapped cause counts; a query's own failure does not.
  assert.equal(isDatabaseUnavailable(new Error('wrapped', { cause: await refusedError() })), true);
  for (const code of ['23505', '42P01', '22P02', undefined])
    assert.equal(isDatabaseUnavailable(Object.assign(new Error('x'), { code })), false, String(code));
  assert.equal(isDatabaseUnavailable('ECONNREFUSED'), false);
});

test('an unreachable database is answered 503 unavailable with Retry-After, anything else 500', async () => {
  const refused = await refusedError();
  const app = Fastify();
  installProblemHandlers(app, { databaseRetryAfterS: 7 });
  app.get('/down', async () => {
    throw refused;
  });
  app.get('/bug', async () => {
    throw new Error('a bug');
  });
  const down = await app.inject('/down');
  assert.equal(down.statusCode, 503);
  assert.equal(down.headers['retry-after'], '7');
  assert.equal(down.json().type, 'urn:smart-home:problem:unavailable');
  assert.equal(down.json().detail, undefined, '5xx bodies expose nothing');
  const bug = await app.inject('/bug');
  assert.equal(bug.statusCode, 500);
  assert.equal(bug.headers['retry-after'], undefined);
  await app.close();
});
