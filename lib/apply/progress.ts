/**
 * kvsz's own state in the destination (schema `kvsz`): per source the last
 * applied commit, written in the same transaction as the changes, and per table
 * the LSN of the snapshot its initial copy came from, the source columns kvsz
 * knows, their drift and whether the table is stopped for it.
 */
import type { Sql } from "../pg/connect.ts";
import type { SourceKey, TableKey } from "../config/types.ts";
import { formatLsn, parseLsn } from "../pg/lsn.ts";
import type { ColumnDrift } from "./drift.ts";
import { textArray } from "./text_array.ts";
import {
  ensureOwnerFence,
  ownedParams,
  ownedQuery,
  type OwnedSource,
  OWNERS_DDL,
  ownershipError,
} from "./ownership.ts";

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
  OWNERS_DDL,
];

/**
 * Columns added to `kvsz.synced_tables` since it was first released, each
 * with its type (added to an existing schema on start).
 */
const SYNCED_TABLES_ADDED: [string, string][] = [
  // The source columns kvsz knows (see drift.ts); NULL when copied by an older kvsz.
  ["source_columns", "text[]"],
  // The LSN those columns were seen at: an older layout streamed again says nothing.
  ["columns_lsn", "pg_lsn"],
  // The table's column drift: [{column, kind, since}].
  ["column_drift", "jsonb"],
  // Set while the table is stopped for column drift (its changes are not applied).
  ["stopped_lsn", "pg_lsn"],
];

