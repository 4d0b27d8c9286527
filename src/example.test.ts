import assert from 'node:assert/strict';
import { test } from 'node:test';

test('type stripping works', () => {
  const x: number = 1;
  assert.equal(x + 1, 2);
});
