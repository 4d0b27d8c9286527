import type { SqlFragment } from './sql.ts';

export type Row = Record<string, unknown>;

/** What queries need: the database or a transaction inside it. */
export interface Queryable {
  query<T extends Row = Row>(q: SqlFragment): Promise<T[]>;
  /** The first row, or undefined. */
  one<T extends Row = Row>(q: SqlFragment): Promise<T | undefined>;
  /** Runs several statements of trusted SQL text without parameters (migrations). */
  exec(text: string): Promise<void>;
}

/**
 * The database port. Two adapters implement it: PGlite (embedded, the default) and `pg` (PostgreSQL,
 * when DATABASE_URL is set). Both speak the same SQL and run the same migrations.
 */
export interface Db extends Queryable {
  readonly engine: 'pglite' | 'postgres';
  /** Runs `fn` in one transaction: committed if it resolves, rolled back if it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
