import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { type Projection, projectionElement } from '../../reconcile/projection.ts';
import { uuidv7 } from '../../util/uuid.ts';
import { elementOf } from './source.ts';

const STRINGS = [
  'gate-1',
  'Подъезд 1 «главный»',
  'quote " and backslash \\ and slash /',
  'controls \u0000\u0001\u001f\n\t\r\b\f and \u007f \u2028\u2029',
  'emoji 🚪🔑 and CJK 門',
  '',
  'x'.repeat(500),
];

test('elementOf is projectionElement (RFC 8785) for every kind of string, subject or none (the day index and the simulator agree)', () => {
  let n = 0;
  for (const device of STRINGS.filter(Boolean))
    for (const result of STRINGS)
      for (const subject of [null, ...STRINGS]) {
        for (const p of [
          { eventId: uuidv7(), action: 'door.open', device, subject, result, initiator: 'smart-home' },
          { eventId: uuidv7(), action: 'barrier.decision', device, subject, result, initiator: 'partner' },
        ] as Projection[]) {
          assert.deepEqual(elementOf(p), projectionElement(p), JSON.stringify(p));
          n++;
        }
      }
  for (let i = 0; i < 200; i++) {
    const s = randomBytes(24).toString('latin1') + String.fromCodePoint(0x1f600 + (i % 50));
    const p: Projection = {
      eventId: uuidv7(),
      action: 'door.open',
      device: s,
      subject: s,
      result: s,
      initiator: 'smart-home',
    };
    assert.deepEqual(elementOf(p), projectionElement(p));
    n++;
  }
  assert.ok(n > 800);
});

test('a lone surrogate, which JCS refuses, leaves the row out instead of failing the build', () => {
  const p: Projection = {
    eventId: uuidv7(),
    action: 'door.open',
    device: 'door\ud800',
    subject: null,
    result: 'opened',
    initiator: 'smart-home',
  };
  assert.throws(() => projectionElement(p));
  assert.equal(elementOf(p), undefined);
  assert.equal(elementOf({ ...p, device: 'door', subject: '\udc00' }), undefined);
});
