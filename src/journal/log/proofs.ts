/**
 * Inclusion proofs for one journal entry and consistency proofs between two tree sizes, computed from
 * the stored tiles (issue 4: "available to operators and to the partner for its own entries").
 * Operators reach them at /admin/v1/journal/proof/…, partners at /partner/v1/journal/proof/… (an
 * entry is found for a partner only when it is about that partner, by its eventId).
 */
import { type Static, Type as T } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Queryable } from '../../db/db.ts';
import { sql } from '../../db/sql.ts';
import { AppError } from '../../errors.ts';
import {
  consistencyNodes,
  consistencyProof,
  inclusionNodes,
  inclusionProof,
  leafHash,
} from '../../tlog/merkle.ts';
import { nodesFromTiles, tilesForNodes } from '../../tlog/tiles.ts';
import { aboutPartner, entryOf, JOURNAL_ROW_COLUMNS, type JournalRow } from './leaf.ts';
import { latestCheckpoint, loadTiles } from './sequencer.ts';

async function nodeMap(q: Queryable, nodes: ReturnType<typeof inclusionNodes>) {
  const tiles = new Map(
    (await loadTiles(q, tilesForNodes(nodes))).map((t) => [`${t.level}/${t.index}`, t.hashes]),
  );
  return nodesFromTiles(nodes, (id) => tiles.get(`${id.level}/${id.index}`));
}

async function checkpointAt(q: Queryable, size: number): Promise<string | null> {
  const r = await q.one<{ note: string }>(
    sql`select note from journal_checkpoints where size = ${String(size)}::bigint`,
  );
  return r?.note ?? null;
}

/** The tree size to prove against: the one asked (≤ the newest checkpoint), or the newest. */
async function treeSize(q: Queryable, asked: number | undefined): Promise<number> {
  const newest = (await latestCheckpoint(q))?.size ?? 0;
  if (asked === undefined) return newest;
  if (asked > newest)
    throw new AppError('not-found', `no checkpoint covers size ${asked} yet (newest ${newest})`);
  return asked;
}

export interface InclusionAnswer {
  leafIndex: number;
  treeSize: number;
  /** The entry itself (RFC 8785 JSON): what the leaf hashes. */
  entry: string;
  leafHash: string;
  /** Audit path, leaf side first, base64. */
  proof: string[];
  /** The signed checkpoint of `treeSize`, when one was signed at exactly that size. */
  checkpoint: string | null;
}

export async function inclusionFor(
  q: Queryable,
  where: { journalId: string } | { eventId: string; partnerId: string },
  askedSize?: number,
): Promise<InclusionAnswer> {
  const filter =
    'journalId' in where
      ? sql`j.id = ${where.journalId}::uuid`
      : sql`(j.details->>'eventId' = ${where.eventId} or j.details->>'commandId' = ${where.eventId})
          and ${aboutPartner(where.partnerId)}`;
  const row = await q.one<JournalRow & { leaf_index: string }>(sql`
    select l.leaf_index::text as leaf_index, ${JOURNAL_ROW_COLUMNS}
    from journal j join journal_leaves l on l.journal_seq = j.seq
    where ${filter} order by l.leaf_index limit 1`);
  if (!row) throw new AppError('not-found', 'no such entry in the log (yet)');
  const leafIndex = Number(row.leaf_index);
  const size = await treeSize(q, askedSize);
  if (leafIndex >= size)
    throw new AppError('not-found', `the entry is leaf ${leafIndex}, beyond tree size ${size}`);
  const nodes = inclusionNodes(leafIndex, size);
  const entry = entryOf(row);
  return {
    leafIndex,
    treeSize: size,
    entry: entry.toString('utf8'),
    leafHash: leafHash(entry).toString('base64'),
    proof: inclusionProof(leafIndex, size, await nodeMap(q, nodes)).map((h) => h.toString('base64')),
    checkpoint: await checkpointAt(q, size),
  };
}

/** The RFC 9162 consistency proof from `from` to `to` (0 < from ≤ to ≤ the stored tree), from the tiles. */
export async function consistencyHashes(q: Queryable, from: number, to: number): Promise<Buffer[]> {
  return consistencyProof(from, to, await nodeMap(q, consistencyNodes(from, to)));
}

export async function consistencyFor(q: Queryable, from: number, askedTo?: number) {
  const to = await treeSize(q, askedTo);
  if (from > to) throw new AppError('invalid-request', `from (${from}) is beyond to (${to})`);
  return {
    from,
    to,
    proof: (await consistencyHashes(q, from, to)).map((h) => h.toString('base64')),
    checkpoints: { from: await checkpointAt(q, from), to: await checkpointAt(q, to) },
  };
}

/** Query strings are not coerced here: sizes travel as decimal strings. */
const Size = T.String({ pattern: '^(0|[1-9][0-9]{0,15})$', description: 'tree size (decimal)' });
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const InclusionQuery = T.Object(
  {
    id: T.String({
      format: 'uuid',
      description: 'journal entry id (operators) or eventId/commandId (partners)',
    }),
    size: T.Optional(Size),
  },
  { additionalProperties: false },
);
const ConsistencyQuery = T.Object({ from: Size, to: T.Optional(Size) }, { additionalProperties: false });
const Inclusion = T.Object({
  leafIndex: T.Integer(),
  treeSize: T.Integer(),
  entry: T.String(),
  leafHash: T.String(),
  proof: T.Array(T.String()),
  checkpoint: T.Union([T.String(), T.Null()]),
});
const Consistency = T.Object({
  from: T.Integer(),
  to: T.Integer(),
  proof: T.Array(T.String()),
  checkpoints: T.Object({ from: T.Union([T.String(), T.Null()]), to: T.Union([T.String(), T.Null()]) }),
});

/**
 * `GET /journal/proof/inclusion?id=&size=` and `GET /journal/proof/consistency?from=&to=`. For
 * `audience: 'operator'` `id` is a journal entry id; for `'partner'` it is the eventId (or commandId)
 * of one of the calling partner's own entries.
 */
export function journalProofRoutes(deps: { db: Queryable; audience: 'operator' | 'partner' }) {
  const partnerOf = (req: FastifyRequest) => req.partner?.id;
  const config = deps.audience === 'partner' ? { scope: 'audit:exchange' as const } : {};
  const tags = ['journal'];
  return async (app: FastifyInstance) => {
    app.get<{ Querystring: Static<typeof InclusionQuery> }>(
      '/journal/proof/inclusion',
      {
        config,
        schema: {
          summary: 'Inclusion proof of one journal entry in the Merkle log (RFC 9162)',
          tags,
          querystring: InclusionQuery,
          response: { 200: Inclusion },
        },
      },
      async (req) => {
        const where =
          deps.audience === 'operator'
            ? { journalId: req.query.id }
            : { eventId: req.query.id, partnerId: partnerOf(req) ?? '00000000-0000-0000-0000-000000000000' };
        return inclusionFor(deps.db, where, num(req.query.size));
      },
    );
    app.get<{ Querystring: Static<typeof ConsistencyQuery> }>(
      '/journal/proof/consistency',
      {
        config,
        schema: {
          summary: 'Consistency proof between two sizes of the journal log (RFC 9162)',
          tags,
          querystring: ConsistencyQuery,
          response: { 200: Consistency },
        },
      },
      async (req) => consistencyFor(deps.db, Number(req.query.from), num(req.query.to)),
    );
  };
}
