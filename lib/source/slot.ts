/** The logical replication slot of a source: inspect, create with an exported snapshot. */
import type { Sql } from "../pg/connect.ts";
import { parseLsn } from "../pg/lsn.ts";
import { quoteIdent } from "../pg/identifiers.ts";

/** What `pg_replication_slots` says about a slot. */
export interface SlotInfo {
  name: string;
  active: boolean;
  activePid: number | null;
  confirmedFlushLsn: bigint | null;
  /** `reserved`, `extended`, `unreserved`, `lost` (PG13+), or null. */
  walStatus: string | null;
  plugin: string | null;
}

/** Reads a slot by name, or null when it does not exist. */
export async function readSlot(
  sql: Sql,
  name: string,
  major: number,
): Promise<SlotInfo | null> {
  const walStatus = major >= 13 ? "wal_status" : "NULL::text AS wal_status";
  const rows = await sql.unsafe(
    `SELECT slot_name, active, active_pid, confirmed_flush_lsn::text AS confirmed, ${walStatus},
            plugin, database
       FROM pg_replication_slots WHERE slot_name = $1`,
    [name],
  );
  if (rows.length === 0) return null;
  const r = rows[0];
  return {
    name: r.slot_name,
    active: r.active,
    activePid: r.active_pid,
    confirmedFlushLsn: r.confirmed ? parseLsn(r.confirmed) : null,
    walStatus: r.wal_status,
    plugin: r.plugin,
  };
}

/** What the source says of a slot's WAL, in bytes. */
export interface SlotLag {
  /** Source WAL not yet confirmed by kvsz: current LSN − `confirmed_flush_lsn`; null = unknown. */
  bytes: number | null;
  /** WAL the source keeps for the slot: current LSN − `restart_lsn`; null = unknown. */
  retainedBytes?: number | null;
}

/** Reads the lag and retained WAL of slot `name`, or nulls when it does not exist. */
export async function readSlotLag(sql: Sql, name: string): Promise<SlotLag> {
  const rows = await sql.unsafe(
    `SELECT pg_wal_lsn_diff(c.lsn, s.confirmed_flush_lsn)::int8 AS lag,
            pg_wal_lsn_diff(c.lsn, s.restart_lsn)::int8 AS retained
       FROM pg_catalog.pg_replication_slots s,
            (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                         ELSE pg_current_wal_lsn() END AS lsn) c
      WHERE s.slot_name = $1`,
    [name],
  );
  if (rows.length === 0) return { bytes: null, retainedBytes: null };
  const num = (v: unknown) => v === null || v === undefined ? null : Math.max(0, Number(v));
  return { bytes: num(rows[0].lag), retainedBytes: num(rows[0].retained) };
}

/** A freshly created slot with the snapshot it exported. */
export interface CreatedSlot {
  /** LSN from which the slot streams; the snapshot shows exactly the commits before it. */
  consistentPoint: bigint;
  /** Name to pass to `SET TRANSACTION SNAPSHOT` while the creating connection stays idle. */
  snapshotName: string;
}

/**
 * Creates a pgoutput slot on a replication connection, exporting a snapshot.
 * The snapshot lives until that connection runs its next command: import it
 * everywhere it is needed first.
 */
export async function createSlotWithSnapshot(
  replication: Sql,
  name: string,
  major: number,
  temporary = false,
): Promise<CreatedSlot> {
  const temp = temporary ? " TEMPORARY" : "";
  const command = major >= 15
    ? `CREATE_REPLICATION_SLOT ${quoteIdent(name)}${temp} LOGICAL pgoutput (SNAPSHOT 'export')`
    : `CREATE_REPLICATION_SLOT ${quoteIdent(name)}${temp} LOGICAL pgoutput EXPORT_SNAPSHOT`;
  const [row] = await replication.unsafe(command);
  return { consistentPoint: parseLsn(row.consistent_point), snapshotName: row.snapshot_name };
}

/** Opens a repeatable-read transaction on `conn` that sees the exported snapshot. */
export async function importSnapshot(conn: Sql, snapshotName: string): Promise<void> {
  await conn.unsafe(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
  await conn.unsafe(`SET TRANSACTION SNAPSHOT '${snapshotName.replaceAll("'", "''")}'`);
}