/** Creates schema `kvsz` and its tables when missing, and adds columns newer versions need. */
export async function ensureKvszSchema(sql: Sql): Promise<void> {
  // Two processes starting at once may race on CREATE ... IF NOT EXISTS: serialize.
  await sql.begin(async (tx) => {
    await tx.unsafe(`SELECT pg_advisory_xact_lock(hashtext('kvsz.schema'))`);
    for (const ddl of SCHEMA_DDL) await tx.unsafe(ddl);
    // ALTER TABLE locks the table even when the column exists: only when one is missing.
    const present = new Set(
      (await tx.unsafe(
        `SELECT attname FROM pg_catalog.pg_attribute
          WHERE attrelid = 'kvsz.synced_tables'::regclass AND attnum > 0 AND NOT attisdropped`,
      )).map((r) => String(r.attname)),
    );
    const missing = SYNCED_TABLES_ADDED.filter(([name]) => !present.has(name));
    if (missing.length > 0) {
      await tx.unsafe(
        `ALTER TABLE kvsz.synced_tables ${
          missing.map(([name, type]) => `ADD COLUMN IF NOT EXISTS ${name} ${type}`).join(", ")
        }`,
      );
    }
    await ensureOwnerFence(tx as unknown as Sql);
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

/** What a destination transaction records of one source in its progress row. */
export interface ProgressRecord {
  /** The last source commit applied, and the end of its record (`X/Y`). */
  commitLsn: string;
  endLsn: string;
  /** Its commit time (ISO), or null when unknown. */
  commitTimeIso: string | null;
  /** Rows applied per mode and anomalies, added to the row's totals. */
  counts: BatchCounts;
}

/**
 * Upserts the progress row; must run inside the destination transaction of
 * the batch. The statement is queued on the connection by the call itself, so
 * a statement queued after the call (the COMMIT) runs after it. A fenced
 * source (see ownership.ts) whose claim is another's fails the statement
 * with {@link LostOwnership}, and so the transaction: its COMMIT rolls back.
 */
export async function writeProgress(
  tx: Sql,
  source: OwnedSource,
  { commitLsn, endLsn, commitTimeIso, counts }: ProgressRecord,
): Promise<void> {
  await tx.unsafe(
    `WITH owned AS (${ownedQuery(source, 10)})
     INSERT INTO kvsz.progress AS p (database, sid, commit_lsn, end_lsn, commit_time, applied_at,
       rows_clone, rows_append, rows_history, anomalies)
     SELECT $1, $2, $3::pg_lsn, $4::pg_lsn, $5::timestamptz, clock_timestamp(),
            $6::int8, $7::int8, $8::int8, $9::int8 FROM owned
     ON CONFLICT (database, sid) DO UPDATE SET
       commit_lsn = excluded.commit_lsn, end_lsn = excluded.end_lsn,
       commit_time = excluded.commit_time, applied_at = excluded.applied_at,
       rows_clone = p.rows_clone + excluded.rows_clone,
       rows_append = p.rows_append + excluded.rows_append,
       rows_history = p.rows_history + excluded.rows_history,
       anomalies = p.anomalies + excluded.anomalies`,
    [
      source.database,
      source.sid,
      commitLsn,
      endLsn,
      commitTimeIso,
      counts.clone,
      counts.append,
      counts.history,
      counts.anomalies,
      ...ownedParams(source),
    ],
    { prepare: true },
  ).execute().catch((e) => {
    throw ownershipError(e, source);
  });
}

/**
 * Moves sources' stored positions over WAL that held nothing for them (each
 * only forward), before kvsz confirms that WAL to their slots: a slot is
 * never confirmed beyond what is stored here (see `lib/source/slot_trust.ts`).
 * A fenced source (ownership.ts) is moved only while its claim is its token's;
 * returns the sources recorded (`database\0sid`), the others are left alone.
 */
export async function recordIdlePositions(
  sql: Sql,
  positions: readonly { key: OwnedSource; lsn: string }[],
): Promise<Set<string>> {
  const rows = await sql.unsafe(
    `WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                  AS v(database, sid, lsn, token)),
          locked AS (SELECT v.database, v.sid, v.lsn FROM v JOIN kvsz.owners o
                       ON o.database = v.database AND o.sid = v.sid AND o.token = v.token
                      FOR SHARE OF o),
          owned AS (SELECT database, sid, lsn FROM v WHERE token = ''
                    UNION ALL SELECT database, sid, lsn FROM locked),
          moved AS (UPDATE kvsz.progress p SET end_lsn = owned.lsn::pg_lsn FROM owned
                     WHERE p.database = owned.database AND p.sid = owned.sid
                       AND p.end_lsn < owned.lsn::pg_lsn)
     SELECT database, sid FROM owned`,
    [
      textArray(positions.map((p) => p.key.database)),
      textArray(positions.map((p) => p.key.sid)),
      textArray(positions.map((p) => p.lsn)),
      textArray(positions.map((p) => p.key.ownerToken ?? "")),
    ],
  );
  return new Set(rows.map((r) => `${r.database}\u0000${r.sid}`));
}

/** What kvsz recorded about one table of a source. */
export interface SyncedTable {
  /** Snapshot LSN of the table's copy; 0/0 when it is to be copied again. */
  lsn: bigint;
  /** The source columns kvsz knows (see drift.ts); null when an older kvsz copied it. */
  sourceColumns: string[] | null;
  /** LSN of the layout `sourceColumns` describes. */
  columnsLsn: bigint;
  drift: ColumnDrift[];
  /** Where the table stopped for column drift; null while it streams. */
  stoppedLsn: bigint | null;
}

/** What kvsz recorded about each table of a source, by source table (`TableMapping.source`). */
export async function readSyncedTables(
  sql: Sql,
  database: string,
  sid: string,
): Promise<Map<string, SyncedTable>> {
  const rows = await sql.unsafe(
    `SELECT source_table, synced_lsn::text AS synced_lsn,
            array_to_json(source_columns)::text AS source_columns,
            columns_lsn::text AS columns_lsn, column_drift::text AS column_drift,
            stopped_lsn::text AS stopped_lsn
       FROM kvsz.synced_tables WHERE database = $1 AND sid = $2`,
    [database, sid],
  );
  return new Map(rows.map((r) => [r.source_table as string, {
    lsn: parseLsn(r.synced_lsn),
    sourceColumns: r.source_columns ? JSON.parse(r.source_columns) : null,
    columnsLsn: r.columns_lsn ? parseLsn(r.columns_lsn) : 0n,
    drift: r.column_drift ? JSON.parse(r.column_drift) : [],
    stoppedLsn: r.stopped_lsn ? parseLsn(r.stopped_lsn) : null,
  }]));
}

/** A `kvsz.synced_tables` row as other commands read it (`status`, `validate`). */
export interface SyncedTableRow {
  database: string;
  sid: string;
  /** `TableMapping.source`. */
  sourceTable: string;
  /** Destination table name (in `destination.schema`). */
  target: string;
  /** The source columns kvsz knows; null when an older kvsz copied the table. */
  sourceColumns: string[] | null;
  drift: ColumnDrift[];
  stoppedLsn: string | null;
}

/**
 * Every `kvsz.synced_tables` row, whichever kvsz version created the schema
 * (columns it lacks read as empty); none before kvsz first ran.
 */
export async function readAllSyncedTables(sql: Sql): Promise<SyncedTableRow[]> {
  const [{ present }] = await sql.unsafe(
    `SELECT to_regclass('kvsz.synced_tables') IS NOT NULL AS present`,
  );
  if (!present) return [];
  const rows = await sql.unsafe(
    `SELECT to_jsonb(t)::text AS r FROM kvsz.synced_tables t
      ORDER BY database, sid, source_table COLLATE "C"`,
  );
  return rows.map(({ r }) => {
    const t = JSON.parse(r);
    return {
      database: t.database,
      sid: t.sid,
      sourceTable: t.source_table,
      target: t.target,
      sourceColumns: t.source_columns ?? null,
      drift: t.column_drift ?? [],
      stoppedLsn: t.stopped_lsn ?? null,
    };
  });
}

/** What a table's copy records, in the copy's own destination transaction. */
export interface CopyRecord {
  target: string;
  /** Snapshot LSN of the copy (0/0 while a split copy runs). */
  lsn: string;
  rows: number;
  /** The source's columns in the snapshot. */
  sourceColumns: string[];
  /** The target's columns. */
  targetColumns: string[];
}

/**
 * Records that a table was copied from a snapshot at `copy.lsn`, in the
 * copy's transaction. The copy ends a stop and any drift but one: a target
 * column kvsz filled before whose source column is gone stays known, and
 * stays drift.
 */
export async function markTableSynced(tx: Sql, table: TableKey, copy: CopyRecord): Promise<void> {
  await tx.unsafe(
    `INSERT INTO kvsz.synced_tables AS t (database, sid, source_table, target, synced_lsn, rows,
       source_columns, columns_lsn)
     VALUES ($1, $2, $3, $4, $5::pg_lsn, $6, $7::text[], $5::pg_lsn)
     ON CONFLICT (database, sid, source_table) DO UPDATE SET
       target = excluded.target, synced_lsn = excluded.synced_lsn,
       synced_at = now(), rows = excluded.rows,
       source_columns = excluded.source_columns || ARRAY(
         SELECT c FROM unnest(t.source_columns) c
          WHERE c = ANY($8::text[]) AND NOT c = ANY(excluded.source_columns)),
       columns_lsn = excluded.columns_lsn,
       column_drift = (
         SELECT jsonb_agg(d) FROM jsonb_array_elements(t.column_drift) d
          WHERE d->>'kind' = 'missing_at_source' AND d->>'column' = ANY($8::text[])
            AND NOT d->>'column' = ANY(excluded.source_columns)),
       stopped_lsn = NULL`,
    [
      table.database,
      table.sid,
      table.sourceTable,
      copy.target,
      copy.lsn,
      copy.rows,
      textArray(copy.sourceColumns),
      textArray(copy.targetColumns),
    ],
  );
}

/** A table's column state as the stream found it. */
export interface ColumnState {
  sourceColumns: string[];
  /** LSN of the source layout `sourceColumns` comes from. */
  columnsLsn: bigint;
  drift: ColumnDrift[];
  /** Set to stop the table: it is then copied again once the drift is fixed. */
  stoppedLsn: bigint | null;
}

/**
 * Records a table's column state; a stop also marks the table to be copied
 * again (synced LSN 0/0). Runs in a transaction of its own, before any change
 * of the table is left out: a stop recorded early only means a copy covers more.
 */
export async function writeColumnState(sql: Sql, table: TableKey, state: ColumnState) {
  await sql.unsafe(
    `UPDATE kvsz.synced_tables SET source_columns = $4::text[], columns_lsn = $5::pg_lsn,
            column_drift = $6::text::jsonb, stopped_lsn = $7::pg_lsn,
            synced_lsn = CASE WHEN $7::pg_lsn IS NULL THEN synced_lsn ELSE '0/0' END
      WHERE database = $1 AND sid = $2 AND source_table = $3`,
    [
      table.database,
      table.sid,
      table.sourceTable,
      textArray(state.sourceColumns),
      formatLsn(state.columnsLsn),
      state.drift.length > 0 ? JSON.stringify(state.drift) : null,
      state.stoppedLsn === null ? null : formatLsn(state.stoppedLsn),
    ],
  );
}

/**
 * Marks a table of a source to be copied again at its next start (synced LSN
 * 0/0, as a stop for column drift does); false when kvsz never copied it.
 */
export async function markTableForCopy(sql: Sql, table: TableKey): Promise<boolean> {
  const rows = await sql.unsafe(
    `UPDATE kvsz.synced_tables SET synced_lsn = '0/0'
      WHERE database = $1 AND sid = $2 AND source_table = $3 RETURNING 1`,
    [table.database, table.sid, table.sourceTable],
  );
  return rows.length > 0;
}

/**
 * Sets a source's stream position to `lsn` after a fresh slot's initial sync.
 * The commit LSN goes to 0/0: what the copies cover is told per table by
 * `kvsz.synced_tables`, and a commit exactly at the slot's start must stream.
 * Fenced as {@link writeProgress}.
 */
export async function resetProgress(sql: Sql, source: OwnedSource, lsn: string): Promise<void> {
  await sql.unsafe(
    `WITH owned AS (${ownedQuery(source, 4)})
     INSERT INTO kvsz.progress (database, sid, commit_lsn, end_lsn, commit_time)
     SELECT $1, $2, '0/0', $3::pg_lsn, NULL FROM owned
     ON CONFLICT (database, sid) DO UPDATE SET
       commit_lsn = excluded.commit_lsn, end_lsn = excluded.end_lsn, applied_at = now()`,
    [source.database, source.sid, lsn, ...ownedParams(source)],
  ).catch((e) => {
    throw ownershipError(e, source);
  });
}

/**
 * Marks tables no longer in the config: their synced LSN becomes 0/0, so if
 * they come back they are copied again with re-sync (merge) semantics.
 */
export async function markTablesRemoved(
  sql: Sql,
  source: SourceKey,
  configured: string[],
): Promise<void> {
  await sql.unsafe(
    `UPDATE kvsz.synced_tables SET synced_lsn = '0/0'
      WHERE database = $1 AND sid = $2 AND NOT (source_table = ANY($3::text[]))`,
    [source.database, source.sid, textArray(configured)],
  );
}
