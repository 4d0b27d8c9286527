import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import {
  barrierDecisionProjection,
  doorOpenProjection,
  elementHex,
  eventTime,
  type Projection,
  projectionElement,
} from '../../reconcile/projection.ts';
import { noteSigner } from '../../tlog/note.ts';
import { uuidv7 } from '../../util/uuid.ts';
import { classify, recordingSkews, type SideItem, sortDifferences, summarise } from './classify.ts';
import { parseProjectionsAnswer } from './peer.ts';
import { REPORT_CONTEXT, type ReconcileReport, signReport, verifyReport } from './report.ts';

const T0 = Date.parse('2026-12-01T12:00:00Z');
const item = (p: Projection, o: { time?: number; at?: number } = {}): SideItem => ({
  element: elementHex(projectionElement(p)),
  time: o.time ?? eventTime(p.eventId),
  projection: p,
  at: o.at,
});
const barrier = (t: number, decision: 'open' | 'deny' = 'open') =>
  barrierDecisionProjection({ eventId: uuidv7(t), barrierId: 'gate-1', decision });

test('one-sided eventIds are missing on the other side; the same eventId with other content names the fields', () => {
  const a = barrier(T0);
  const b = barrier(T0 + 1);
  const c = doorOpenProjection({ commandId: uuidv7(T0 + 2), doorId: 'd1', subject: 's1', status: 'opened' });
  const c2 = { ...c, device: 'd2', result: 'rejected' };
  const diffs = classify([item(a), item(c)], [item(b), item(c2)], { skewToleranceMs: 1000 });
  assert.deepEqual(
    diffs.map((d) => [d.kind, d.eventId, d.fields]),
    [
      ['missing_at_partner', a.eventId, undefined],
      ['missing_at_us', b.eventId, undefined],
      ['content_mismatch', c.eventId, ['device', 'result']],
    ],
  );
  assert.deepEqual(summarise(diffs), {
    missing_at_partner: 1,
    missing_at_us: 1,
    content_mismatch: 1,
    timing_skew: 0,
  });
});

test('timing: the same element at two item times, or recording times apart, beyond the tolerance only', () => {
  const p = barrier(T0);
  const t = eventTime(p.eventId);
  const shifted = classify([item(p)], [item(p, { time: t + 5000 })], { skewToleranceMs: 1000 });
  assert.deepEqual(
    shifted.map((d) => [d.kind, d.skewMs, d.skewBasis, d.fields]),
    [['timing_skew', 5000, 'item_time', undefined]],
  );
  assert.deepEqual(classify([item(p)], [item(p, { time: t + 900 })], { skewToleranceMs: 1000 }), []);
  const recorded = classify([item(p, { at: t + 10 })], [item(p, { at: t + 7200_000 })], {
    skewToleranceMs: 60_000,
  });
  assert.deepEqual(
    recorded.map((d) => [d.kind, d.skewMs, d.skewBasis]),
    [['timing_skew', 7200_000 - 10, 'recorded_at']],
  );
  assert.deepEqual(
    classify([item(p, { at: t })], [item(p, { at: t + 59_000 })], { skewToleranceMs: 60_000 }),
    [],
  );
  // Without both recording times, nothing to compare.
  assert.deepEqual(classify([item(p)], [item(p, { at: t + 7200_000 })], { skewToleranceMs: 60_000 }), []);
});

test('several entries under one eventId pair by content; the surplus is missing on the other side', () => {
  const p = barrier(T0);
  const q = { ...p, result: 'deny' };
  const r = { ...p, device: 'gate-2' };
  const diffs = classify([item(p), item(r)], [item(q)], { skewToleranceMs: 0 });
  assert.deepEqual(
    diffs.map((d) => [d.kind, d.fields]),
    [
      ['content_mismatch', ['result']],
      ['missing_at_partner', undefined],
    ],
  );
  assert.equal(diffs[1]!.ours, r);
});

