/**
 * The destination's record of a split copy in progress (`kvsz.sync_ranges`):
 * each page range's transaction records its own transaction id, so a copy
 * interrupted by a crash can be undone exactly — the rows whose `xmin` is one
 * of those ids are the ones it wrote — and then redone from scratch.
 */
import type { Sql } from "../pg/connect.ts";
import type { SourceKey, TableKey } from "../config/types.ts";

const DDL = `CREATE TABLE IF NOT EXISTS kvsz.sync_ranges (
  database text NOT NULL,
  sid text NOT NULL,
  source_table text NOT NULL,
  xid bigint NOT NULL,
  rows bigint NOT NULL,
  copied_at timestamptz NOT NULL DEFAULT now())`;

/** Creates `kvsz.sync_ranges` when missing (schema `kvsz` exists already). */
export async function ensureRangeLog(dest: Sql): Promise<void> {
  await dest.begin(async (tx) => {
    // Same lock as the rest of kvsz's DDL: processes starting together do not race.
    await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtext('kvsz.schema'))`);
    await tx.unsafe(DDL);
  });
}

/** Records, inside a range's destination transaction, that this transaction wrote `rows`. */
export async function recordRange(tx: Sql, table: TableKey, rows: number): Promise<void> {
  // xmin holds the 32-bit transaction id; txid_current() adds the epoch above it.
  await tx.unsafe(
    `INSERT INTO kvsz.sync_ranges (database, sid, source_table, xid, rows)
     VALUES ($1, $2, $3, txid_current() % 4294967296, $4)`,
    [table.database, table.sid, table.sourceTable, rows],
  );
}

/** Forgets the ranges of a table whose copy is complete (in the transaction that marks it synced). */
export async function forgetRanges(tx: Sql, table: TableKey): Promise<void> {
  await tx.unsafe(
    `DELETE FROM kvsz.sync_ranges WHERE database = $1 AND sid = $2 AND source_table = $3`,
    [table.database, table.sid, table.sourceTable],
  );
}

/**
 * Undoes the interrupted split copies of this source among `targets` (source
 * table → qualified target): deletes the rows their committed ranges wrote,
 * their range records and their 0/0 synced record, in one transaction per
 * table, which `fence` checks last (it throws when this process no longer
 * owns the source). Returns the source tables undone: they are copied again
 * from scratch.
 */
export async function undoInterruptedCopies(
  dest: Sql,
  source: SourceKey,
  { targets, fence }: { targets: Map<string, string>; fence?: (tx: Sql) => Promise<void> },
): Promise<Set<string>> {
  const { database, sid } = source;
  const undone = new Set<string>();
  const [log] = await dest.unsafe(`SELECT to_regclass('kvsz.sync_ranges') IS NOT NULL AS exists`);
  if (!log?.exists) return undone;
  const rows = await dest.unsafe(
    `SELECT source_table, string_agg(xid::text, ',') AS xids FROM kvsz.sync_ranges
      WHERE database = $1 AND sid = $2 GROUP BY source_table`,
    [database, sid],
  );
  for (const r of rows) {
    const table = String(r.source_table);
    const target = targets.get(table);
    if (!target) continue;
    await dest.begin(async (sql) => {
      const tx = sql as unknown as Sql;
      await tx.unsafe(
        `DELETE FROM ${target} WHERE xmin::text::int8 = ANY($1::int8[])`,
        [`{${r.xids}}`],
      );
      await forgetRanges(tx, { database, sid, sourceTable: table });
      await tx.unsafe(
        `DELETE FROM kvsz.synced_tables
          WHERE database = $1 AND sid = $2 AND source_table = $3 AND synced_lsn = '0/0'`,
        [database, sid, table],
      );
      await fence?.(tx);
    });
    undone.add(table);
  }
  return undone;
}
