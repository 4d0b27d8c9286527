/**
 * Contract §8.1 read API on the partner listener (scope `audit:exchange`), in the C2SP tlog-tiles
 * layout: the newest signed checkpoint, hash tiles, and entry bundles. A partner receives in full only
 * the entries about itself (its own devices or its own registration); every other entry appears as its
 * 32-byte leaf hash alone — still enough to check every hash of the tree, and nothing else. Entries
 * themselves are never 32 bytes long (they are JSON objects of many fields), so the two cannot be
 * confused.
 */
import { type Static, Type as T } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Db } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { AppError } from '../../errors.ts';
import { HASH_SIZE, leafHash } from '../../tlog/merkle.ts';
import { parseTilePath, TILE_WIDTH } from '../../tlog/tiles.ts';
import { aboutPartner, entryOf, JOURNAL_ROW_COLUMNS, type JournalRow } from './leaf.ts';
import { latestCheckpoint, loadTiles } from './sequencer.ts';

const TileParams = T.Object({ '*': T.String({ maxLength: 64 }) }, { additionalProperties: false });

const IMMUTABLE = 'public, max-age=31536000, immutable';

/** An entry bundle: uint16 big-endian length-prefixed entries (C2SP tlog-tiles). */
export function encodeBundle(entries: readonly Uint8Array[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(e.length);
    parts.push(len, Buffer.from(e));
  }
  return Buffer.concat(parts);
}

export function decodeBundle(bundle: Uint8Array): Buffer[] {
  const out: Buffer[] = [];
  let o = 0;
  while (o < bundle.length) {
    if (o + 2 > bundle.length) throw new RangeError('truncated entry bundle');
    const len = (bundle[o]! << 8) | bundle[o + 1]!;
    if (o + 2 + len > bundle.length) throw new RangeError('truncated entry bundle');
    out.push(Buffer.from(bundle.subarray(o + 2, o + 2 + len)));
    o += 2 + len;
  }
  return out;
}

/** The leaf hash of a served bundle entry: a withheld entry is its leaf hash already. */
export function servedLeafHash(entry: Uint8Array): Buffer {
  return entry.length === HASH_SIZE ? Buffer.from(entry) : leafHash(entry);
}

export function journalReadRoutes(deps: { db: Db }) {
  return async (app: FastifyInstance) => {
    app.get(
      '/journal/checkpoint',
      {
        config: { scope: 'audit:exchange' },
        schema: {
          summary: 'The newest signed checkpoint of smart-home’s journal (contract §8.1)',
          description:
            'C2SP tlog-checkpoint signed as a C2SP signed note (Ed25519), `text/plain; charset=utf-8`; witness cosignatures are not included.',
          tags: ['journal'],
        },
      },
      async (_req, reply) => {
        const cp = await latestCheckpoint(deps.db);
        if (!cp) throw new AppError('not-found', 'the journal has no checkpoint yet');
        reply.header('content-type', 'text/plain; charset=utf-8').header('cache-control', 'no-store');
        return cp.note;
      },
    );

    app.get<{ Params: Static<typeof TileParams> }>(
      '/journal/tile/*',
      {
        config: { scope: 'audit:exchange' },
        schema: {
          summary: 'A hash tile or an entry bundle of the journal (C2SP tlog-tiles, contract §8.1)',
          description:
            '`tile/<L>/<N>[.p/<W>]`: 32-byte hashes; `tile/entries/<N>[.p/<W>]`: uint16-length-prefixed entries, those not about the calling partner replaced by their 32-byte leaf hash. `application/octet-stream`, immutable.',
          tags: ['journal'],
          params: TileParams,
        },
      },
      async (req, reply) => {
        const path = parseTilePath(req.params['*']);
        if (!path) throw new AppError('not-found', 'not a tile path');
        const cp = await latestCheckpoint(deps.db);
        const size = cp?.size ?? 0;
        const { level, index, width } = path;
        let body: Buffer;
        if (level === 'entries') {
          const start = index * TILE_WIDTH;
          if (start + width > size) throw new AppError('not-found', 'beyond the newest checkpoint');
          const partner = req.partner!.id;
          const rows = await deps.db.query<JournalRow & { leaf_index: string; own: boolean }>(sql`
            select l.leaf_index::text as leaf_index, ${JOURNAL_ROW_COLUMNS},
              ${aboutPartner(partner)} as own
            from journal_leaves l join journal j on j.seq = l.journal_seq
            where l.leaf_index >= ${String(start)}::bigint and l.leaf_index < ${String(start + width)}::bigint
            order by l.leaf_index`);
          if (rows.length !== width) throw new AppError('not-found', 'entries not available');
          body = encodeBundle(rows.map((r) => (r.own ? entryOf(r) : leafHash(entryOf(r)))));
        } else {
          const atLevel = Math.floor(size / TILE_WIDTH ** level);
          if (index * TILE_WIDTH + width > atLevel)
            throw new AppError('not-found', 'beyond the newest checkpoint');
          const [tile] = await loadTiles(deps.db, [{ level, index }]);
          if (!tile || tile.hashes.length < width * HASH_SIZE)
            throw new AppError('not-found', 'tile not available');
          body = tile.hashes.subarray(0, width * HASH_SIZE);
        }
        reply.header('content-type', 'application/octet-stream').header('cache-control', IMMUTABLE);
        return body;
      },
    );
  };
}
