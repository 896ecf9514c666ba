/**
 * kvsz's own state in the destination (schema `kvsz`): per source the last
 * applied commit, written in the same transaction as the changes, and per table
 * the LSN of the snapshot its initial copy came from.
 */
import type { Sql } from "../pg/connect.ts";
import { parseLsn } from "../pg/lsn.ts";
import { textArray } from "./text_array.ts";

/** DDL run on every start (idempotent; safe with several kvsz processes). */
const SCHEMA_DDL = [
  `CREATE SCHEMA IF NOT EXISTS kvsz`,
  `CREATE TABLE IF NOT EXISTS kvsz.progress (
    database text NOT NULL,
    sid text NOT NULL,
    commit_lsn pg_lsn NOT NULL,
    end_lsn pg_lsn NOT NULL,
    commit_time timestamptz,
    applied_at timestamptz NOT NULL DEFAULT now(),
    rows_clone bigint NOT NULL DEFAULT 0,
    rows_append bigint NOT NULL DEFAULT 0,
    rows_history bigint NOT NULL DEFAULT 0,
    anomalies bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (database, sid))`,
  `CREATE TABLE IF NOT EXISTS kvsz.synced_tables (
    database text NOT NULL,
    sid text NOT NULL,
    source_table text NOT NULL,
    target text NOT NULL,
    synced_lsn pg_lsn NOT NULL,
    synced_at timestamptz NOT NULL DEFAULT now(),
    rows bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (database, sid, source_table))`,
];

/** Creates schema `kvsz` and its tables when missing. */
export async function ensureKvszSchema(sql: Sql): Promise<void> {
  // Two processes starting at once may race on CREATE ... IF NOT EXISTS: serialize.
  await sql.begin(async (tx) => {
    await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtext('kvsz.schema'))`);
    for (const ddl of SCHEMA_DDL) await tx.unsafe(ddl);
  });
}

/** The last source commit applied for one source. */
export interface SourceProgress {
  commitLsn: bigint;
  endLsn: bigint;
  commitTime: string | null;
}

/** Reads the stored progress of a source, or null when nothing was applied yet. */
export async function readProgress(
  sql: Sql,
  database: string,
  sid: string,
): Promise<SourceProgress | null> {
  const rows = await sql.unsafe(
    `SELECT commit_lsn::text AS commit_lsn, end_lsn::text AS end_lsn, commit_time::text AS commit_time
       FROM kvsz.progress WHERE database = $1 AND sid = $2`,
    [database, sid],
  );
  if (rows.length === 0) return null;
  return {
    commitLsn: parseLsn(rows[0].commit_lsn),
    endLsn: parseLsn(rows[0].end_lsn),
    commitTime: rows[0].commit_time,
  };
}

/** Rows applied per mode and anomalies of one destination transaction. */
export interface BatchCounts {
  clone: number;
  append: number;
  history: number;
  anomalies: number;
}

/** Upserts the progress row; must run inside the destination transaction of the batch. */
export async function writeProgress(
  tx: Sql,
  database: string,
  sid: string,
  commitLsn: string,
  endLsn: string,
  commitTimeIso: string | null,
  counts: BatchCounts,
): Promise<void> {
  await tx.unsafe(
    `INSERT INTO kvsz.progress AS p (database, sid, commit_lsn, end_lsn, commit_time, applied_at,
       rows_clone, rows_append, rows_history, anomalies)
     VALUES ($1, $2, $3::pg_lsn, $4::pg_lsn, $5::timestamptz, clock_timestamp(), $6, $7, $8, $9)
     ON CONFLICT (database, sid) DO UPDATE SET
       commit_lsn = excluded.commit_lsn, end_lsn = excluded.end_lsn,
       commit_time = excluded.commit_time, applied_at = excluded.applied_at,
       rows_clone = p.rows_clone + excluded.rows_clone,
       rows_append = p.rows_append + excluded.rows_append,
       rows_history = p.rows_history + excluded.rows_history,
       anomalies = p.anomalies + excluded.anomalies`,
    [
      database,
      sid,
      commitLsn,
      endLsn,
      commitTimeIso,
      counts.clone,
      counts.append,
      counts.history,
      counts.anomalies,
    ],
    { prepare: true },
  );
}

/**
 * Moves a source's stored position over WAL that held nothing for it, before
 * kvsz confirms that WAL to the slot: the slot is never confirmed beyond what
 * is stored here (see `lib/source/slot_trust.ts`).
 */
export async function recordIdlePosition(
  sql: Sql,
  database: string,
  sid: string,
  lsn: string,
): Promise<void> {
  await sql.unsafe(
    `UPDATE kvsz.progress SET end_lsn = $3::pg_lsn
      WHERE database = $1 AND sid = $2 AND end_lsn < $3::pg_lsn`,
    [database, sid, lsn],
  );
}

/** Snapshot LSN of each table's initial copy, by source table (`schema.name`). */
export async function readSyncedTables(
  sql: Sql,
  database: string,
  sid: string,
): Promise<Map<string, bigint>> {
  const rows = await sql.unsafe(
    `SELECT source_table, synced_lsn::text AS synced_lsn FROM kvsz.synced_tables
      WHERE database = $1 AND sid = $2`,
    [database, sid],
  );
  return new Map(rows.map((r) => [r.source_table as string, parseLsn(r.synced_lsn)]));
}

/** Records that `sourceTable` was copied from a snapshot at `syncedLsn` (same transaction as the copy). */
export async function markTableSynced(
  tx: Sql,
  database: string,
  sid: string,
  sourceTable: string,
  target: string,
  syncedLsn: string,
  rows: number,
): Promise<void> {
  await tx.unsafe(
    `INSERT INTO kvsz.synced_tables (database, sid, source_table, target, synced_lsn, rows)
     VALUES ($1, $2, $3, $4, $5::pg_lsn, $6)
     ON CONFLICT (database, sid, source_table) DO UPDATE SET
       target = excluded.target, synced_lsn = excluded.synced_lsn,
       synced_at = now(), rows = excluded.rows`,
    [database, sid, sourceTable, target, syncedLsn, rows],
  );
}

/**
 * Sets a source's stream position to `lsn` after a fresh slot's initial sync.
 * The commit LSN goes to 0/0: what the copies cover is told per table by
 * `kvsz.synced_tables`, and a commit exactly at the slot's start must stream.
 */
export async function resetProgress(
  sql: Sql,
  database: string,
  sid: string,
  lsn: string,
): Promise<void> {
  await sql.unsafe(
    `INSERT INTO kvsz.progress (database, sid, commit_lsn, end_lsn, commit_time)
     VALUES ($1, $2, '0/0', $3::pg_lsn, NULL)
     ON CONFLICT (database, sid) DO UPDATE SET
       commit_lsn = excluded.commit_lsn, end_lsn = excluded.end_lsn, applied_at = now()`,
    [database, sid, lsn],
  );
}

/**
 * Marks tables no longer in the config: their synced LSN becomes 0/0, so if
 * they come back they are copied again with re-sync (merge) semantics.
 */
export async function markTablesRemoved(
  sql: Sql,
  database: string,
  sid: string,
  configured: string[],
): Promise<void> {
  await sql.unsafe(
    `UPDATE kvsz.synced_tables SET synced_lsn = '0/0'
      WHERE database = $1 AND sid = $2 AND NOT (source_table = ANY($3::text[]))`,
    [database, sid, textArray(configured)],
  );
}
