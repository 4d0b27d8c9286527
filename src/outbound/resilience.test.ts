import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { registry } from '../metrics/registry.ts';
import { OutboundError } from './errors.ts';
import {
  Bulkhead,
  backoffDelay,
  CircuitBreaker,
  isIdempotent,
  PartnerGuard,
  parseRetryAfter,
  resilienceOptions,
} from './resilience.ts';

const code = (c: string) => (e: unknown) => e instanceof OutboundError && e.code === c;

describe('Retry-After (RFC 9110 §10.2.3)', () => {
  const now = Date.parse('2026-12-02T08:00:00Z');
  test('delay-seconds and HTTP-date, capped, never in the past', () => {
    assert.equal(parseRetryAfter('120', now, 300), now + 120_000);
    assert.equal(parseRetryAfter(['7'], now, 300), now + 7000);
    assert.equal(parseRetryAfter('Wed, 02 Dec 2026 08:01:00 GMT', now, 300), now + 60_000);
    assert.equal(parseRetryAfter('86400', now, 300), now + 300_000, 'capped');
    assert.equal(parseRetryAfter('Wed, 02 Dec 2026 07:00:00 GMT', now, 300), now, 'a past date: now');
  });
  test('unreadable values are ignored', () => {
    for (const v of [
      undefined,
      '',
      '-5',
      '1.5',
      'soon',
      '2026-12-02T08:01:00Z',
      'Wed, 02 Dec 2026 08:01:00',
    ]) {
      assert.equal(parseRetryAfter(v, now, 300), undefined, String(v));
    }
  });
});

describe('retry rule', () => {
  test('full jitter: uniform below min(cap, base·2^(n−1))', () => {
    const o = { retryDelayMs: 100, retryMaxDelayMs: 1000 };
    assert.equal(
      backoffDelay(1, o, () => 0.999),
      99,
    );
    assert.equal(
      backoffDelay(3, o, () => 0.5),
      200,
    );
    assert.equal(
      backoffDelay(10, o, () => 0.999),
      999,
      'capped',
    );
    assert.equal(
      backoffDelay(2, o, () => 0),
      0,
    );
  });
  test('only idempotent methods (RFC 9110 §9.2.2)', () => {
    assert.deepEqual(['GET', 'head', 'PUT', 'DELETE', 'POST', 'PATCH'].map(isIdempotent), [
      true,
      true,
      true,
      true,
      false,
      false,
    ]);
  });
  test('defaults come from the documented options', () => {
    const o = resilienceOptions({ retryAttempts: 7 });
    assert.equal(o.retryAttempts, 7);
    assert.equal(o.breakerFailures, 5);
    assert.equal(o.maxConcurrent, 8);
  });
});

describe('circuit breaker', () => {
  const opts = resilienceOptions({
    breakerFailures: 3,
    breakerFailureRatePercent: 50,
    breakerWindowMs: 10_000,
    breakerMinCalls: 10,
    breakerCooldownMs: 1000,
  });

  test('opens after N consecutive failures, fails fast, half-opens with ONE probe after the cool-down', () => {
    let t = 0;
    const seen: string[] = [];
    const b = new CircuitBreaker(
      opts,
      () => t,
      (s) => seen.push(s),
    );
    for (let i = 0; i < 2; i++) {
      b.admit();
      b.failure('ERR_OUTBOUND_CONNECT');
    }
    b.admit();
    b.success();
    for (let i = 0; i < 3; i++) {
      b.admit();
      b.failure('ERR_OUTBOUND_CONNECT');
    }
    assert.equal(b.state, 'open');
    assert.throws(() => b.admit(), code('ERR_OUTBOUND_CIRCUIT_OPEN'));
    t = 999;
    assert.throws(() => b.admit(), code('ERR_OUTBOUND_CIRCUIT_OPEN'));
    t = 1000;
    assert.equal(b.state, 'half-open');
    b.admit(); // the probe
    assert.throws(() => b.admit(), code('ERR_OUTBOUND_CIRCUIT_OPEN'), 'one probe at a time');
    b.failure('http_503');
    assert.equal(b.state, 'open', 'a failed probe opens it again');
    t = 2000;
    b.admit();
    b.success();
    assert.equal(b.state, 'closed');
    b.admit();
    assert.deepEqual(seen, ['open', 'half-open', 'open', 'half-open', 'closed']);
  });

  test('opens on the failure rate over the window once enough calls were made', () => {
    let t = 0;
    const b = new CircuitBreaker(opts, () => t);
    // Alternating: never 3 in a row, but 50 % of 10 calls.
    for (let i = 0; i < 9; i++) {
      b.admit();
      if (i % 2 === 0) b.failure('x');
      else b.success();
      t += 100;
    }
    assert.equal(b.state, 'closed', '9 calls: below the minimum');
    b.admit();
    b.success();
    b.admit();
    b.failure('x');
    assert.equal(b.state, 'open');
  });

  test('failures older than the window are forgotten', () => {
    let t = 0;
    const c = new CircuitBreaker(opts, () => t);
    for (let i = 0; i < 8; i++) {
      c.admit();
      if (i % 2 === 0) c.failure('x');
      else c.success();
    }
    t = 20_000;
    for (let i = 0; i < 10; i++) {
      c.admit();
      if (i % 5 === 0) c.failure('x');
      else c.success();
    }
    assert.equal(c.state, 'closed', '2 of the 10 calls in the window failed');
  });
});

