/**
 * Replication health of every configured source, read from the live servers:
 * the kvsz slot (lag, WAL retained), its walsender, its publication, and the
 * progress kvsz stored in the destination. Reads only.
 */
import type { Config, SourceUrl } from "../config/types.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { redactText, redactUrl } from "../pg/redact.ts";
import { partitionsPublicationName } from "../source/publication.ts";
import { type ColumnDrift, driftNotice } from "../apply/drift.ts";
import { readAllSyncedTables } from "../apply/progress.ts";
import { describeUrl } from "../pg/describe.ts";
import { humanBytes } from "./human_units.ts";

/** The kvsz replication slot of a source. */
export interface SlotStatus {
  name: string;
  exists: boolean;
  active: boolean | null;
  activePid: number | null;
  restartLsn: string | null;
  confirmedFlushLsn: string | null;
  /** The server's current WAL position (replay position on a standby). */
  currentLsn: string;
  /** WAL kept for the slot: current LSN − restart_lsn. */
  retainedBytes: number | null;
  /** Not yet confirmed by kvsz: current LSN − confirmed_flush_lsn. */
  lagBytes: number | null;
  /** `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL 13+, else null). */
  walStatus: string | null;
  /** Bytes that can still be written before the slot is in danger of losing WAL (PG13+). */
  safeWalSize: number | null;
}

/** The walsender streaming the slot (`pg_stat_replication`). */
export interface ReplicationStatus {
  pid: number;
  state: string | null;
  sentLsn: string | null;
  writeLsn: string | null;
  flushLsn: string | null;
  replayLsn: string | null;
  writeLagSeconds: number | null;
  flushLagSeconds: number | null;
  replayLagSeconds: number | null;
}

/** The kvsz publication of a source and the tables it publishes. */
export interface PublicationStatus {
  name: string;
  exists: boolean;
  /** `schema.table` as listed by `pg_publication_tables`. */
  tables: string[];
}

/** What the destination's `kvsz.progress` says about a source. */
export interface ProgressStatus {
  commitLsn: string;
  endLsn: string;
  commitTime: string | null;
  appliedAt: string | null;
  /** Destination `now() - commit_time`, in seconds. */
  secondsSinceCommit: number | null;
  rowsClone: number;
  rowsAppend: number;
  rowsHistory: number;
  anomalies: number;
}

/** A table with column drift, as the running kvsz recorded it in `kvsz.synced_tables`. */
export interface TableDriftStatus {
  /** The table as the config names it. */
  sourceTable: string;
  /** Destination table, `schema.name`. */
  target: string;
  columns: ColumnDrift[];
  /** Where the table stopped for the drift (its changes wait for the fix); null while it streams. */
  stoppedLsn: string | null;
}

/** Everything known about one source URL. */
export interface SourceStatus {
  database: string;
  sid: string;
  /** `host:port/database`. */
  endpoint: string;
  /** The URL with its password masked. */
  url: string;
  reachable: boolean;
  /** Connection or query error (passwords removed), else null. */
  error: string | null;
  serverVersion: number | null;
  slot: SlotStatus | null;
  replication: ReplicationStatus | null;
  publication: PublicationStatus | null;
  progress: ProgressStatus | null;
  /** Tables with column drift or stopped for it. */
  drift: TableDriftStatus[];
  /**
   * Seconds the destination is behind: time since the last applied commit
   * while the slot has unconfirmed WAL, 0 when it has none; null when unknown.
   */
  lagSeconds: number | null;
  warnings: string[];
}

/** What `status` could read from the destination. */
export interface DestinationStatus {
  endpoint: string;
  url: string;
  reachable: boolean;
  error: string | null;
  /** True when `kvsz.progress` exists. */
  progressTable: boolean;
}

/** The whole `kvsz status` report. */
export interface StatusReport {
  sources: SourceStatus[];
  destination: DestinationStatus;
  /** Every source's warnings, each prefixed with the source. */
  warnings: string[];
}

/** Options for {@link collectStatus}. */
export interface StatusOptions {
  /** Seconds to wait for each connection (default 3). */
  connectTimeout?: number;
  /** Milliseconds each query may run (default 5000). */
  statementTimeoutMs?: number;
}

const num = (v: unknown): number | null => v === null || v === undefined ? null : Number(v);

