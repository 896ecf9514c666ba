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