describe('bulkhead', () => {
  test('at most M in flight, a bounded FIFO queue, beyond it fails fast; a waiter gives up at its deadline', async () => {
    const b = new Bulkhead(2, 1);
    const r1 = await b.acquire(Date.now() + 1000);
    const r2 = await b.acquire(Date.now() + 1000);
    assert.equal(b.active, 2);
    let third = false;
    const p3 = b.acquire(Date.now() + 5000).then((r) => {
      third = true;
      return r;
    });
    await assert.rejects(b.acquire(Date.now() + 1000), code('ERR_OUTBOUND_BULKHEAD_FULL'));
    assert.equal(b.queued, 1);
    r1();
    r1(); // twice is once
    const r3 = await p3;
    assert.ok(third);
    assert.equal(b.active, 2);
    await assert.rejects(b.acquire(Date.now() + 20), code('ERR_OUTBOUND_TIMEOUT'));
    assert.equal(b.queued, 0, 'the waiter that gave up left the queue');
    r2();
    r3();
    assert.equal(b.active, 0);
  });
});

describe('PartnerGuard', () => {
  test('a 429 with Retry-After holds every call until then; one whose deadline is earlier fails at once', async () => {
    const g = new PartnerGuard('p-429', resilienceOptions({ retryAfterMaxSeconds: 60 }));
    let calls = 0;
    const answer = (status: number, headers = {}) =>
      g.run(Date.now() + 1000, async () => {
        calls++;
        return { value: status, status, headers };
      });
    assert.equal(await answer(429, { 'retry-after': '30' }), 429);
    assert.ok(g.blockedUntil > Date.now() + 29_000);
    await assert.rejects(answer(200), (e: unknown) => {
      assert.ok(e instanceof OutboundError && e.code === 'ERR_OUTBOUND_THROTTLED');
      assert.ok(e.retryAt && e.retryAt > Date.now() + 29_000);
      return true;
    });
    assert.equal(calls, 1, 'nothing sent while held');
    assert.equal(g.breaker.state, 'closed', 'a 429 is a living partner, not a failure');
    const text = await registry.getSingleMetricAsString('smart_home_outbound_refused_total');
    assert.match(text, /partner="p-429",reason="throttled"\} 1/);
  });

  test('a short Retry-After is waited out when the deadline allows', async () => {
    const g = new PartnerGuard('p-503', resilienceOptions({}));
    await g.run(Date.now() + 1000, async () => ({ value: 0, status: 503, headers: { 'retry-after': '1' } }));
    const t0 = Date.now();
    await g.run(Date.now() + 3000, async () => ({ value: 0, status: 200 }));
    assert.ok(Date.now() - t0 >= 900, 'the second call waited for the Retry-After');
  });

  test('partner faults open the breaker and the state is a gauge; our own failures do not count', async () => {
    const g = new PartnerGuard('p-down', resilienceOptions({ breakerFailures: 2 }));
    const fail = (c: string) =>
      g.run(Date.now() + 1000, async () => {
        throw new OutboundError(c as 'ERR_OUTBOUND_CONNECT', 'x');
      });
    await assert.rejects(fail('ERR_OUTBOUND_NOT_CONFIGURED'));
    await assert.rejects(fail('ERR_OUTBOUND_NOT_CONFIGURED'));
    assert.equal(g.breaker.state, 'closed');
    await assert.rejects(fail('ERR_OUTBOUND_CONNECT'));
    assert.equal(await g.run(Date.now() + 1000, async () => ({ value: 7, status: 500 })), 7);
    assert.equal(g.breaker.state, 'open');
    let ran = false;
    await assert.rejects(
      g.run(Date.now() + 1000, async () => {
        ran = true;
        return { value: 0 };
      }),
      code('ERR_OUTBOUND_CIRCUIT_OPEN'),
    );
    assert.equal(ran, false);
    const text = await registry.getSingleMetricAsString('smart_home_outbound_breaker_state');
    assert.match(text, /partner="p-down"\} 2/);
  });
});

test('breaker transitions are logged with the partner id, the state and the failure code only', async () => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  const g = new PartnerGuard('p-logged', resilienceOptions({ breakerFailures: 1, breakerCooldownMs: 100 }), {
    logger: pino({ base: null, timestamp: false }, sink),
  });
  await assert.rejects(
    g.run(Date.now() + 1000, async () => {
      throw new OutboundError('ERR_OUTBOUND_CONNECT', 'connection to the partner failed');
    }),
  );
  await new Promise((r) => setTimeout(r, 120));
  await g.run(Date.now() + 1000, async () => ({ value: 0, status: 200 }));
  assert.deepEqual(
    lines.map(({ level: _l, ...rest }) => rest),
    [
      {
        partnerId: 'p-logged',
        breaker: 'open',
        cause: 'ERR_OUTBOUND_CONNECT',
        msg: 'outbound circuit opened',
      },
      { partnerId: 'p-logged', breaker: 'half-open', msg: 'outbound circuit half-open' },
      { partnerId: 'p-logged', breaker: 'closed', msg: 'outbound circuit closed' },
    ],
  );
});
