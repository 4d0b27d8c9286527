/**
 * A small, strict RFC 8941 (Structured Field Values) parser and serializer: just what RFC 9421
 * (Signature-Input, Signature, `key` members) and RFC 9530 (Content-Digest) need. Dictionaries,
 * inner lists, parameters, and the bare items integer, decimal, string, token, byte sequence and
 * boolean. Lists at top level and RFC 9651 additions (Date, Display String) are deliberately absent:
 * a field using them fails to parse, which callers treat as malformed (fail closed).
 */

/** An sf-token (RFC 8941 §3.3.4), kept apart from sf-string so that it serializes back unquoted. */
export class Token {
  readonly value: string;
  constructor(value: string) {
    if (!TOKEN_RE.test(value)) throw new StructuredFieldError('invalid token');
    this.value = value;
  }
}

/** An sf-decimal (RFC 8941 §3.3.2), kept apart from integers so that `1.0` does not turn into `1`. */
export class Decimal {
  readonly value: number;
  constructor(value: number) {
    if (!Number.isFinite(value)) throw new StructuredFieldError('invalid decimal');
    this.value = value;
  }
}

/** RFC 8941 §3.3: integer (number), decimal, string, token, byte sequence (Uint8Array), boolean. */
export type BareItem = number | string | boolean | Uint8Array | Token | Decimal;
/** RFC 8941 §3.1.2: ordered parameters. */
export type Parameters = Map<string, BareItem>;
export interface Item {
  value: BareItem;
  params: Parameters;
}
export interface InnerList {
  items: Item[];
  params: Parameters;
}
export type Member = Item | InnerList;
/** RFC 8941 §3.2: ordered map of key to Item or Inner List. */
export type Dictionary = Map<string, Member>;

export class StructuredFieldError extends Error {
  override readonly name = 'StructuredFieldError';
}

export interface ParseOptions {
  /**
   * RFC 8941 §4.2.2 lets a repeated dictionary or parameter key silently overwrite the earlier one.
   * Security-relevant fields (two `sig1` members, two `sha-256` digests) are ambiguous when a peer or
   * an intermediary would pick the other one, so callers here reject them instead.
   */
  rejectDuplicateKeys?: boolean;
}

// RFC 8941 §3.3.4: token = ( ALPHA / "*" ) *( tchar / ":" / "/" ), tchar from RFC 9110 §5.6.2.
const TOKEN_RE = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$/;
// RFC 8941 §3.1.2: key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
const KEY_RE = /^[a-z*][a-z0-9_\-.*]*$/;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const MAX_INTEGER = 999_999_999_999_999;

export function isInnerList(member: Member): member is InnerList {
  return (member as InnerList).items !== undefined;
}

export function isValidKey(key: string): boolean {
  return KEY_RE.test(key);
}

// Character classes by code point, checked without allocating.
function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}
function isAlpha(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}
function isLcAlpha(c: number): boolean {
  return c >= 0x61 && c <= 0x7a;
}
/** tchar (RFC 9110 §5.6.2) plus ":" and "/" allowed inside tokens (RFC 8941 §3.3.4). */
function isTokenChar(c: number): boolean {
  if (isAlpha(c) || isDigit(c)) return true;
  switch (c) {
    case 0x21: // !
    case 0x23: // #
    case 0x24: // $
    case 0x25: // %
    case 0x26: // &
    case 0x27: // '
    case 0x2a: // *
    case 0x2b: // +
    case 0x2d: // -
    case 0x2e: // .
    case 0x5e: // ^
    case 0x5f: // _
    case 0x60: // `
    case 0x7c: // |
    case 0x7e: // ~
    case 0x3a: // :
    case 0x2f: // /
      return true;
    default:
      return false;
  }
}

class Parser {
  readonly input: string;
  readonly strict: boolean;
  pos = 0;

  constructor(input: string, options: ParseOptions | undefined) {
    this.input = input;
    this.strict = options?.rejectDuplicateKeys === true;
  }

  fail(what: string): never {
    throw new StructuredFieldError(`${what} at offset ${this.pos}`);
  }

  peek(): number {
    // NaN past the end: every comparison with it is false.
    return this.input.charCodeAt(this.pos);
  }

  atEnd(): boolean {
    return this.pos >= this.input.length;
  }

  skipSP(): void {
    while (this.peek() === 0x20) this.pos++;
  }

  /** OWS = *( SP / HTAB ), only between list and dictionary members (RFC 8941 §4.2.1.2). */
  skipOWS(): void {
    for (let c = this.peek(); c === 0x20 || c === 0x09; c = this.peek()) this.pos++;
  }

