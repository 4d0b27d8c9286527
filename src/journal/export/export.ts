/**
 * `smart-home journal export`: the journal, or the part of it a time range and a partner select, as
 * JSON Lines (each line the entry exactly as its Merkle leaf hashes it, so SHA-256(0x00 ‖ line) is the
 * leaf hash an auditor can check against the log), as OCSF API Activity events for a SIEM, or as the
 * partner's contract §8.3 projections for offline reconciliation. Streamed page by page from one
 * database snapshot; memory stays flat whatever the journal's size.
 */
import type { Db } from '../../db/db.ts';
import { entryOf, type JournalRow } from '../log/leaf.ts';
import { ocsfEvent } from './ocsf.ts';
import { countRows, DEFAULT_PAGE_SIZE, type ExportFilter, inSnapshot, journalPages } from './rows.ts';
import type { Sink } from './sink.ts';

export const EXPORT_FORMATS = ['jsonl', 'ocsf'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportOptions {
  format: ExportFormat;
  filter: ExportFilter;
  /** The log's origin line (OCSF `metadata.log_name`). */
  origin: string;
  pageSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface ExportResult {
  /** Lines written. */
  entries: number;
}

export function formatRow(row: JournalRow, format: ExportFormat, origin: string): string {
  if (format === 'jsonl') return `${entryOf(row).toString('utf8')}\n`;
  return `${JSON.stringify(ocsfEvent(row, { origin }))}\n`;
}

/** Writes the selected entries to `sink` and commits it; on any failure the sink is aborted. */
export async function exportJournal(db: Db, sink: Sink, opts: ExportOptions): Promise<ExportResult> {
  try {
    const entries = await inSnapshot(db, async (q) => {
      const total = await countRows(q, opts.filter);
      opts.onProgress?.(0, total);
      let done = 0;
      for await (const page of journalPages(q, opts.filter, opts.pageSize ?? DEFAULT_PAGE_SIZE)) {
        let text = '';
        for (const row of page) text += formatRow(row, opts.format, opts.origin);
        await sink.write(text);
        done += page.length;
        opts.onProgress?.(done, total);
      }
      return done;
    });
    await sink.commit();
    return { entries };
  } catch (err) {
    await sink.abort();
    throw err;
  }
}
