import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createSecretKey,
  hkdfSync,
  type KeyObject,
  randomBytes,
  randomUUID,
} from 'node:crypto';
import type { Db, Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { type Kek, KekError } from './kek.ts';

/** Where a value lives; bound into its ciphertext as GCM associated data. */
export interface FieldAad {
  table: string;
  column: string;
  rowId: string;
}

export type FieldCipherErrorCode =
  /** Not a field ciphertext, or it fails authentication: altered, or copied from another place. */
  | 'ERR_DECRYPT'
  /** The ciphertext names a data key this instance does not hold (see refresh()). */
  | 'ERR_UNKNOWN_DATA_KEY'
  /** No data key for the purpose: it was not listed in open(). */
  | 'ERR_UNKNOWN_PURPOSE'
  /** A malformed purpose or AAD (a programming error). */
  | 'ERR_FIELD_ARGUMENT'
  /** Another KEK wraps the stored data keys now (a rewrap elsewhere): reopen with the new KEK. */
  | 'ERR_KEK_CHANGED';

export class FieldCipherError extends Error {
  readonly code: FieldCipherErrorCode;
  constructor(code: FieldCipherErrorCode, message: string) {
    super(message);
    this.name = 'FieldCipherError';
    this.code = code;
  }
}

interface DataKey {
  id: string;
  purpose: string;
  version: number;
  key: KeyObject;
}

type DataKeyRow = {
  id: string;
  purpose: string;
  version: number;
  kek_id: string;
  wrapped: Uint8Array;
};

const FORMAT = 'v1';
const IV_BYTES = 12; // NIST SP 800-38D §8.2.2: 96-bit random IVs
const TAG_BYTES = 16;
const DATA_KEY_BYTES = 32;
const PURPOSE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
// Table and column are SQL identifiers, so they cannot hold the `|` separator; the row id comes last
// and may hold anything. That keeps the AAD `table|column|rowId` unambiguous.
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;

// Random IVs are drawn in batches: one randomBytes call costs ≈2 µs, a slice of a pool ≈50 ns. Every
// slice is handed out once, so the IVs stay independent uniform 96-bit values.
const IV_POOL_BYTES = IV_BYTES * 512;
let ivPool = Buffer.alloc(0);
let ivOffset = 0;
function nextIv(): Buffer {
  if (ivOffset + IV_BYTES > ivPool.length) {
    ivPool = randomBytes(IV_POOL_BYTES);
    ivOffset = 0;
  }
  const iv = ivPool.subarray(ivOffset, ivOffset + IV_BYTES);
  ivOffset += IV_BYTES;
  return iv;
}

function aadBytes(aad: FieldAad): Buffer {
  if (
    typeof aad?.rowId !== 'string' ||
    aad.rowId === '' ||
    !IDENTIFIER.test(aad.table) ||
    !IDENTIFIER.test(aad.column)
  ) {
    throw new FieldCipherError(
      'ERR_FIELD_ARGUMENT',
      'the AAD needs a table and a column that are SQL identifiers and a non-empty row id',
    );
  }
  return Buffer.from(`${aad.table}|${aad.column}|${aad.rowId}`, 'utf8');
}

function checkPurpose(purpose: string): void {
  if (typeof purpose !== 'string' || !PURPOSE.test(purpose)) {
    throw new FieldCipherError('ERR_FIELD_ARGUMENT', 'a purpose is 1–63 characters of [a-z0-9_-]');
  }
}

/**
 * Envelope encryption of single fields (DESIGN §4 "data encrypted in the DB", §5 keys). A value is
 * AES-256-GCM under the current data key of its purpose, with the associated data `table|column|rowId`
 * binding it to its place: a ciphertext copied to another row, column or table does not decrypt. The
 * stored form `v1.<key id>.<base64url(iv ‖ ciphertext ‖ tag)>` names its key, so keys rotate without
 * re-encrypting anything. Data keys live in `data_keys`, wrapped by the KEK (RFC 3394); they are
 * unwrapped once, at open, and held as KeyObjects, so encrypt and decrypt are synchronous and cheap.
 */
export class FieldCipher {
  readonly #byId = new Map<string, DataKey>();
  readonly #current = new Map<string, DataKey>();
  readonly #blind = new Map<string, KeyObject>();
  readonly #db: Db;
  #kek: Kek;

  private constructor(db: Db, kek: Kek) {
    this.#db = db;
    this.#kek = kek;
  }

  /**
   * Loads and unwraps every data key, then creates version 1 for each listed purpose that has none.
   * Safe when several processes start at once (cluster workers): each inserts with `on conflict do
   * nothing` and all then read the one row that won. Fails with KekError `ERR_KEK_UNWRAP` when the
   * stored keys were wrapped by another KEK.
   */
  static async open(db: Db, kek: Kek, purposes: readonly string[]): Promise<FieldCipher> {
    for (const p of purposes) checkPurpose(p);
    const fc = new FieldCipher(db, kek);
    await fc.#load(db);
    for (const purpose of purposes) {
      if (fc.#current.has(purpose)) continue;
      const key = randomBytes(DATA_KEY_BYTES);
      try {
        await db.query(sql`insert into data_keys (id, purpose, version, kek_id, wrapped)
          values (${randomUUID()}, ${purpose}, 1, ${kek.id}, ${kek.wrap(key)})
          on conflict (purpose, version) do nothing`);
      } finally {
        key.fill(0);
      }
    }
    await fc.#load(db);
    return fc;
  }

  /** The id of the KEK that wraps the data keys, as this instance knows it. */
  get kekId(): string {
    return this.#kek.id;
  }

  /** The purposes this instance holds keys for. */
  get purposes(): string[] {
    return [...this.#current.keys()].sort();
  }

  /** The id of the data key new values of `purpose` are encrypted under. */
  currentKeyId(purpose: string): string {
    return this.#currentKey(purpose).id;
  }

  async #load(q: Queryable): Promise<void> {
    const rows = await q.query<DataKeyRow>(
      sql`select id, purpose, version, kek_id, wrapped from data_keys order by purpose, version`,
    );
    for (const r of rows) {
      if (this.#byId.has(r.id)) continue;
      const raw = this.#unwrapRow(r);
      try {
        const dk: DataKey = { id: r.id, purpose: r.purpose, version: r.version, key: createSecretKey(raw) };
        this.#byId.set(r.id, dk);
        const cur = this.#current.get(r.purpose);
        if (!cur || cur.version < r.version) this.#current.set(r.purpose, dk);
      } finally {
        raw.fill(0);
      }
    }
  }

  #unwrapRow(r: DataKeyRow, kek = this.#kek): Buffer {
    let raw: Buffer;
    try {
      raw = kek.unwrap(Buffer.from(r.wrapped));
    } catch (err) {
      if (!(err instanceof KekError)) throw err;
      // Say which KEK is expected: the usual cause is a wrong or rotated SMART_HOME_KEK / key file.
      const why =
        r.kek_id === kek.id
          ? 'its wrapped bytes were altered'
          : `it is wrapped by KEK ${r.kek_id}, and the configured KEK is ${kek.id}`;
      throw new KekError('ERR_KEK_UNWRAP', `data key ${r.purpose} v${r.version} does not unwrap: ${why}`);
    }
    if (raw.length !== DATA_KEY_BYTES || !KEY_ID.test(r.id)) {
      raw.fill(0);
      throw new KekError('ERR_KEK_UNWRAP', `data key ${r.purpose} v${r.version} is malformed`);
    }
    return raw;
  }

  /** Picks up data keys added by another instance (a rotation there). */
  refresh(): Promise<void> {
    return this.#load(this.#db);
  }

  #currentKey(purpose: string): DataKey {
    const dk = this.#current.get(purpose);
    if (!dk) throw new FieldCipherError('ERR_UNKNOWN_PURPOSE', `no data key for purpose ${purpose}`);
    return dk;
  }

  /** Encrypts `plaintext` for its place under the current data key of `purpose`. */
  encrypt(purpose: string, aad: FieldAad, plaintext: string): string {
    const dk = this.#currentKey(purpose);
    if (typeof plaintext !== 'string')
      throw new FieldCipherError('ERR_FIELD_ARGUMENT', 'plaintext is a string');
    const iv = nextIv();
    const c = createCipheriv('aes-256-gcm', dk.key, iv, { authTagLength: TAG_BYTES });
    c.setAAD(aadBytes(aad));
    const body = c.update(plaintext, 'utf8');
    const tail = c.final(); // empty for GCM, kept for form
    return `${FORMAT}.${dk.id}.${Buffer.concat([iv, body, tail, c.getAuthTag()]).toString('base64url')}`;
  }

  /** Decrypts a stored value for its place, under whichever data key (any version) it names. */
  decrypt(aad: FieldAad, stored: string): string {
    const parts = typeof stored === 'string' ? stored.split('.') : [];
    const [format, keyId, data] = parts;
    if (parts.length !== 3 || format !== FORMAT || !keyId || !data || !BASE64URL.test(data)) {
      throw new FieldCipherError('ERR_DECRYPT', 'not a field ciphertext');
    }
    const dk = this.#byId.get(keyId);
    if (!dk) throw new FieldCipherError('ERR_UNKNOWN_DATA_KEY', 'the data key of this value is unknown');
    const buf = Buffer.from(data, 'base64url');
    if (buf.length < IV_BYTES + TAG_BYTES) throw new FieldCipherError('ERR_DECRYPT', 'ciphertext too short');
    const additional = aadBytes(aad);
    try {
      const d = createDecipheriv('aes-256-gcm', dk.key, buf.subarray(0, IV_BYTES), {
        authTagLength: TAG_BYTES,
      });
      d.setAAD(additional);
      d.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
      const body = d.update(buf.subarray(IV_BYTES, buf.length - TAG_BYTES));
      // final() verifies the tag; nothing is returned before it has.
      return Buffer.concat([body, d.final()]).toString('utf8');
    } catch {
      throw new FieldCipherError(
        'ERR_DECRYPT',
        'the value does not decrypt (altered, or from another place)',
      );
    }
  }

  /**
   * A keyed blind index (HMAC-SHA256, base64url) for equality look-ups of encrypted values: phone
   * numbers, plate de-duplication. Its key is HKDF-SHA256 (RFC 5869) of the purpose's first data key
   * with info `blind-index/v1|<purpose>`, so it stays stable across rotations and differs per purpose.
   * The caller normalises the value first (the index is of the exact string).
   */
  blindIndex(purpose: string, value: string): string {
    let key = this.#blind.get(purpose);
    if (!key) {
      let first: DataKey | undefined;
      for (const k of this.#byId.values()) {
        if (k.purpose === purpose && (!first || k.version < first.version)) first = k;
      }
      if (!first) throw new FieldCipherError('ERR_UNKNOWN_PURPOSE', `no data key for purpose ${purpose}`);
      // Empty salt: the input key is already uniformly random (RFC 5869 §3.1); info separates uses.
      key = createSecretKey(
        Buffer.from(hkdfSync('sha256', first.key, Buffer.alloc(0), `blind-index/v1|${purpose}`, 32)),
      );
      this.#blind.set(purpose, key);
    }
    if (typeof value !== 'string') throw new FieldCipherError('ERR_FIELD_ARGUMENT', 'value is a string');
    return createHmac('sha256', key).update(value, 'utf8').digest('base64url');
  }

  /**
   * Adds a new data-key version for `purpose`, current from now on for encryption in this instance
   * (others pick it up on refresh()); values under older versions keep decrypting. Returns its id.
   */
  async rotate(purpose: string): Promise<string> {
    checkPurpose(purpose);
    const id = randomUUID();
    const key = randomBytes(DATA_KEY_BYTES);
    try {
      await this.#db.transaction(async (tx) => {
        // Serialises against other rotations and rewraps (which take the same lock), while plain
        // reads go on: the next version number is then unambiguous and the KEK check below holds.
        await tx.query(sql`lock table data_keys in share row exclusive mode`);
        await this.#assertKekCurrent(tx);
        const row = await tx.one<{ v: number }>(
          sql`select coalesce(max(version), 0)::int + 1 as v from data_keys where purpose = ${purpose}`,
        );
        await tx.query(sql`insert into data_keys (id, purpose, version, kek_id, wrapped)
          values (${id}, ${purpose}, ${row!.v}, ${this.#kek.id}, ${this.#kek.wrap(key)})`);
      });
    } finally {
      key.fill(0);
    }
    await this.#load(this.#db);
    return id;
  }

  // A key wrapped by our KEK after another instance rewrapped the rest under a new one would be
  // unreadable to everyone holding only the new KEK.
  async #assertKekCurrent(tx: Queryable): Promise<void> {
    const other = await tx.one<{ kek_id: string }>(
      sql`select kek_id from data_keys where kek_id <> ${this.#kek.id} limit 1`,
    );
    if (other) {
      throw new FieldCipherError(
        'ERR_KEK_CHANGED',
        `data keys are wrapped by KEK ${other.kek_id}, not by ${this.#kek.id}: reopen with the current KEK`,
      );
    }
  }

  /**
   * Rewraps every data key under `newKek` in one transaction (DESIGN §5: rotating the KEK never
   * re-encrypts data). Each rewrapped key is unwrapped again with the new KEK and compared before it is
   * written. Returns the number of data keys rewrapped.
   */
  async rewrap(newKek: Kek): Promise<number> {
    const n = await this.#db.transaction(async (tx) => {
      await tx.query(sql`lock table data_keys in share row exclusive mode`);
      const rows = await tx.query<DataKeyRow>(
        sql`select id, purpose, version, kek_id, wrapped from data_keys order by purpose, version`,
      );
      for (const r of rows) {
        const raw = this.#unwrapRow(r);
        try {
          const wrapped = newKek.wrap(raw);
          const check = newKek.unwrap(wrapped);
          const same = check.equals(raw);
          check.fill(0);
          if (!same) throw new KekError('ERR_KEK_WRAP', 'the new KEK does not give back what it wrapped');
          await tx.query(
            sql`update data_keys set wrapped = ${wrapped}, kek_id = ${newKek.id} where id = ${r.id}`,
          );
        } finally {
          raw.fill(0);
        }
      }
      return rows.length;
    });
    this.#kek = newKek;
    // Rows another instance added before our lock are now known here too.
    await this.#load(this.#db);
    return n;
  }
}