test('our recording time against the eventId time (the partner’s clock for its events)', () => {
  const p = barrier(T0);
  const t = eventTime(p.eventId);
  const d = recordingSkews([item(p, { at: t - 90_000 }), item(barrier(T0 + 5), { at: t + 500 })], {
    skewToleranceMs: 60_000,
  });
  assert.deepEqual(
    d.map((x) => [x.kind, x.eventId, x.skewMs, x.skewBasis]),
    [['timing_skew', p.eventId, -90_000, 'recorded_vs_event_id']],
  );
});

test('differences sort by time, eventId, then kind', () => {
  const a = barrier(T0 + 10);
  const b = barrier(T0);
  const diffs = sortDifferences([
    ...classify([item(a)], [], { skewToleranceMs: 0 }),
    ...recordingSkews([item(a, { at: T0 + 1e6 })], { skewToleranceMs: 0 }),
    ...classify([], [item(b)], { skewToleranceMs: 0 }),
  ]);
  assert.deepEqual(
    diffs.map((d) => [d.eventId, d.kind]),
    [
      [b.eventId, 'missing_at_us'],
      [a.eventId, 'missing_at_partner'],
      [a.eventId, 'timing_skew'],
    ],
  );
});

test('a partner’s projections answer is checked: its element, what was asked, a valid projection and time', () => {
  const p = barrier(T0);
  const e = elementHex(projectionElement(p));
  const ok = { element: e, time: eventTime(p.eventId), projection: p, at: new Date(T0).toISOString() };
  assert.deepEqual(parseProjectionsAnswer({ projections: [ok] }, new Set([e])), [ok]);
  const bad = (body: unknown, re: RegExp) =>
    assert.throws(() => parseProjectionsAnswer(body, new Set([e])), re);
  bad({}, /no projections list/);
  bad({ projections: [{ ...ok, projection: { ...p, result: 'deny' } }] }, /does not hash/);
  bad({ projections: [{ ...ok, projection: { ...p, extra: 1 } }] }, /not valid/);
  bad({ projections: [{ ...ok, time: -1 }] }, /no valid time/);
  bad({ projections: [{ ...ok, at: 'yesterday' }] }, /invalid at/);
  const other = barrier(T0 + 1);
  bad(
    { projections: [{ ...ok, element: elementHex(projectionElement(other)), projection: other }] },
    /not asked for/,
  );
});

test('the report signature: verifies with the journal key, not after a change, not with another key', () => {
  const key = generateKeyPairSync('ed25519').privateKey;
  const signer = noteSigner('smart-home.test/journal', key);
  const other = noteSigner('smart-home.test/journal', generateKeyPairSync('ed25519').privateKey);
  const report: ReconcileReport = {
    type: REPORT_CONTEXT,
    runId: uuidv7(T0),
    mode: 'exchange',
    partner: { id: 'p', code: 'north' },
    range: { from: new Date(T0).toISOString(), to: new Date(T0 + 1000).toISOString() },
    startedAt: new Date(T0).toISOString(),
    finishedAt: new Date(T0).toISOString(),
    checkpoints: { ours: null, partner: null },
    options: { skewToleranceMs: 1 },
    summary: { missing_at_partner: 0, missing_at_us: 0, content_mismatch: 0, timing_skew: 0 },
    differences: [],
  };
  const signed = signReport(report, signer);
  assert.equal(signed.signature.verifierKey, signer.verifierKey);
  assert.equal(verifyReport(JSON.parse(JSON.stringify(signed)), signer.verifier), true);
  assert.equal(verifyReport(signed, other.verifier), false);
  assert.equal(
    verifyReport(
      { ...signed, report: { ...signed.report, range: { ...report.range, to: 'x' } } },
      signer.verifier,
    ),
    false,
  );
  assert.equal(
    verifyReport({ ...signed, signature: { ...signed.signature, context: 'other' } }, signer.verifier),
    false,
  );
  assert.equal(verifyReport(null, signer.verifier), false);
});
