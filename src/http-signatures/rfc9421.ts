/**
 * RFC 9421 HTTP Message Signatures with Ed25519 (RFC 9421 §3.3.6), as contract §3 uses them:
 *
 *   request:  sig1=("@method" "@target-uri" "authorization" ["content-digest"])
 *             ;created=..;keyid="..";nonce="..";alg="ed25519"
 *   response: sig1=("@status" "content-digest" "signature";req;key="sig1");created=..;keyid="..";alg="ed25519"
 *
 * Signing throws on programmer errors (bad key, missing header). Verification never throws: every
 * failure is an `{ ok: false, code }` with a stable code and a message that names no input value.
 */
import { sign as edSign, verify as edVerify, KeyObject, randomBytes } from 'node:crypto';
import { verifyContentDigest } from './content-digest.ts';
import type { ReplayCache } from './replay-cache.ts';
import {
  type Dictionary,
  type Item,
  isInnerList,
  isValidKey,
  type Parameters,
  parseDictionary,
  parseItem,
  serializeMember,
  serializeParams,
  serializeString,
} from './structured-fields.ts';

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/** A field as Node gives it: one string (duplicates already joined by ", ") or one string per line. */
export type HeaderValue = string | readonly string[] | undefined;
/** Field names should be lower-case keys (as in Node's `IncomingMessage.headers`). */
export type HeaderMap = Readonly<Record<string, HeaderValue>>;

export interface RequestMessage {
  method: string;
  /** The absolute target URI (RFC 9110 §7.1), e.g. `https://host:9443/partner/v1/x?y=1`. */
  targetUri: string;
  headers: HeaderMap;
}

/** The request a response answers; `method`/`targetUri` only needed if `;req` derived components are covered. */
export interface RelatedRequest {
  method?: string;
  targetUri?: string;
  headers: HeaderMap;
}

export interface ResponseMessage {
  status: number;
  headers: HeaderMap;
  /** Context for components with the `req` parameter (RFC 9421 §2.4). */
  request?: RelatedRequest;
}

export type TargetMessage = RequestMessage | ResponseMessage;

/**
 * A covered component: a bare name (`"@method"`, `"authorization"`; field names are lower-cased), a
 * serialized component identifier (`"signature";req;key="sig1"`), or a parsed RFC 8941 Item.
 */
export type ComponentInput = string | Item;

export type SignatureErrorCode =
  /** No Signature / Signature-Input field, or no member with the expected label in one of them. */
  | 'ERR_SIG_MISSING'
  /** Either field, the label's members or their parameters do not parse or have the wrong types. */
  | 'ERR_SIG_MALFORMED'
  /** `keyid` does not resolve to a key of this peer. */
  | 'ERR_SIG_UNKNOWN_KEY'
  /** A required component is not covered, or a covered one is absent from the message. */
  | 'ERR_SIG_COMPONENT_MISSING'
  /** `alg` is not `ed25519`, or the resolved key is not an Ed25519 key. */
  | 'ERR_SIG_ALG'
  /** `created` is further than maxSkewSeconds from the verifier's clock (either direction). */
  | 'ERR_SIG_CREATED_SKEW'
  /** `expires` has passed. */
  | 'ERR_SIG_EXPIRED'
  /** The nonce was already used with this keyid within the replay window. */
  | 'ERR_SIG_REPLAY'
  /** The replay cache could not record the nonce (full or unreachable): refused, fail closed. */
  | 'ERR_SIG_REPLAY_CACHE'
  /** Content-Digest absent, malformed, or not matching the body bytes. */
  | 'ERR_SIG_DIGEST'
  /** The Ed25519 signature does not verify over the signature base. */
  | 'ERR_SIG_INVALID';

export type VerifyResult =
  | { ok: true; keyid: string; created: number; nonce: string; label: string }
  | { ok: false; code: SignatureErrorCode; message: string };

export type ResponseVerifyResult =
  | { ok: true; keyid: string; created: number; nonce: string | undefined; label: string }
  | { ok: false; code: SignatureErrorCode; message: string };

export interface SignatureHeaders {
  'signature-input': string;
  signature: string;
}

export type KeyResolver = (keyid: string) => KeyObject | undefined | Promise<KeyObject | undefined>;