  // RFC 8941 §4.2.2
  dictionary(): Dictionary {
    const dict: Dictionary = new Map();
    while (!this.atEnd()) {
      const key = this.key();
      let member: Member;
      if (this.peek() === 0x3d /* = */) {
        this.pos++;
        member = this.itemOrInnerList();
      } else {
        member = { value: true, params: this.parameters() };
      }
      if (this.strict && dict.has(key)) this.fail('duplicate dictionary key');
      dict.set(key, member);
      this.skipOWS();
      if (this.atEnd()) return dict;
      if (this.peek() !== 0x2c /* , */) this.fail('expected ","');
      this.pos++;
      this.skipOWS();
      if (this.atEnd()) this.fail('trailing ","');
    }
    return dict;
  }

  // RFC 8941 §4.2.1.1
  itemOrInnerList(): Member {
    return this.peek() === 0x28 /* ( */ ? this.innerList() : this.item();
  }

  // RFC 8941 §4.2.1.2
  innerList(): InnerList {
    this.pos++; // (
    const items: Item[] = [];
    while (!this.atEnd()) {
      this.skipSP();
      if (this.peek() === 0x29 /* ) */) {
        this.pos++;
        return { items, params: this.parameters() };
      }
      items.push(this.item());
      const c = this.peek();
      if (c !== 0x20 && c !== 0x29) this.fail('expected SP or ")" in inner list');
    }
    return this.fail('unterminated inner list');
  }

  // RFC 8941 §4.2.3
  item(): Item {
    const value = this.bareItem();
    return { value, params: this.parameters() };
  }

  // RFC 8941 §4.2.3.1
  bareItem(): BareItem {
    const c = this.peek();
    if (c === 0x2d /* - */ || isDigit(c)) return this.number();
    if (c === 0x22 /* " */) return this.string();
    if (c === 0x2a /* * */ || isAlpha(c)) return this.token();
    if (c === 0x3a /* : */) return this.byteSequence();
    if (c === 0x3f /* ? */) return this.boolean();
    return this.fail('unexpected character for a bare item');
  }

  // RFC 8941 §4.2.3.2
  parameters(): Parameters {
    const params: Parameters = new Map();
    while (this.peek() === 0x3b /* ; */) {
      this.pos++;
      this.skipSP();
      const key = this.key();
      let value: BareItem = true;
      if (this.peek() === 0x3d /* = */) {
        this.pos++;
        value = this.bareItem();
      }
      if (this.strict && params.has(key)) this.fail('duplicate parameter key');
      params.set(key, value);
    }
    return params;
  }

  // RFC 8941 §4.2.3.3
  key(): string {
    const start = this.pos;
    const first = this.peek();
    if (!isLcAlpha(first) && first !== 0x2a) this.fail('invalid key');
    this.pos++;
    for (;;) {
      const c = this.peek();
      if (isLcAlpha(c) || isDigit(c) || c === 0x5f || c === 0x2d || c === 0x2e || c === 0x2a) this.pos++;
      else break;
    }
    return this.input.slice(start, this.pos);
  }

  // RFC 8941 §4.2.4
  number(): number | Decimal {
    let sign = 1;
    if (this.peek() === 0x2d) {
      sign = -1;
      this.pos++;
    }
    if (!isDigit(this.peek())) this.fail('expected digit');
    const digitsStart = this.pos;
    let dot = -1;
    for (;;) {
      const c = this.peek();
      if (isDigit(c)) this.pos++;
      else if (c === 0x2e /* . */ && dot < 0) {
        if (this.pos - digitsStart > 12) this.fail('decimal integer part too long');
        dot = this.pos;
        this.pos++;
      } else break;
      const len = this.pos - digitsStart;
      if (dot < 0 && len > 15) this.fail('integer too long');
      if (dot >= 0 && len > 16) this.fail('decimal too long');
    }
    const text = this.input.slice(digitsStart, this.pos);
    if (dot < 0) return sign * Number.parseInt(text, 10);
    const fraction = this.pos - dot - 1;
    if (fraction === 0) this.fail('decimal ends with "."');
    if (fraction > 3) this.fail('decimal has more than 3 fractional digits');
    return new Decimal(sign * Number.parseFloat(text));
  }

  // RFC 8941 §4.2.5
  string(): string {
    this.pos++; // "
    let out = '';
    let chunk = this.pos;
    while (!this.atEnd()) {
      const c = this.peek();
      if (c === 0x5c /* \ */) {
        const next = this.input.charCodeAt(this.pos + 1);
        if (next !== 0x22 && next !== 0x5c) this.fail('invalid escape in string');
        out += this.input.slice(chunk, this.pos);
        this.pos++;
        chunk = this.pos;
        this.pos++;
      } else if (c === 0x22) {
        out += this.input.slice(chunk, this.pos);
        this.pos++;
        return out;
      } else if (c < 0x20 || c > 0x7e) {
        this.fail('invalid character in string');
      } else {
        this.pos++;
      }
    }
    return this.fail('unterminated string');
  }

  // RFC 8941 §4.2.6
  token(): Token {
    const start = this.pos;
    this.pos++;
    while (isTokenChar(this.peek())) this.pos++;
    return new Token(this.input.slice(start, this.pos));
  }

