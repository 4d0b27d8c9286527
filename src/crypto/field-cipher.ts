import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import type { Db, Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import type { Kek } from './kek.ts';

export interface FieldAad {
  table: string;
  column: string;
  rowId: string;
}

export class FieldCipherError extends Error {
  readonly code: 'ERR_DECRYPT' | 'ERR_UNKNOWN_DATA_KEY' | 'ERR_UNKNOWN_PURPOSE';
  constructor(code: FieldCipherError['code'], message: string) {
    super(message);
    this.code = code;
  }
}

interface DataKey {
  id: string;
  purpose: string;
  version: number;
  key: Buffer;
}

const PREFIX = 'v1';

/**
 * Envelope encryption of single fields (DESIGN §5): each value is AES-256-GCM under the current data
 * key of its purpose, with the associated data binding it to its table, column and row — a ciphertext
 * copied elsewhere does not decrypt. Data keys are stored wrapped by the KEK; the stored form
 * `v1.<key id>.<base64url(iv ‖ ciphertext ‖ tag)>` names its key, so keys rotate without re-encrypting.
 */
export class FieldCipher {
  readonly #byId = new Map<string, DataKey>();
  readonly #current = new Map<string, DataKey>();
  readonly #blind = new Map<string, Buffer>();
  readonly #db: Db;
  #kek: Kek;

  private constructor(db: Db, kek: Kek) {
    this.#db = db;
    this.#kek = kek;
  }

  static async open(db: Db, kek: Kek, purposes: readonly string[]): Promise<FieldCipher> {
    const fc = new FieldCipher(db, kek);
    await fc.#load(db);
    for (const purpose of purposes) {
      if (!fc.#current.has(purpose)) {
        // Concurrency-safe: two instances starting together insert once, then both read the winner.
        await db.query(sql`insert into data_keys (id, purpose, version, kek_id, wrapped)
          values (${randomUUID()}, ${purpose}, 1, ${kek.id}, ${kek.wrap(randomBytes(32))})
          on conflict (purpose, version) do nothing`);
      }
    }
    await fc.#load(db);
    return fc;
  }

  async #load(q: Queryable): Promise<void> {
    const rows = await q.query<{
      id: string;
      purpose: string;
      version: number;
      kek_id: string;
      wrapped: Uint8Array;
    }>(sql`select id, purpose, version, kek_id, wrapped from data_keys order by purpose, version`);
    for (const r of rows) {
      if (this.#byId.has(r.id)) continue;
      const key = this.#kek.unwrap(Buffer.from(r.wrapped));
      const dk = { id: r.id, purpose: r.purpose, version: r.version, key };
      this.#byId.set(r.id, dk);
      const cur = this.#current.get(r.purpose);
      if (!cur || cur.version < r.version) this.#current.set(r.purpose, dk);
    }
  }

  /** Picks up keys added by another instance (after a rotation there). */
  refresh(): Promise<void> {
    return this.#load(this.#db);
  }

  encrypt(purpose: string, aad: FieldAad, plaintext: string): string {
    const dk = this.#current.get(purpose);
    if (!dk) throw new FieldCipherError('ERR_UNKNOWN_PURPOSE', `no data key for purpose ${purpose}`);
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', dk.key, iv);
    c.setAAD(Buffer.from(`${aad.table}|${aad.column}|${aad.rowId}`, 'utf8'));
    const ct = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
    return `${PREFIX}.${dk.id}.${Buffer.concat([iv, ct, c.getAuthTag()]).toString('base64url')}`;
  }

  decrypt(aad: FieldAad, stored: string): string {
    const [prefix, keyId, data] = stored.split('.');
    if (prefix !== PREFIX || !keyId || !data)
      throw new FieldCipherError('ERR_DECRYPT', 'not a field ciphertext');
    const dk = this.#byId.get(keyId);
    if (!dk) throw new FieldCipherError('ERR_UNKNOWN_DATA_KEY', 'the data key of this value is unknown');
    const buf = Buffer.from(data, 'base64url');
    if (buf.length < 28) throw new FieldCipherError('ERR_DECRYPT', 'ciphertext too short');
    try {
      const d = createDecipheriv('aes-256-gcm', dk.key, buf.subarray(0, 12));
      d.setAAD(Buffer.from(`${aad.table}|${aad.column}|${aad.rowId}`, 'utf8'));
      d.setAuthTag(buf.subarray(buf.length - 16));
      return Buffer.concat([d.update(buf.subarray(12, buf.length - 16)), d.final()]).toString('utf8');
    } catch {
      throw new FieldCipherError('ERR_DECRYPT', 'the value does not decrypt (wrong place, or altered)');
    }
  }

  /**
   * A keyed blind index (HMAC-SHA256) for equality look-ups of encrypted values (phone numbers, plate
   * de-duplication). Keyed by HKDF from the purpose's first data key, so it is stable across rotations.
   */
  blindIndex(purpose: string, value: string): string {
    let key = this.#blind.get(purpose);
    if (!key) {
      const first = [...this.#byId.values()]
        .filter((k) => k.purpose === purpose)
        .sort((a, b) => a.version - b.version)[0];
      if (!first) throw new FieldCipherError('ERR_UNKNOWN_PURPOSE', `no data key for purpose ${purpose}`);
      key = Buffer.from(hkdfSync('sha256', first.key, Buffer.alloc(0), `blind-index/v1|${purpose}`, 32));
      this.#blind.set(purpose, key);
    }
    return createHmac('sha256', key).update(value, 'utf8').digest('base64url');
  }

  /** A new data-key version for a purpose; new values use it, old ones still decrypt. */
  async rotate(purpose: string): Promise<string> {
    const cur = this.#current.get(purpose);
    const id = randomUUID();
    await this.#db.query(sql`insert into data_keys (id, purpose, version, kek_id, wrapped)
      values (${id}, ${purpose}, ${(cur?.version ?? 0) + 1}, ${this.#kek.id}, ${this.#kek.wrap(randomBytes(32))})`);
    await this.#load(this.#db);
    return id;
  }

  /** Rewraps every data key under a new KEK in one transaction; data is never re-encrypted. */
  async rewrap(newKek: Kek): Promise<number> {
    const n = await this.#db.transaction(async (tx) => {
      const rows = await tx.query<{ id: string; wrapped: Uint8Array }>(
        sql`select id, wrapped from data_keys for update`,
      );
      for (const r of rows) {
        const key = this.#kek.unwrap(Buffer.from(r.wrapped));
        await tx.query(
          sql`update data_keys set wrapped = ${newKek.wrap(key)}, kek_id = ${newKek.id} where id = ${r.id}`,
        );
      }
      return rows.length;
    });
    this.#kek = newKek;
    return n;
  }
}