/** Thrown while building a signature base (RFC 9421 §2.5: "produce an error"). */
export class SignatureBaseError extends Error {
  override readonly name = 'SignatureBaseError';
  readonly code: SignatureErrorCode;
  constructor(code: SignatureErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

export const DEFAULT_LABEL = 'sig1';
/** Contract §3: components of a partner request with a body / without one. */
export const REQUEST_COMPONENTS_WITH_BODY: readonly string[] = [
  '@method',
  '@target-uri',
  'authorization',
  'content-digest',
];
export const REQUEST_COMPONENTS_WITHOUT_BODY: readonly string[] = ['@method', '@target-uri', 'authorization'];
/** Contract §3: components of a signed response, bound to the request's `sig1` (RFC 9421 §2.4). */
export const RESPONSE_COMPONENTS: readonly string[] = [
  '@status',
  'content-digest',
  '"signature";req;key="sig1"',
];

/** Response components when the request carried no usable signature to bind the answer to. */
export const UNBOUND_RESPONSE_COMPONENTS: readonly string[] = ['@status', 'content-digest'];

const ALG = 'ed25519'; // RFC 9421 §6.2.2 registry name
const EMPTY = new Uint8Array(0);
const DERIVED = new Set([
  '@method',
  '@target-uri',
  '@authority',
  '@scheme',
  '@request-target',
  '@path',
  '@query',
  '@status',
]);
/** Field names are lower-case tokens (RFC 9421 §2.1); derived names are "@" + the same alphabet. */
const COMPONENT_NAME_RE = /^@?[!#$%&'*+\-.^_`|~0-9a-z]+$/;
/** RFC 9421 §2.5: the base is ASCII made of VCHAR / SP (and HTAB inside field values). */
const INVALID_VALUE_CHAR_RE = /[^\t\x20-\x7e]/;
/** Contract §3: nonce is >= 16 random bytes in base64url (22+ chars); bounded to keep cache entries small. */
const NONCE_RE = /^[A-Za-z0-9_-]{22,128}$/;
/** Hostile Signature-Input values cannot make the base arbitrarily long. */
const MAX_COMPONENTS = 32;
const ED25519_SIGNATURE_BYTES = 64;

// ---------------------------------------------------------------------------------------------
// Signature base (RFC 9421 §2.5)
// ---------------------------------------------------------------------------------------------

/**
 * Turns `"@method"`, `authorization`, `Content-Digest` or `"signature";req;key="sig1"` into an Item.
 * Bare names are lower-cased (RFC 9421 §2.1); serialized identifiers are taken as written.
 */
export function componentId(input: ComponentInput): Item {
  if (typeof input !== 'string') return input;
  if (input.startsWith('"')) return parseItem(input, { rejectDuplicateKeys: true });
  return { value: input.toLowerCase(), params: new Map() };
}

function isRequest(message: TargetMessage): message is RequestMessage {
  return (message as ResponseMessage).status === undefined;
}

/**
 * RFC 9421 §2.5 signature base, `"@signature-params"` line last, no trailing newline.
 * Throws {@link SignatureBaseError} when a component cannot be resolved.
 */
export function signatureBase(
  message: TargetMessage,
  components: readonly ComponentInput[],
  params: Parameters,
): string {
  return buildBase(message, components.map(componentId), params).base;
}

interface BuiltBase {
  base: string;
  /** The serialized `@signature-params` value, which is also the Signature-Input member value. */
  signatureParams: string;
  /** Serialized identifier of each covered component, in order. */
  ids: string[];
}

function buildBase(message: TargetMessage, components: readonly Item[], params: Parameters): BuiltBase {
  if (components.length > MAX_COMPONENTS) {
    throw new SignatureBaseError('ERR_SIG_MALFORMED', 'too many covered components');
  }
  const ids: string[] = [];
  let base = '';
  for (const component of components) {
    const id = serializeComponentId(component);
    // RFC 9421 §2.5: an identifier MUST NOT be repeated (same name and same parameters).
    if (ids.includes(id)) throw new SignatureBaseError('ERR_SIG_MALFORMED', 'repeated covered component');
    ids.push(id);
    base += `${id}: ${componentValue(message, component)}\n`;
  }
  const signatureParams = `(${ids.join(' ')})${serializeParams(params)}`;
  base += `"@signature-params": ${signatureParams}`;
  return { base, signatureParams, ids };
}

function serializeComponentId(component: Item): string {
  const name = component.value;
  if (typeof name !== 'string' || !COMPONENT_NAME_RE.test(name)) {
    throw new SignatureBaseError('ERR_SIG_MALFORMED', 'invalid component name');
  }
  // RFC 9421 §2.3: "@signature-params" is never a covered component.
  if (name === '@signature-params')
    throw new SignatureBaseError('ERR_SIG_MALFORMED', 'invalid component name');
  return serializeString(name) + serializeParams(component.params);
}

/** RFC 9421 §2.5 step 2.4: the canonical value of one covered component. */
function componentValue(message: TargetMessage, component: Item): string {
  const name = component.value as string;
  let req = false;
  let key: string | undefined;
  for (const [param, value] of component.params) {
    if (param === 'req' && value === true) req = true;
    else if (param === 'key' && typeof value === 'string' && name[0] !== '@') key = value;
    // RFC 9421 §2.5: a parameter that is not understood (sf, bs, tr, name, ...) is an error.
    else throw new SignatureBaseError('ERR_SIG_MALFORMED', 'unsupported component parameter');
  }

  let method: string | undefined;
  let targetUri: string | undefined;
  let headers: HeaderMap;
  let status: number | undefined;
  if (isRequest(message)) {
    // RFC 9421 §2.4: "The req parameter MUST NOT be used in a signature that targets a request message."
    if (req) throw new SignatureBaseError('ERR_SIG_MALFORMED', '"req" parameter on a request signature');
    ({ method, targetUri, headers } = message);
  } else if (req) {
    const request = message.request;
    if (request === undefined) {
      throw new SignatureBaseError('ERR_SIG_COMPONENT_MISSING', 'related request not available');
    }
    ({ method, targetUri, headers } = request);
  } else {
    ({ status, headers } = message);
  }

  if (name[0] === '@') return derivedValue(name, method, targetUri, status);

  const raw = fieldValue(headers, name);
  if (raw === undefined) throw new SignatureBaseError('ERR_SIG_COMPONENT_MISSING', 'covered field is absent');
  if (key === undefined) return raw;
  // RFC 9421 §2.1.2: parse as a Dictionary and serialize the one member again.
  let dict: Dictionary;
  try {
    dict = parseDictionary(raw, { rejectDuplicateKeys: true });
  } catch {
    throw new SignatureBaseError('ERR_SIG_MALFORMED', 'covered dictionary field does not parse');
  }
  const member = dict.get(key);
  if (member === undefined) {
    throw new SignatureBaseError('ERR_SIG_COMPONENT_MISSING', 'covered dictionary member is absent');
  }
  return serializeMember(member);
}

/** RFC 9421 §2.2 derived components. */
function derivedValue(
  name: string,
  method: string | undefined,
  targetUri: string | undefined,
  status: number | undefined,
): string {
  switch (name) {
    case '@method': // §2.2.1: as sent, case-sensitive
      if (method === undefined) break;
      return checkedValue(method);
    case '@status': // §2.2.9: three-digit integer, responses only
      if (status === undefined) break;
      if (!Number.isInteger(status) || status < 100 || status > 999) {
        throw new SignatureBaseError('ERR_SIG_MALFORMED', 'invalid status code');
      }
      return String(status);
    case '@target-uri': // §2.2.2: the full target URI, used as given (no re-normalisation)
      if (targetUri === undefined) break;
      return checkedValue(targetUri);
    default: {
      if (!DERIVED.has(name)) throw new SignatureBaseError('ERR_SIG_MALFORMED', 'unknown derived component');
      if (targetUri === undefined) break;
      const uri = splitUri(checkedValue(targetUri));
      switch (name) {
        case '@authority': // §2.2.3
          return uri.authority;
        case '@scheme': // §2.2.4
          return uri.scheme;
        case '@request-target': // §2.2.5, origin form
          return uri.query === undefined ? uri.path : `${uri.path}?${uri.query}`;
        case '@path': // §2.2.6: empty path is "/"
          return uri.path;
        case '@query': // §2.2.7: "?" alone when there is no query
          return `?${uri.query ?? ''}`;
      }
    }
  }
  throw new SignatureBaseError('ERR_SIG_COMPONENT_MISSING', 'derived component not available');
}

interface UriParts {
  scheme: string;
  authority: string;
  path: string;
  query: string | undefined;
}

/**
 * Splits an absolute URI without `new URL()`, which would re-encode and resolve dot segments:
 * RFC 9421 §2.2.6 wants the path as sent. The authority is normalised per RFC 9110 §4.2.3 (lower-case
 * host, default port removed), as §2.2.3 requires.
 */
function splitUri(uri: string): UriParts {
  const schemeEnd = uri.indexOf('://');
  const scheme = schemeEnd > 0 ? uri.slice(0, schemeEnd).toLowerCase() : '';
  if (!/^[a-z][a-z0-9+.-]*$/.test(scheme)) throw new SignatureBaseError('ERR_SIG_MALFORMED', 'target URI');
  const start = schemeEnd + 3;
  let end = start;
  for (; end < uri.length; end++) {
    const c = uri.charCodeAt(end);
    if (c === 0x2f || c === 0x3f || c === 0x23) break; // / ? #
  }
  let authority = uri.slice(start, end).toLowerCase();
  // Userinfo is deprecated for http(s) (RFC 9110 §4.2.4) and has no place in an @authority value.
  if (authority === '' || authority.includes('@')) {
    throw new SignatureBaseError('ERR_SIG_MALFORMED', 'target URI authority');
  }
  const defaultPort = scheme === 'https' ? ':443' : scheme === 'http' ? ':80' : undefined;
  if (defaultPort !== undefined && authority.endsWith(defaultPort)) {
    authority = authority.slice(0, -defaultPort.length);
  }
  let pathEnd = end;
  for (; pathEnd < uri.length; pathEnd++) {
    const c = uri.charCodeAt(pathEnd);
    if (c === 0x3f || c === 0x23) break;
  }
  const path = pathEnd > end ? uri.slice(end, pathEnd) : '/';
  let query: string | undefined;
  if (uri.charCodeAt(pathEnd) === 0x3f) {
    const hash = uri.indexOf('#', pathEnd);
    query = uri.slice(pathEnd + 1, hash < 0 ? uri.length : hash);
  }
  return { scheme, authority, path, query };
}

/** A derived value must fit the base's grammar: no CR/LF that could forge extra lines. */
function checkedValue(value: string): string {
  if (INVALID_VALUE_CHAR_RE.test(value)) {
    throw new SignatureBaseError('ERR_SIG_MALFORMED', 'component value has invalid characters');
  }
  return value;
}

/**
 * RFC 9421 §2.1: field values of all lines, each stripped of leading/trailing SP/HTAB (not
 * String#trim, which also strips Unicode spaces), obs-fold replaced by one SP, joined with ", ".
 */
function fieldValue(headers: HeaderMap, name: string): string | undefined {
  let value = headers[name];
  // Anything but a string or an array is absent: a field named "constructor" or "__proto__" must not
  // pick up what a plain object inherits.
  if (typeof value !== 'string' && !Array.isArray(value)) value = caseInsensitiveLookup(headers, name);
  if (value === undefined) return undefined;
  if (typeof value === 'string') return canonicalFieldValue(value);
  if (value.length === 0) return undefined;
  let out = canonicalFieldValue(value[0]!);
  for (let i = 1; i < value.length; i++) out += `, ${canonicalFieldValue(value[i]!)}`;
  return out;
}

/** Only on a miss, so the usual lower-cased Node header object costs nothing extra. */
function caseInsensitiveLookup(headers: HeaderMap, name: string): HeaderValue {
  let found: string[] | undefined;
  for (const key of Object.keys(headers)) {
    if (key.length !== name.length || key.toLowerCase() !== name) continue;
    const v = headers[key];
    if (typeof v !== 'string' && !Array.isArray(v)) continue;
    found ??= [];
    if (typeof v === 'string') found.push(v);
    else found.push(...v);
  }
  return found;
}

function canonicalFieldValue(raw: string): string {
  if (typeof raw !== 'string')
    throw new SignatureBaseError('ERR_SIG_MALFORMED', 'field value is not a string');
  let value = raw;
  if (value.includes('\r') || value.includes('\n')) value = value.replace(/\r\n[ \t]+/g, ' ');
  let start = 0;
  let end = value.length;
  while (start < end && isOws(value.charCodeAt(start))) start++;
  while (end > start && isOws(value.charCodeAt(end - 1))) end--;
  if (start > 0 || end < value.length) value = value.slice(start, end);
  // Anything left outside HTAB / SP / VCHAR (a bare CR or LF, NUL, obs-text) is refused rather than
  // passed into the base, where a newline would forge another component line.
  return checkedValue(value);
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

// ---------------------------------------------------------------------------------------------
// Signing (RFC 9421 §3.1)
// ---------------------------------------------------------------------------------------------

export interface CreateSignatureOptions {
  message: TargetMessage;
  components: readonly ComponentInput[];
  /** Signature parameters in the order they are to be serialized (e.g. created, keyid, nonce, alg). */
  params: Parameters;
  privateKey: KeyObject;
  label?: string;
}

/** Low-level RFC 9421 §3.1 signer: any parameters, Ed25519 key. */
export function createSignature(opts: CreateSignatureOptions): SignatureHeaders & { base: string } {
  const { privateKey } = opts;
  const label = opts.label ?? DEFAULT_LABEL;
  if (!isValidKey(label)) throw new TypeError('label must be an RFC 8941 key');
  if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ed25519') {
    throw new TypeError('privateKey must be an Ed25519 private KeyObject');
  }
  const alg = opts.params.get('alg');
  if (alg !== undefined && alg !== ALG) throw new TypeError('only alg="ed25519" is supported');
  const built = buildBase(opts.message, opts.components.map(componentId), opts.params);
  // RFC 9421 §3.3.6: Ed25519 (RFC 8032) over the base's ASCII bytes, no pre-hash.
  const signature = edSign(null, Buffer.from(built.base, 'latin1'), privateKey);
  return {
    'signature-input': `${label}=${built.signatureParams}`,
    signature: `${label}=:${signature.toString('base64')}:`,
    base: built.base,
  };
}

export interface SignRequestOptions {
  method: string;
  targetUri: string;
  headers: HeaderMap;
  components: readonly ComponentInput[];
  privateKey: KeyObject;
  keyid: string;
  /** Unix seconds; default now. */
  created?: number;
  /** Default: 16 random bytes, base64url (contract §3). */
  nonce?: string;
  /** Default `sig1`. */
  label?: string;
}

/** Contract §3 request signature: parameters exactly `created`, `keyid`, `nonce`, `alg="ed25519"`. */
export function signRequest(opts: SignRequestOptions): SignatureHeaders {
  const params: Parameters = new Map<string, string | number>([
    ['created', opts.created ?? nowSeconds()],
    ['keyid', opts.keyid],
    ['nonce', opts.nonce ?? randomBytes(16).toString('base64url')],
    ['alg', ALG],
  ]);
  const signed = createSignature({
    message: { method: opts.method, targetUri: opts.targetUri, headers: opts.headers },
    components: opts.components,
    params,
    privateKey: opts.privateKey,
    ...(opts.label !== undefined ? { label: opts.label } : {}),
  });
  return { 'signature-input': signed['signature-input'], signature: signed.signature };
}

export interface SignResponseOptions {
  status: number;
  /** Response fields, including the `content-digest` to be covered. */
  headers: HeaderMap;
  /** The request being answered; its headers must carry its Signature for `"signature";req;key="sig1"`. */
  request: RelatedRequest;
  privateKey: KeyObject;
  keyid: string;
  created?: number;
  /** Optional on responses (contract §3 asks none). */
  nonce?: string;
  label?: string;
  /** Default {@link RESPONSE_COMPONENTS}. */
  components?: readonly ComponentInput[];
}

/**
 * Contract §3 response signature: `"@status" "content-digest" "signature";req;key="sig1"`, so the
 * partner can prove which answer went to which of its requests (RFC 9421 §2.4). Throws a
 * {@link SignatureBaseError} (code ERR_SIG_COMPONENT_MISSING) when the request carries no `sig1`
 * signature: pass `components` without the `;req` entry to sign such a response anyway.
 */
export function signResponse(opts: SignResponseOptions): SignatureHeaders {
  const params: Parameters = new Map<string, string | number>([
    ['created', opts.created ?? nowSeconds()],
    ['keyid', opts.keyid],
  ]);
  if (opts.nonce !== undefined) params.set('nonce', opts.nonce);
  params.set('alg', ALG);
  const signed = createSignature({
    message: { status: opts.status, headers: opts.headers, request: opts.request },
    components: opts.components ?? RESPONSE_COMPONENTS,
    params,
    privateKey: opts.privateKey,
    ...(opts.label !== undefined ? { label: opts.label } : {}),
  });
  return { 'signature-input': signed['signature-input'], signature: signed.signature };
}

// ---------------------------------------------------------------------------------------------
// Verification (RFC 9421 §3.2)
// ---------------------------------------------------------------------------------------------

export interface ParsedSignature {
  label: string;
  components: Item[];
  params: Parameters;
  signature: Uint8Array;
}

type Failure = { ok: false; code: SignatureErrorCode; message: string };

function fail(code: SignatureErrorCode, message: string): Failure {
  return { ok: false, code, message };
}

/**
 * RFC 9421 §3.2 steps 1-3: the `label` members of Signature-Input and Signature, strictly parsed.
 */
export function parseSignatureHeaders(
  headers: HeaderMap,
  label: string = DEFAULT_LABEL,
): ParsedSignature | Failure {
  let inputField: string | undefined;
  let signatureField: string | undefined;
  try {
    inputField = fieldValue(headers, 'signature-input');
    signatureField = fieldValue(headers, 'signature');
  } catch {
    return fail('ERR_SIG_MALFORMED', 'signature fields contain invalid characters');
  }
  if (inputField === undefined || signatureField === undefined) {
    return fail('ERR_SIG_MISSING', 'Signature and Signature-Input are required');
  }
  let inputs: Dictionary;
  let signatures: Dictionary;
  try {
    inputs = parseDictionary(inputField, { rejectDuplicateKeys: true });
    signatures = parseDictionary(signatureField, { rejectDuplicateKeys: true });
  } catch {
    return fail('ERR_SIG_MALFORMED', 'Signature or Signature-Input is not a valid dictionary');
  }
  const input = inputs.get(label);
  const sig = signatures.get(label);
  if (input === undefined || sig === undefined) {
    return fail('ERR_SIG_MISSING', 'no signature with the expected label');
  }
  if (!isInnerList(input)) return fail('ERR_SIG_MALFORMED', 'Signature-Input member is not an inner list');
  if (isInnerList(sig) || !(sig.value instanceof Uint8Array)) {
    return fail('ERR_SIG_MALFORMED', 'Signature member is not a byte sequence');
  }
  // RFC 9421 §3.3.6: an Ed25519 signature is exactly 64 bytes.
  if (sig.value.byteLength !== ED25519_SIGNATURE_BYTES) {
    return fail('ERR_SIG_MALFORMED', 'signature is not 64 bytes');
  }
  if (input.items.length > MAX_COMPONENTS) return fail('ERR_SIG_MALFORMED', 'too many covered components');
  for (const item of input.items) {
    if (typeof item.value !== 'string')
      return fail('ERR_SIG_MALFORMED', 'component identifier is not a string');
  }
  return { label, components: input.items, params: input.params, signature: sig.value };
}

interface CheckedParams {
  keyid: string;
  created: number;
  nonce: string | undefined;
}

/** RFC 9421 §2.3 parameter types, §3.2 step 7 (alg, created, expires) against local policy. */
function checkParams(params: Parameters, now: number, maxSkew: number): CheckedParams | Failure {
  const created = params.get('created');
  const keyid = params.get('keyid');
  const nonce = params.get('nonce');
  const alg = params.get('alg');
  const expires = params.get('expires');
  if (typeof created !== 'number' || created < 0) return fail('ERR_SIG_MALFORMED', 'created is required');
  if (typeof keyid !== 'string' || keyid === '') return fail('ERR_SIG_MALFORMED', 'keyid is required');
  if (nonce !== undefined && typeof nonce !== 'string')
    return fail('ERR_SIG_MALFORMED', 'nonce must be a string');
  if (expires !== undefined && typeof expires !== 'number') {
    return fail('ERR_SIG_MALFORMED', 'expires must be an integer');
  }
  const tag = params.get('tag');
  if (tag !== undefined && typeof tag !== 'string') return fail('ERR_SIG_MALFORMED', 'tag must be a string');
  // §3.2 step 7 / §7.3.6: the alg parameter, when present, must match the key's algorithm.
  if (alg !== undefined && alg !== ALG) return fail('ERR_SIG_ALG', 'only alg="ed25519" is accepted');
  // §7.2.4 (created / expires) with the contract's window, both directions.
  if (Math.abs(now - created) > maxSkew) return fail('ERR_SIG_CREATED_SKEW', 'created is outside the window');
  if (expires !== undefined && now > expires) return fail('ERR_SIG_EXPIRED', 'signature has expired');
  return { keyid, created, nonce };
}

/** Serialized identifiers of the components a policy requires, in the form built by buildBase. */
function requiredIds(required: readonly ComponentInput[]): string[] | Failure {
  try {
    return required.map((c) => serializeComponentId(componentId(c)));
  } catch {
    return fail('ERR_SIG_MALFORMED', 'invalid required component');
  }
}

async function resolveEd25519Key(resolveKey: KeyResolver, keyid: string): Promise<KeyObject | Failure> {
  let key: KeyObject | undefined;
  try {
    key = await resolveKey(keyid);
  } catch {
    return fail('ERR_SIG_UNKNOWN_KEY', 'signing key could not be resolved');
  }
  if (!(key instanceof KeyObject)) {
    return fail('ERR_SIG_UNKNOWN_KEY', 'unknown keyid');
  }
  if (key.type === 'secret' || key.asymmetricKeyType !== 'ed25519') {
    return fail('ERR_SIG_ALG', 'key is not an Ed25519 key');
  }
  return key;
}

function isFailure(value: unknown): value is Failure {
  return (value as Failure).ok === false;
}

interface CoreOptions {
  message: TargetMessage;
  body: Uint8Array | undefined;
  requiredComponents: readonly ComponentInput[];
  resolveKey: KeyResolver;
  label: string;
  now: number;
  maxSkewSeconds: number;
  requireNonce: boolean;
}

type CoreResult = (CheckedParams & { ok: true; label: string }) | Failure;

/** RFC 9421 §3.2, steps shared by requests and responses; the replay check is the caller's. */
async function verifyCore(o: CoreOptions): Promise<CoreResult> {
  const parsed = parseSignatureHeaders(o.message.headers, o.label);
  if (isFailure(parsed)) return parsed;

  const checked = checkParams(parsed.params, o.now, o.maxSkewSeconds);
  if (isFailure(checked)) return checked;
  if (o.requireNonce && (checked.nonce === undefined || !NONCE_RE.test(checked.nonce))) {
    return fail('ERR_SIG_MALFORMED', 'nonce must be at least 16 bytes of base64url');
  }

  let built: BuiltBase;
  try {
    built = buildBase(o.message, parsed.components, parsed.params);
  } catch (err) {
    if (err instanceof SignatureBaseError) return fail(err.code, err.message);
    return fail('ERR_SIG_MALFORMED', 'signature base could not be built');
  }

  // §3.2 step 4 / §1.4: the application's required components must all be covered.
  const required = requiredIds(o.requiredComponents);
  if (isFailure(required)) return required;
  for (const id of required) {
    if (!built.ids.includes(id))
      return fail('ERR_SIG_COMPONENT_MISSING', 'a required component is not covered');
  }
  // RFC 9530 §1.1 / §7.2.8: a digest only protects the body if the signature covers it.
  const body = o.body ?? EMPTY;
  const coversDigest = built.ids.includes('"content-digest"');
  if (body.byteLength > 0 && !coversDigest) {
    return fail('ERR_SIG_COMPONENT_MISSING', 'a message with a body must cover content-digest');
  }

  const key = await resolveEd25519Key(o.resolveKey, checked.keyid);
  if (isFailure(key)) return key;

  // Cheap hash before the Ed25519 verification; the exact received bytes, no body means zero bytes.
  if (coversDigest && !verifyContentDigest(fieldValueSafe(o.message.headers, 'content-digest'), body)) {
    return fail('ERR_SIG_DIGEST', 'Content-Digest does not match the body');
  }

  let valid = false;
  try {
    valid = edVerify(null, Buffer.from(built.base, 'latin1'), key, parsed.signature);
  } catch {
    valid = false;
  }
  if (!valid) return fail('ERR_SIG_INVALID', 'signature does not verify');
  return { ok: true, label: o.label, ...checked };
}

function fieldValueSafe(headers: HeaderMap, name: string): string | undefined {
  try {
    return fieldValue(headers, name);
  } catch {
    return undefined;
  }
}

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

export interface VerifyRequestOptions {
  method: string;
  targetUri: string;
  headers: HeaderMap;
  /** The exact body bytes received; omit only for a message without content (then zero bytes). */
  body?: Uint8Array;
  /** Contract §3: {@link REQUEST_COMPONENTS_WITH_BODY} or {@link REQUEST_COMPONENTS_WITHOUT_BODY}. */
  requiredComponents: readonly ComponentInput[];
  resolveKey: KeyResolver;
  replayCache: ReplayCache;
  /** Unix seconds; default now. */
  now?: number;
  /** Default 60 (contract §3). */
  maxSkewSeconds?: number;
  /** Default 120 (contract §3); never less than 2 x maxSkewSeconds, the life of a valid `created`. */
  nonceTtlSeconds?: number;
  /** Default `sig1`. */
  label?: string;
}

/**
 * Verifies a partner request per contract §3. Never throws. The nonce is recorded only once the
 * signature is valid, so unauthenticated traffic cannot fill the replay cache.
 */
export async function verifyRequest(opts: VerifyRequestOptions): Promise<VerifyResult> {
  try {
    const maxSkew = opts.maxSkewSeconds ?? 60;
    const result = await verifyCore({
      message: { method: opts.method, targetUri: opts.targetUri, headers: opts.headers },
      body: opts.body,
      requiredComponents: opts.requiredComponents,
      resolveKey: opts.resolveKey,
      label: opts.label ?? DEFAULT_LABEL,
      now: opts.now ?? nowSeconds(),
      maxSkewSeconds: maxSkew,
      requireNonce: true,
    });
    if (!result.ok) return result;
    const nonce = result.nonce!; // requireNonce
    // A signature is acceptable while |now - created| <= maxSkew, i.e. for up to 2 x maxSkew after
    // its first use: the nonce must be remembered at least that long (RFC 9421 §7.2.2).
    const ttl = Math.max(opts.nonceTtlSeconds ?? 120, 2 * maxSkew);
    let fresh: boolean;
    try {
      fresh = await opts.replayCache.remember(result.keyid, nonce, ttl);
    } catch {
      return fail('ERR_SIG_REPLAY_CACHE', 'replay protection unavailable');
    }
    if (!fresh) return fail('ERR_SIG_REPLAY', 'nonce already used');
    return { ok: true, keyid: result.keyid, created: result.created, nonce, label: result.label };
  } catch {
    return fail('ERR_SIG_MALFORMED', 'signature could not be verified');
  }
}

export interface VerifyResponseOptions {
  status: number;
  headers: HeaderMap;
  /** The exact body bytes received (none: zero bytes). */
  body?: Uint8Array;
  /** The request this answers, as sent (its Signature is needed for `"signature";req;key="sig1"`). */
  request: RelatedRequest;
  resolveKey: KeyResolver;
  /** Default {@link RESPONSE_COMPONENTS}. */
  requiredComponents?: readonly ComponentInput[];
  now?: number;
  maxSkewSeconds?: number;
  label?: string;
}

/** Verifies a signed response per contract §3 (no nonce required). Never throws. */
export async function verifyResponse(opts: VerifyResponseOptions): Promise<ResponseVerifyResult> {
  try {
    const result = await verifyCore({
      message: { status: opts.status, headers: opts.headers, request: opts.request },
      body: opts.body,
      requiredComponents: opts.requiredComponents ?? RESPONSE_COMPONENTS,
      resolveKey: opts.resolveKey,
      label: opts.label ?? DEFAULT_LABEL,
      now: opts.now ?? nowSeconds(),
      maxSkewSeconds: opts.maxSkewSeconds ?? 60,
      requireNonce: false,
    });
    if (!result.ok) return result;
    return {
      ok: true,
      keyid: result.keyid,
      created: result.created,
      nonce: result.nonce,
      label: result.label,
    };
  } catch {
    return fail('ERR_SIG_MALFORMED', 'signature could not be verified');
  }
}
