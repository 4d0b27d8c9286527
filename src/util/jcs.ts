/**
 * RFC 8785 JSON Canonicalization Scheme for the JSON values this service hashes (journal leaves,
 * contract §8.3 projections): object members sorted by their names' UTF-16 code units, no whitespace,
 * strings and numbers as ECMAScript serialises them. Non-finite numbers, `undefined`, functions,
 * bigints and lone surrogates are refused rather than silently changed.
 */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'string':
      if (!value.isWellFormed()) throw new TypeError('a lone surrogate cannot be canonicalised');
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('a non-finite number cannot be canonicalised');
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      if (Object.getPrototypeOf(value) !== Object.prototype && Object.getPrototypeOf(value) !== null) {
        throw new TypeError('only plain objects can be canonicalised');
      }
      const keys = Object.keys(value).sort();
      const parts: string[] = [];
      for (const k of keys) {
        const v = (value as Record<string, unknown>)[k];
        if (v === undefined) throw new TypeError(`member ${k} is undefined`);
        parts.push(`${canonicalJson(k)}:${canonicalJson(v)}`);
      }
      return `{${parts.join(',')}}`;
    }
    default:
      throw new TypeError(`a ${typeof value} cannot be canonicalised`);
  }
}
