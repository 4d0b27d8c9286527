import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from './logger.ts';

test('secrets and personal data are redacted by the logger itself, at every level', () => {
  const lines: string[] = [];
  const log = createLogger({ level: 'trace', destination: { write: (s: string) => void lines.push(s) } });
  log.info(
    {
      resident: { fullName: 'Анна Петрова', phone: '+79001112233', plate: 'А123ВС77' },
      partner: { token: 'eyJhbGciOi.secret.token', secret: 'k', privateKey: 'pk' },
      decision: { candidates: [{ token: 'S934r0KVTRBcig1xzAczXAuOlUuifFLFcv1pOCJntm4' }] },
    },
    'test',
  );
  log.debug(
    {
      req: {
        method: 'POST',
        url: '/partner/v1/x?plate=A123BC77',
        id: 'r1',
        headers: { authorization: 'Bearer abc' },
      },
    },
    'req',
  );
  const out = lines.join('\n');
  for (const secret of [
    'Анна',
    '+7900',
    'А123ВС77',
    'A123BC77',
    'eyJhbGciOi',
    'S934r0KV',
    'Bearer abc',
    '"pk"',
  ]) {
    assert.ok(!out.includes(secret), `the log holds ${secret}`);
  }
  assert.match(out, /\[redacted\]/);
  assert.match(out, /"url":"\/partner\/v1\/x"/, 'query strings are dropped from logged URLs');
});
