/** A row's `at_us` (microseconds since the epoch, as exact text) in whole milliseconds. */
export function entryTimeMs(atUs: string): number {
  return Number(BigInt(atUs) / 1000n);
}
