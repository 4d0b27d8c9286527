/**
 * Contract §7 backwards: the `subject` of a partner event is a pseudonym,
 * HMAC(pseudonymKey[partner], "subject/v1|" + residentId); HMAC does not invert, so each partner's map
 * pseudonym → resident is built by computing every resident's pseudonym under each of the partner's
 * live key versions (a rotation keeps the previous version until it is retired, so events from devices
 * not yet updated still resolve). The map is rebuilt when a pseudonym misses, at most once per
 * `refreshSeconds` per partner, so a partner sending unknown subjects cannot make us recompute on
 * every event.
 */
import type { FieldCipher } from '../crypto/field-cipher.ts';
import { pseudonym } from '../crypto/partner-keys.ts';
import type { Queryable } from '../db/db.ts';
import { sql } from '../db/sql.ts';
import { loadPartnerKeys } from '../registry/partner-secrets.ts';

interface PartnerMap {
  residents: Map<string, string>;
  builtAt: number;
}

export class PseudonymResolver {
  readonly #cipher: FieldCipher;
  readonly #refreshMs: number;
  readonly #now: () => number;
  readonly #maps = new Map<string, PartnerMap>();

  constructor(opts: { cipher: FieldCipher; refreshSeconds: number; now?: () => number }) {
    this.#cipher = opts.cipher;
    this.#refreshMs = opts.refreshSeconds * 1000;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * Resolves the pseudonyms of one partner: the resident id of each, or null. Reads through `q` (the
   * caller's transaction: on the embedded database a second connection would wait for it).
   */
  async resolve(
    q: Queryable,
    partnerId: string,
    pseudonyms: Iterable<string>,
  ): Promise<Map<string, string | null>> {
    const wanted = [...new Set(pseudonyms)];
    const out = new Map<string, string | null>();
    if (wanted.length === 0) return out;
    let map = this.#maps.get(partnerId);
    const now = this.#now();
    const miss = !map || wanted.some((p) => !map!.residents.has(p));
    if (miss && (!map || now - map.builtAt >= this.#refreshMs)) {
      map = { residents: await this.#build(q, partnerId), builtAt: now };
      this.#maps.set(partnerId, map);
    }
    for (const p of wanted) out.set(p, map?.residents.get(p) ?? null);
    return out;
  }

  /** Forgets every map (keys rotated, or the caller is done). */
  clear(): void {
    this.#maps.clear();
  }

  async #build(q: Queryable, partnerId: string): Promise<Map<string, string>> {
    const versions = await loadPartnerKeys(q, this.#cipher, partnerId);
    const live = versions.filter((v) => !v.retired);
    try {
      const residents = await q.query<{ id: string }>(sql`select id::text as id from residents`);
      const map = new Map<string, string>();
      for (const v of live) for (const r of residents) map.set(pseudonym(v.pseudonymKey, r.id), r.id);
      return map;
    } finally {
      for (const v of versions) {
        v.plateKey.fill(0);
        v.pseudonymKey.fill(0);
      }
    }
  }
}