/** Reads the status of every source (in parallel) and the destination's progress. */
export async function collectStatus(
  config: Config,
  opts: StatusOptions = {},
): Promise<StatusReport> {
  const urls = [
    config.destination.url,
    ...config.databases.flatMap((d) => d.urls.map((u) => u.url)),
  ];
  const [destination, sources] = await Promise.all([
    readDestination(config, opts, urls),
    Promise.all(
      config.databases.flatMap((db) =>
        db.urls.map((u) => readSource(db.database, u, { ...opts, secrets: urls }))
      ),
    ),
  ]);
  const warnings: string[] = [];
  for (const s of sources) {
    const p = destination.progress.get(`${s.database}\u0000${s.sid}`) ?? null;
    s.progress = p;
    s.drift = destination.drift.get(`${s.database}\u0000${s.sid}`) ?? [];
    const tables = config.databases.find((d) => d.database === s.database)?.tables ?? [];
    for (const t of s.drift) {
      const mapping = tables.find((m) => m.source === t.sourceTable);
      const notice = driftNotice(
        {
          source: mapping ? `${mapping.sourceSchema}.${mapping.sourceName}` : t.sourceTable,
          target: t.target,
        },
        t.columns,
        { stoppedLsn: t.stoppedLsn, policy: mapping?.onColumnDrift ?? "stop" },
      );
      if (notice) s.warnings.push(`${notice.problem} — fix: ${notice.fix}`);
    }
    if (p && s.slot?.exists) {
      s.lagSeconds = (s.slot.lagBytes ?? 0) > 0 ? Math.max(0, p.secondsSinceCommit ?? 0) : 0;
    }
    const retained = s.slot?.retainedBytes ?? 0;
    if (s.slot?.exists && retained > config.retainedWalWarnBytes) {
      s.warnings.push(
        `slot ${s.slot.name} retains ${
          humanBytes(retained)
        } of WAL, more than retainedWalWarnBytes (${
          humanBytes(config.retainedWalWarnBytes)
        }): the source keeps WAL until kvsz confirms it; run kvsz, or drop the slot if this source is gone`,
      );
    }
    if (s.slot?.walStatus === "lost") {
      s.warnings.push(
        `slot ${s.slot.name} has lost WAL it needed: this source must be synced again (drop the slot and restart kvsz)`,
      );
    } else if (s.slot?.walStatus === "unreserved") {
      s.warnings.push(
        `slot ${s.slot.name} is about to lose WAL (wal_status unreserved): the next checkpoint may remove it`,
      );
    }
    for (const w of s.warnings) warnings.push(`${s.database} sid ${s.sid}: ${w}`);
  }
  const { progress: _, drift: __, ...dest } = destination;
  return { sources, destination: dest, warnings };
}

/** Options of {@link readSource}. */
interface ReadSourceOptions extends StatusOptions {
  /** Connection URLs whose passwords are removed from error messages. */
  secrets: string[];
}

