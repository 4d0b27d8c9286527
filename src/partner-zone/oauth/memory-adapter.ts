import type { Adapter, AdapterPayload } from 'oidc-provider';

/** Builds the storage adapter of one oidc-provider model (`Session`, `ReplayDetection`, …). */
export type AdapterFactory = (modelName: string) => Adapter;

interface Entry {
  payload: AdapterPayload;
  /** ms since the epoch; Infinity when the provider gave no lifetime. */
  expiresAt: number;
}

/**
 * A bounded in-process adapter for the provider's own short-lived models. It is the default until the
 * PostgreSQL adapter lands; with several instances it must be replaced (one instance would not see
 * another's replay-detection rows). Client credentials issue JWT access tokens that are never stored,
 * so for the partner token endpoint this holds almost nothing.
 *
 * `consume` really marks the row consumed (single-threaded, so atomic here): a PostgreSQL adapter must
 * do the same with one UPDATE, or reuse detection silently fails.
 */
export function createMemoryAdapterFactory(opts: { maxEntries?: number; now?: () => number } = {}) {
  const maxEntries = opts.maxEntries ?? 10_000;
  const now = opts.now ?? Date.now;
  const rows = new Map<string, Entry>();
  // Secondary indexes; they point at row keys and are checked against the row on read.
  const byUid = new Map<string, string>();
  const byUserCode = new Map<string, string>();
  const byGrant = new Map<string, Set<string>>();

  const live = (key: string): Entry | undefined => {
    const e = rows.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= now()) {
      drop(key);
      return undefined;
    }
    return e;
  };

  const drop = (key: string) => {
    const e = rows.get(key);
    if (!e) return;
    rows.delete(key);
    const { uid, userCode, grantId } = e.payload;
    if (typeof uid === 'string' && byUid.get(uid) === key) byUid.delete(uid);
    if (typeof userCode === 'string' && byUserCode.get(userCode) === key) byUserCode.delete(userCode);
    if (typeof grantId === 'string') {
      const members = byGrant.get(grantId);
      members?.delete(key);
      if (members?.size === 0) byGrant.delete(grantId);
    }
  };

  return function adapterFor(modelName: string): Adapter {
    const keyOf = (id: string) => `${modelName}:${id}`;
    return {
      async upsert(id, payload, expiresIn) {
        const key = keyOf(id);
        drop(key);
        // Bounded: evict the oldest rows first (Map keeps insertion order). Rows here live minutes at
        // most, so the oldest is also the closest to expiry.
        while (rows.size >= maxEntries) {
          const oldest = rows.keys().next().value;
          if (oldest === undefined) break;
          drop(oldest);
        }
        const expiresAt = typeof expiresIn === 'number' ? now() + expiresIn * 1000 : Number.POSITIVE_INFINITY;
        rows.set(key, { payload: structuredClone(payload), expiresAt });
        if (typeof payload.uid === 'string') byUid.set(payload.uid, key);
        if (typeof payload.userCode === 'string') byUserCode.set(payload.userCode, key);
        if (typeof payload.grantId === 'string') {
          const members = byGrant.get(payload.grantId) ?? new Set<string>();
          members.add(key);
          byGrant.set(payload.grantId, members);
        }
      },
      async find(id) {
        const e = live(keyOf(id));
        return e ? structuredClone(e.payload) : undefined;
      },
      async findByUid(uid) {
        const key = byUid.get(uid);
        const e = key?.startsWith(`${modelName}:`) ? live(key) : undefined;
        return e ? structuredClone(e.payload) : undefined;
      },
      async findByUserCode(userCode) {
        const key = byUserCode.get(userCode);
        const e = key?.startsWith(`${modelName}:`) ? live(key) : undefined;
        return e ? structuredClone(e.payload) : undefined;
      },
      async consume(id) {
        const e = live(keyOf(id));
        if (e) e.payload.consumed = Math.floor(now() / 1000);
      },
      async destroy(id) {
        drop(keyOf(id));
      },
      async revokeByGrantId(grantId) {
        for (const key of [...(byGrant.get(grantId) ?? [])]) drop(key);
      },
    };
  };
}