  // RFC 8941 §4.2.7
  byteSequence(): Uint8Array {
    this.pos++; // :
    const end = this.input.indexOf(':', this.pos);
    if (end < 0) this.fail('unterminated byte sequence');
    const b64 = this.input.slice(this.pos, end);
    // Node's base64 decoder is lenient (whitespace, base64url, junk): validate first, and insist on the
    // canonical padded form (RFC 8941 §4.2.7 only says SHOULD NOT fail on missing padding; strict here
    // so one value has exactly one spelling).
    if (b64.length % 4 !== 0 || !BASE64_RE.test(b64)) this.fail('invalid base64 in byte sequence');
    const bytes = Buffer.from(b64, 'base64');
    if (bytes.toString('base64') !== b64) this.fail('non-canonical base64 in byte sequence');
    this.pos = end + 1;
    return bytes;
  }

  // RFC 8941 §4.2.8
  boolean(): boolean {
    this.pos++; // ?
    const c = this.peek();
    if (c === 0x31) {
      this.pos++;
      return true;
    }
    if (c === 0x30) {
      this.pos++;
      return false;
    }
    return this.fail('invalid boolean');
  }

  /** RFC 8941 §4.2 steps 2-6: surrounding SP is discarded, anything else left over fails. */
  finish(): void {
    this.skipSP();
    if (!this.atEnd()) this.fail('unexpected trailing characters');
  }
}

/** RFC 8941 §4.2 with field type Dictionary. Throws StructuredFieldError on any deviation. */
export function parseDictionary(input: string, options?: ParseOptions): Dictionary {
  const p = new Parser(input, options);
  p.skipSP();
  const dict = p.dictionary();
  p.finish();
  return dict;
}

/** RFC 8941 §4.2 with field type Item. */
export function parseItem(input: string, options?: ParseOptions): Item {
  const p = new Parser(input, options);
  p.skipSP();
  const item = p.item();
  p.finish();
  return item;
}

// --- Serialization (RFC 8941 §4.1) ---

export function serializeKey(key: string): string {
  if (!KEY_RE.test(key)) throw new StructuredFieldError('invalid key');
  return key;
}

/** RFC 8941 §4.1.5: only printable ASCII, with `"` and `\` escaped. */
export function serializeString(value: string): string {
  let out = '"';
  let chunk = 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) throw new StructuredFieldError('string contains a non-printable character');
    if (c === 0x22 || c === 0x5c) {
      out += `${value.slice(chunk, i)}\\`;
      chunk = i;
    }
  }
  return `${out}${value.slice(chunk)}"`;
}

export function serializeBareItem(value: BareItem): string {
  switch (typeof value) {
    case 'string':
      return serializeString(value);
    case 'number': // RFC 8941 §4.1.4
      if (!Number.isInteger(value) || Math.abs(value) > MAX_INTEGER) {
        throw new StructuredFieldError('integer out of range');
      }
      return String(value);
    case 'boolean': // RFC 8941 §4.1.9
      return value ? '?1' : '?0';
  }
  if (value instanceof Uint8Array) {
    // RFC 8941 §4.1.8
    return `:${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')}:`;
  }
  if (value instanceof Token) return value.value; // validated on construction (§4.1.7)
  if (value instanceof Decimal) return serializeDecimal(value.value);
  throw new StructuredFieldError('unsupported bare item');
}

/** RFC 8941 §4.1.5, rounding to 3 fractional digits (half away from zero; RFC asks half-even). */
function serializeDecimal(value: number): string {
  const fixed = value.toFixed(3);
  const intPart = fixed.slice(fixed[0] === '-' ? 1 : 0, fixed.indexOf('.'));
  if (intPart.length > 12) throw new StructuredFieldError('decimal out of range');
  return fixed.replace(/(\.\d*?)0+$/, '$1').replace(/\.$/, '.0');
}

/** RFC 8941 §4.1.1.2: a `true` value is written as the bare key. */
export function serializeParams(params: Parameters): string {
  let out = '';
  for (const [key, value] of params) {
    out += `;${serializeKey(key)}`;
    if (value !== true) out += `=${serializeBareItem(value)}`;
  }
  return out;
}

export function serializeItem(item: Item): string {
  return serializeBareItem(item.value) + serializeParams(item.params);
}

export function serializeInnerList(list: InnerList): string {
  let out = '(';
  for (let i = 0; i < list.items.length; i++) {
    if (i > 0) out += ' ';
    out += serializeItem(list.items[i]!);
  }
  return `${out})${serializeParams(list.params)}`;
}

export function serializeMember(member: Member): string {
  return isInnerList(member) ? serializeInnerList(member) : serializeItem(member);
}

/** RFC 8941 §4.1.2: a member whose value is `true` is written as its key and parameters alone. */
export function serializeDictionary(dict: Dictionary): string {
  let out = '';
  for (const [key, member] of dict) {
    if (out !== '') out += ', ';
    out += serializeKey(key);
    if (!isInnerList(member) && member.value === true) out += serializeParams(member.params);
    else out += `=${serializeMember(member)}`;
  }
  return out;
}
