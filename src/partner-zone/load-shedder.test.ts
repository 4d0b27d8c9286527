import assert from 'node:assert/strict';
import { test } from 'node:test';
import { eventLoopLagProbe, LoadShedder } from './load-shedder.ts';

const opts = { thresholdMs: 100, retryAfterSeconds: 2, fairShareFactor: 4, windowMs: 1000 };

test('under the threshold nothing is shed; at twice it everyone is', () => {
  let lag = 0;
  const s = new LoadShedder(opts, { lagMs: () => lag }, () => 0);
  assert.equal(s.check('a'), 0);
  lag = 100;
  assert.equal(s.check('a'), 0, 'at the threshold: served');
  lag = 200;
  assert.equal(s.check('a'), 2);
  assert.equal(s.check('b'), 2);
});

test('between the threshold and twice it, only a partner far over its fair share is shed', () => {
  let t = 0;
  let lag = 0;
  const s = new LoadShedder(opts, { lagMs: () => lag }, () => t);
  for (let i = 0; i < 50; i++) s.check('flood');
  for (let i = 0; i < 5; i++) s.check('quiet');
  for (let i = 0; i < 5; i++) s.check('other');
  lag = 150;
  assert.equal(s.check('flood'), 2);
  assert.equal(s.check('quiet'), 0);
  assert.equal(s.check('other'), 0);
  // The counts age out: two windows later nobody stands out, and an even load is shed alike.
  t = 2500;
  assert.equal(s.check('quiet'), 2, 'one partner alone: no fair share to compare, shed');
});

test('nobody standing out: the load is everyone’s, everyone is shed; factor 0 always sheds alike', () => {
  const lag = 150;
  const even = new LoadShedder(opts, { lagMs: () => lag }, () => 0);
  for (let i = 0; i < 10; i++) for (const p of ['a', 'b', 'c']) even.check(p);
  assert.equal(even.check('a'), 2);
  const plain = new LoadShedder({ ...opts, fairShareFactor: 0 }, { lagMs: () => lag }, () => 0);
  for (let i = 0; i < 50; i++) plain.check('flood');
  assert.equal(plain.check('quiet'), 2);
});

test('threshold 0 never sheds', () => {
  const s = new LoadShedder({ ...opts, thresholdMs: 0 }, { lagMs: () => 10_000 }, () => 0);
  assert.equal(s.check('a'), 0);
});

test('the event-loop probe sees a blocked loop', async () => {
  const probe = eventLoopLagProbe(50);
  try {
    await new Promise((r) => setTimeout(r, 60));
    const until = Date.now() + 250;
    while (Date.now() < until) {
      // keep the loop busy: nothing else can run
    }
    // The overdue sampling tick runs first thing after the block; read before the next one.
    await new Promise((r) => setTimeout(r, 15));
    assert.ok(probe.lagMs() >= 100, `lag ${probe.lagMs()} ms after a 250 ms block`);
  } finally {
    probe.close?.();
  }
});
