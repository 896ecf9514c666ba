/** The logical replication slot of a source: inspect, create with an exported snapshot. */
import type { Sql } from "../pg/connect.ts";
import { parseLsn } from "../pg/lsn.ts";
import { quoteIdent } from "../pg/identifiers.ts";
import { textArrayLiteral } from "../pg/array_literal.ts";

/** What `pg_replication_slots` says about a slot. */
export interface SlotInfo {
  name: string;
  active: boolean;
  activePid: number | null;
  confirmedFlushLsn: bigint | null;
  /** `reserved`, `extended`, `unreserved`, `lost` (PG13+), or null. */
  walStatus: string | null;
  plugin: string | null;
  /** Synchronized to standbys (`failover`, PostgreSQL 17+; false before). */
  failover: boolean;
}

/** Reads a slot by name, or null when it does not exist. */
export async function readSlot(
  sql: Sql,
  name: string,
  major: number,
): Promise<SlotInfo | null> {
  const walStatus = major >= 13 ? "wal_status" : "NULL::text AS wal_status";
  const failover = major >= 17 ? "failover" : "false AS failover";
  const rows = await sql.unsafe(
    `SELECT slot_name, active, active_pid, confirmed_flush_lsn::text AS confirmed, ${walStatus},
            plugin, database, ${failover}
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
    failover: r.failover === true,
  };
}

/** The end of the source's WAL: its current LSN, or on a standby the last replayed one. */
export async function readWalEnd(sql: Sql): Promise<bigint> {
  const [row] = await sql.unsafe(
    `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                  ELSE pg_current_wal_lsn() END)::text AS lsn`,
  );
  return parseLsn(row.lsn);
}

/** What the source says of a slot's WAL, in bytes. */
export interface SlotLag {
  /** Source WAL not yet confirmed by kvsz: current LSN − `confirmed_flush_lsn`; null = unknown. */
  bytes: number | null;
  /** WAL the source keeps for the slot: current LSN − `restart_lsn`; null = unknown. */
  retainedBytes?: number | null;
  /** The server's current LSN when read (its replay LSN on a standby). */
  currentLsn?: bigint;
}

/** Reads the lag and retained WAL of slot `name`, or nulls when it does not exist. */
export async function readSlotLag(sql: Sql, name: string): Promise<SlotLag> {
  return (await readSlotLags(sql, [name])).get(name)!;
}

/**
 * Reads the lag and retained WAL of each slot of `names` in one query (slots
 * belong to the server: any database of it shows them all); nulls for a slot
 * that does not exist.
 */
export async function readSlotLags(sql: Sql, names: string[]): Promise<Map<string, SlotLag>> {
  const rows = await sql.unsafe(
    `SELECT s.slot_name AS name, pg_wal_lsn_diff(c.lsn, s.confirmed_flush_lsn)::int8 AS lag,
            pg_wal_lsn_diff(c.lsn, s.restart_lsn)::int8 AS retained, c.lsn::text AS current
       FROM pg_catalog.pg_replication_slots s,
            (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                         ELSE pg_current_wal_lsn() END AS lsn) c
      WHERE s.slot_name = ANY($1::text[])`,
    [textArrayLiteral(names)],
  );
  const num = (v: unknown) => v === null || v === undefined ? null : Math.max(0, Number(v));
  const lags = new Map<string, SlotLag>(
    names.map((n) => [n, { bytes: null, retainedBytes: null }]),
  );
  for (const r of rows) {
    lags.set(String(r.name), {
      bytes: num(r.lag),
      retainedBytes: num(r.retained),
      currentLsn: r.current === null ? undefined : parseLsn(r.current),
    });
  }
  return lags;
}

/** A freshly created slot with the snapshot it exported. */
export interface CreatedSlot {
  /** LSN from which the slot streams; the snapshot shows exactly the commits before it. */
  consistentPoint: bigint;
  /** Name to pass to `SET TRANSACTION SNAPSHOT` while the creating connection stays idle. */
  snapshotName: string;
}

/** Options of {@link createSlotWithSnapshot}. */
export interface CreateSlotOptions {
  /** The source's major version (the command's syntax depends on it). */
  major: number;
  /** Dropped when the connection ends (default false). */
  temporary?: boolean;
  /** Synchronized to standbys, so it survives a promotion (PostgreSQL 17+; default false). */
  failover?: boolean;
}

/**
 * Creates a pgoutput slot on a replication connection, exporting a snapshot.
 * The snapshot lives until that connection runs its next command: import it
 * everywhere it is needed first.
 */
export async function createSlotWithSnapshot(
  replication: Sql,
  name: string,
  opts: CreateSlotOptions,
): Promise<CreatedSlot> {
  const slot = `${quoteIdent(name)}${opts.temporary ? " TEMPORARY" : ""}`;
  const failover = opts.failover ? ", FAILOVER" : "";
  const command = opts.major >= 15
    ? `CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput (SNAPSHOT 'export'${failover})`
    : `CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput EXPORT_SNAPSHOT`;
  const [row] = await replication.unsafe(command);
  return { consistentPoint: parseLsn(row.consistent_point), snapshotName: row.snapshot_name };
}

/** Turns a slot's synchronization to standbys on or off (PostgreSQL 17+; the slot must be idle). */
export async function setSlotFailover(
  replication: Sql,
  name: string,
  failover: boolean,
): Promise<void> {
  await replication.unsafe(`ALTER_REPLICATION_SLOT ${quoteIdent(name)} (FAILOVER ${failover})`);
}

/** Drops an idle slot through a replication connection. */
export async function dropSlot(replication: Sql, name: string): Promise<void> {
  await replication.unsafe(`DROP_REPLICATION_SLOT ${quoteIdent(name)}`);
}

/** Opens a repeatable-read transaction on `conn` that sees the exported snapshot. */
export async function importSnapshot(conn: Sql, snapshotName: string): Promise<void> {
  await conn.unsafe(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
  await conn.unsafe(`SET TRANSACTION SNAPSHOT '${snapshotName.replaceAll("'", "''")}'`);
}