async function readSource(
  database: string,
  source: SourceUrl,
  opts: ReadSourceOptions,
): Promise<SourceStatus> {
  const { sid, url } = source;
  const status: SourceStatus = {
    database,
    sid,
    endpoint: describeUrl(url),
    url: redactUrl(url),
    reachable: false,
    error: null,
    serverVersion: null,
    slot: null,
    replication: null,
    publication: null,
    progress: null,
    drift: [],
    lagSeconds: null,
    warnings: [],
  };
  const sql = open(url, opts);
  try {
    const [srv] = await sql.unsafe(
      `SELECT current_setting('server_version_num')::int AS version_num,
              (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                    ELSE pg_current_wal_lsn() END)::text AS current_lsn`,
    );
    status.reachable = true;
    status.serverVersion = Number(srv.version_num);
    const name = kvszObjectName(database, sid);
    status.slot = await readSlot(sql, name, {
      currentLsn: String(srv.current_lsn),
      versionNum: status.serverVersion,
    });
    if (status.slot.activePid !== null) {
      status.replication = await readReplication(sql, status.slot.activePid);
    }
    status.publication = await readPublication(sql, name);
  } catch (e) {
    status.error = errorText(e, opts.secrets);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
  return status;
}

/** The source server's state a slot is read against. */
interface ServerState {
  /** Its current WAL LSN (the replayed one on a standby). */
  currentLsn: string;
  /** Its `server_version_num`. */
  versionNum: number;
}

async function readSlot(sql: Sql, name: string, server: ServerState): Promise<SlotStatus> {
  const { currentLsn, versionNum } = server;
  const pg13 = versionNum >= 130000;
  const [r] = await sql.unsafe(
    `SELECT s.active, s.active_pid, s.restart_lsn::text AS restart_lsn,
            s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
            pg_wal_lsn_diff($2::pg_lsn, s.restart_lsn)::int8 AS retained,
            pg_wal_lsn_diff($2::pg_lsn, s.confirmed_flush_lsn)::int8 AS lag,
            ${pg13 ? "s.wal_status, s.safe_wal_size::int8" : "NULL::text AS wal_status, NULL::int8"}
              AS safe_wal_size
       FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1`,
    [name, currentLsn],
  );
  if (!r) {
    return {
      name,
      exists: false,
      active: null,
      activePid: null,
      restartLsn: null,
      confirmedFlushLsn: null,
      currentLsn,
      retainedBytes: null,
      lagBytes: null,
      walStatus: null,
      safeWalSize: null,
    };
  }
  const clamp = (v: unknown) => {
    const n = num(v);
    return n === null ? null : Math.max(0, n);
  };
  return {
    name,
    exists: true,
    active: r.active,
    activePid: num(r.active_pid),
    restartLsn: r.restart_lsn ?? null,
    confirmedFlushLsn: r.confirmed_flush_lsn ?? null,
    currentLsn,
    retainedBytes: clamp(r.retained),
    lagBytes: clamp(r.lag),
    walStatus: r.wal_status ?? null,
    safeWalSize: num(r.safe_wal_size),
  };
}

async function readReplication(sql: Sql, pid: number): Promise<ReplicationStatus | null> {
  const [r] = await sql.unsafe(
    `SELECT pid, state, sent_lsn::text AS sent_lsn, write_lsn::text AS write_lsn,
            flush_lsn::text AS flush_lsn, replay_lsn::text AS replay_lsn,
            extract(epoch FROM write_lag)::float8 AS write_lag,
            extract(epoch FROM flush_lag)::float8 AS flush_lag,
            extract(epoch FROM replay_lag)::float8 AS replay_lag
       FROM pg_catalog.pg_stat_replication WHERE pid = $1`,
    [pid],
  );
  if (!r) return null;
  return {
    pid: Number(r.pid),
    state: r.state ?? null,
    sentLsn: r.sent_lsn ?? null,
    writeLsn: r.write_lsn ?? null,
    flushLsn: r.flush_lsn ?? null,
    replayLsn: r.replay_lsn ?? null,
    writeLagSeconds: num(r.write_lag),
    flushLagSeconds: num(r.flush_lag),
    replayLagSeconds: num(r.replay_lag),
  };
}

async function readPublication(sql: Sql, name: string): Promise<PublicationStatus> {
  const [p] = await sql.unsafe(`SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1`, [
    name,
  ]);
  if (!p) return { name, exists: false, tables: [] };
  // With the partitions publication's leaves (partitions_regex on a partitioned table).
  const rows = await sql.unsafe(
    `SELECT t FROM (SELECT DISTINCT schemaname || '.' || tablename AS t
                      FROM pg_catalog.pg_publication_tables WHERE pubname IN ($1, $2)) p
      ORDER BY t COLLATE "C"`,
    [name, partitionsPublicationName(name)],
  );
  return { name, exists: true, tables: rows.map((r) => String(r.t)) };
}

async function readDestination(
  config: Config,
  opts: StatusOptions,
  secrets: string[],
): Promise<
  DestinationStatus & {
    progress: Map<string, ProgressStatus>;
    drift: Map<string, TableDriftStatus[]>;
  }
> {
  const url = config.destination.url;
  const out = {
    endpoint: describeUrl(url),
    url: redactUrl(url),
    reachable: false,
    error: null as string | null,
    progressTable: false,
    progress: new Map<string, ProgressStatus>(),
    drift: new Map<string, TableDriftStatus[]>(),
  };
  const sql = open(url, opts);
  try {
    const [r] = await sql.unsafe(
      `SELECT to_regclass('kvsz.progress') IS NOT NULL AS present`,
    );
    out.reachable = true;
    out.progressTable = r.present;
    if (!r.present) return out;
    const rows = await sql.unsafe(
      `SELECT database, sid, commit_lsn::text AS commit_lsn, end_lsn::text AS end_lsn,
              commit_time::text AS commit_time, applied_at::text AS applied_at,
              extract(epoch FROM now() - commit_time)::float8 AS since_commit,
              rows_clone::int8 AS rows_clone, rows_append::int8 AS rows_append,
              rows_history::int8 AS rows_history, anomalies::int8 AS anomalies
         FROM kvsz.progress`,
    );
    for (const p of rows) {
      out.progress.set(`${p.database}\u0000${p.sid}`, {
        commitLsn: p.commit_lsn,
        endLsn: p.end_lsn,
        commitTime: p.commit_time ?? null,
        appliedAt: p.applied_at ?? null,
        secondsSinceCommit: num(p.since_commit),
        rowsClone: Number(p.rows_clone ?? 0),
        rowsAppend: Number(p.rows_append ?? 0),
        rowsHistory: Number(p.rows_history ?? 0),
        anomalies: Number(p.anomalies ?? 0),
      });
    }
    await readDrift(sql, config.destination.schema, out.drift);
  } catch (e) {
    out.error = errorText(e, secrets);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
  return out;
}

/** Reads the tables with column drift or stopped for it into `into`, by database and sid. */
async function readDrift(
  sql: Sql,
  schema: string,
  into: Map<string, TableDriftStatus[]>,
): Promise<void> {
  for (const t of await readAllSyncedTables(sql)) {
    if (t.drift.length === 0 && t.stoppedLsn === null) continue;
    const key = `${t.database}\u0000${t.sid}`;
    into.set(key, [...into.get(key) ?? [], {
      sourceTable: t.sourceTable,
      target: `${schema}.${t.target}`,
      columns: t.drift,
      stoppedLsn: t.stoppedLsn,
    }]);
  }
}

function open(url: string, opts: StatusOptions): Sql {
  return connect(url, {
    connectTimeout: opts.connectTimeout ?? 3,
    params: { statement_timeout: String(opts.statementTimeoutMs ?? 5000) },
  });
}

function errorText(e: unknown, secrets: string[]): string {
  const message = (e as Error)?.message ?? String(e);
  return redactText(message, secrets).replace(/\s+/g, " ").trim();
}
