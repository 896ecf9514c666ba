/**
 * Replication health of every configured source, read from the live servers:
 * the kvsz slot (lag, WAL retained), its walsender, its publication, and the
 * progress kvsz stored in the destination, with a summary (sources by state,
 * the most lagging, WAL retained). Reads only, and bounded: the slots and
 * walsenders of every source of a server come from one connection to it
 * (`pg_replication_slots` shows the whole server), each source's own database
 * is read {@link SOURCE_CONCURRENCY} at a time.
 */
import type { Config } from "../config/types.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { redactText, redactUrl } from "../pg/redact.ts";
import { partitionsPublicationName } from "../source/publication.ts";
import { type ColumnDrift, driftNotice } from "../apply/drift.ts";
import { readAllSyncedTables } from "../apply/progress.ts";
import { type OwnerRow, readOwners } from "../apply/ownership.ts";
import { intArray, textArray } from "../apply/text_array.ts";
import { describeUrl } from "../pg/describe.ts";
import { humanBytes } from "./human_units.ts";
import { mapBounded } from "../preflight/bounded.ts";
import {
  type ConfiguredSource,
  configuredSources,
  groupByServer,
  SOURCE_CONCURRENCY,
} from "../preflight/servers.ts";
import { serverOf } from "../pg/conninfo.ts";

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

/**
 * Where a source stands, the first that applies: `erroring` (unreachable, a
 * read failed, its slot lost WAL, or a table is stopped for column drift),
 * `not_started` (no slot yet), `copying` (a mapped table is not copied yet),
 * `streaming` (a walsender streams the slot), else `stopped` (nothing streams
 * the slot: kvsz is not running for it, or is reconnecting).
 */
export type SourceState = "streaming" | "copying" | "erroring" | "stopped" | "not_started";

/** Every {@link SourceState}, in the order the summary lists them. */
export const SOURCE_STATES: SourceState[] = [
  "streaming",
  "copying",
  "erroring",
  "stopped",
  "not_started",
];

/** Everything known about one source URL. */
export interface SourceStatus {
  database: string;
  sid: string;
  /** `host:port/database`. */
  endpoint: string;
  /** `host:port` of its server (see `serverOf`). */
  server: string;
  state: SourceState;
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
  /** The kvsz process that last claimed the source (`kvsz.owners`); null when none did. */
  owner: Omit<OwnerRow, "database" | "sid"> | null;
  /** Tables with column drift or stopped for it. */
  drift: TableDriftStatus[];
  /** Mapped tables, and how many of them the destination records as copied. */
  copy: { tables: number; copied: number };
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

/** A source in the summary's most-lagging list. */
export interface LaggingSource {
  database: string;
  sid: string;
  endpoint: string;
  state: SourceState;
  lagBytes: number | null;
  lagSeconds: number | null;
}

/** The source whose slot retains the most WAL. */
export interface RetainingSource {
  database: string;
  sid: string;
  endpoint: string;
  retainedBytes: number;
}

/** The report in a few lines: what a person reads first at a thousand sources. */
export interface StatusSummary {
  /** Sources reported. */
  sources: number;
  /** Distinct source servers (host:port) among them. */
  servers: number;
  /** Sources in each state. */
  byState: Record<SourceState, number>;
  /** At most {@link MOST_LAGGING} sources behind, most bytes not yet confirmed first. */
  mostLagging: LaggingSource[];
  /**
   * WAL kept for kvsz's slots: the slots of one server share its WAL, so per
   * server the most any of its slots retains, summed over the servers.
   */
  walRetainedBytes: number;
  /** The slot retaining the most; null when no slot exists. */
  worstRetained: RetainingSource | null;
}

/** How many sources the summary's most-lagging list holds. */
export const MOST_LAGGING = 10;

/** The whole `kvsz status` report. */
export interface StatusReport {
  summary: StatusSummary;
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

/**
 * Reads the status of every source and the destination's progress: each
 * source's database {@link SOURCE_CONCURRENCY} at a time, then the slots and
 * walsenders of each server through one connection to it.
 */
export async function collectStatus(
  config: Config,
  opts: StatusOptions = {},
): Promise<StatusReport> {
  const urls = [
    config.destination.url,
    ...config.databases.flatMap((d) => d.urls.map((u) => u.url)),
  ];
  const configured = configuredSources(config);
  const readOpts = { ...opts, secrets: urls };
  const [destination, sources] = await Promise.all([
    readDestination(config, opts, urls),
    mapBounded(configured, SOURCE_CONCURRENCY, (c) => readSource(c, readOpts)),
  ]);
  const servers = groupByServer(
    configured.map((c, i) => ({ c, status: sources[i] })),
    (s) => s.c.source.url,
  );
  await mapBounded(
    [...servers.values()],
    SOURCE_CONCURRENCY,
    (group) => readServer(group, readOpts),
  );
  const warnings: string[] = [];
  for (const [i, s] of sources.entries()) {
    const key = `${s.database}\u0000${s.sid}`;
    const p = destination.progress.get(key) ?? null;
    s.progress = p;
    const o = destination.owners.get(key);
    s.owner = o ? { owner: o.owner, since: o.since, connected: o.connected } : null;
    s.drift = destination.drift.get(key) ?? [];
    const tables = configured[i].db.tables;
    const copied = destination.copied.get(key);
    s.copy = { tables: tables.length, copied: tables.filter((t) => copied?.has(t.source)).length };
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
    s.state = sourceState(s);
    for (const w of s.warnings) warnings.push(`${s.database} sid ${s.sid}: ${w}`);
  }
  const { progress: _, drift: __, copied: ___, owners: ____, ...dest } = destination;
  return { summary: summarize(sources), sources, destination: dest, warnings };
}

/** The {@link SourceState} of a source whose slot, progress and drift are known. */
function sourceState(s: SourceStatus): SourceState {
  if (
    !s.reachable || s.error !== null || s.slot?.walStatus === "lost" ||
    s.drift.some((t) => t.stoppedLsn !== null)
  ) {
    return "erroring";
  }
  if (!s.slot?.exists) return "not_started";
  if (s.copy.copied < s.copy.tables) return "copying";
  return s.slot.active ? "streaming" : "stopped";
}

/** Sums up `sources`: counts by state, the most lagging, WAL retained. */
export function summarize(sources: SourceStatus[]): StatusSummary {
  const byState = Object.fromEntries(SOURCE_STATES.map((k) => [k, 0])) as Record<
    SourceState,
    number
  >;
  for (const s of sources) byState[s.state]++;
  const behind = (s: SourceStatus) => (s.slot?.lagBytes ?? 0) > 0 || (s.lagSeconds ?? 0) > 0;
  const mostLagging = sources.filter(behind)
    .sort((a, b) =>
      (b.slot?.lagBytes ?? 0) - (a.slot?.lagBytes ?? 0) || (b.lagSeconds ?? 0) - (a.lagSeconds ?? 0)
    )
    .slice(0, MOST_LAGGING)
    .map((s) => ({
      database: s.database,
      sid: s.sid,
      endpoint: s.endpoint,
      state: s.state,
      lagBytes: s.slot?.lagBytes ?? null,
      lagSeconds: s.lagSeconds,
    }));
  const perServer = new Map<string, number>();
  let worstRetained: RetainingSource | null = null;
  for (const s of sources) {
    const bytes = s.slot?.retainedBytes;
    if (bytes === null || bytes === undefined) continue;
    perServer.set(s.server, Math.max(perServer.get(s.server) ?? 0, bytes));
    if (!worstRetained || bytes > worstRetained.retainedBytes) {
      worstRetained = {
        database: s.database,
        sid: s.sid,
        endpoint: s.endpoint,
        retainedBytes: bytes,
      };
    }
  }
  return {
    sources: sources.length,
    servers: new Set(sources.map((s) => s.server)).size,
    byState,
    mostLagging,
    walRetainedBytes: [...perServer.values()].reduce((a, b) => a + b, 0),
    worstRetained,
  };
}

/** Options of {@link readSource} and {@link readServer}. */
interface ReadSourceOptions extends StatusOptions {
  /** Connection URLs whose passwords are removed from error messages. */
  secrets: string[];
}

/** Reads what lives in the source's own database (its publication); the slot comes later. */
async function readSource(
  configured: ConfiguredSource,
  opts: ReadSourceOptions,
): Promise<SourceStatus> {
  const { db: { database }, source: { sid, url } } = configured;
  const status: SourceStatus = {
    database,
    sid,
    endpoint: describeUrl(url),
    server: serverOf(url),
    state: "erroring",
    url: redactUrl(url),
    reachable: false,
    error: null,
    serverVersion: null,
    slot: null,
    replication: null,
    publication: null,
    progress: null,
    owner: null,
    drift: [],
    copy: { tables: configured.db.tables.length, copied: 0 },
    lagSeconds: null,
    warnings: [],
  };
  const sql = open(url, opts);
  try {
    await sql.unsafe(`SELECT 1`);
    status.reachable = true;
    status.publication = await readPublication(sql, kvszObjectName(database, sid));
  } catch (e) {
    status.error = errorText(e, opts.secrets);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
  return status;
}

/** A source of a server, with the status {@link readSource} started. */
interface ServerSource {
  c: ConfiguredSource;
  status: SourceStatus;
}

/**
 * Reads the slot and walsender of every source of one server through one
 * connection (made with the URL of its first reachable source; none: nothing
 * to read). A failed read is each source's error.
 */
async function readServer(sources: ServerSource[], opts: ReadSourceOptions): Promise<void> {
  const reachable = sources.find((s) => s.status.reachable);
  if (!reachable) return;
  const sql = open(reachable.c.source.url, opts);
  try {
    const [srv] = await sql.unsafe(
      `SELECT current_setting('server_version_num')::int AS version_num,
              (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                    ELSE pg_current_wal_lsn() END)::text AS current_lsn`,
    );
    const server = { currentLsn: String(srv.current_lsn), versionNum: Number(srv.version_num) };
    const names = sources.map(({ status: s }) => kvszObjectName(s.database, s.sid));
    const slots = await readSlots(sql, names, server);
    const pids = [...slots.values()].flatMap((s) => s.activePid ?? []);
    const walsenders = pids.length > 0 ? await readReplication(sql, pids) : new Map();
    for (const [i, { status }] of sources.entries()) {
      if (!status.reachable) continue;
      status.serverVersion = server.versionNum;
      status.slot = slots.get(names[i]) ?? missingSlot(names[i], server.currentLsn);
      const pid = status.slot.activePid;
      status.replication = pid === null ? null : walsenders.get(pid) ?? null;
    }
  } catch (e) {
    const error = errorText(e, opts.secrets);
    for (const { status } of sources) if (status.reachable) status.error ??= error;
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** The source server's state slots are read against. */
interface ServerState {
  /** Its current WAL LSN (the replayed one on a standby). */
  currentLsn: string;
  /** Its `server_version_num`. */
  versionNum: number;
}

/** The kvsz slots among `names` on the server, by name. */
async function readSlots(
  sql: Sql,
  names: string[],
  server: ServerState,
): Promise<Map<string, SlotStatus>> {
  const { currentLsn, versionNum } = server;
  const pg13 = versionNum >= 130000;
  const rows = await sql.unsafe(
    `SELECT s.slot_name, s.active, s.active_pid, s.restart_lsn::text AS restart_lsn,
            s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
            pg_wal_lsn_diff($2::pg_lsn, s.restart_lsn)::int8 AS retained,
            pg_wal_lsn_diff($2::pg_lsn, s.confirmed_flush_lsn)::int8 AS lag,
            ${pg13 ? "s.wal_status, s.safe_wal_size::int8" : "NULL::text AS wal_status, NULL::int8"}
              AS safe_wal_size
       FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = ANY($1::text[])`,
    [textArray(names), currentLsn],
  );
  const clamp = (v: unknown) => {
    const n = num(v);
    return n === null ? null : Math.max(0, n);
  };
  return new Map(rows.map((r) => [r.slot_name as string, {
    name: r.slot_name,
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
  }]));
}

/** A slot that does not exist (yet), read at `currentLsn`. */
function missingSlot(name: string, currentLsn: string): SlotStatus {
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

/** The walsenders with process ids `pids`, by pid. */
async function readReplication(
  sql: Sql,
  pids: number[],
): Promise<Map<number, ReplicationStatus>> {
  const rows = await sql.unsafe(
    `SELECT pid, state, sent_lsn::text AS sent_lsn, write_lsn::text AS write_lsn,
            flush_lsn::text AS flush_lsn, replay_lsn::text AS replay_lsn,
            extract(epoch FROM write_lag)::float8 AS write_lag,
            extract(epoch FROM flush_lag)::float8 AS flush_lag,
            extract(epoch FROM replay_lag)::float8 AS replay_lag
       FROM pg_catalog.pg_stat_replication WHERE pid = ANY($1::int[])`,
    [intArray(pids)],
  );
  return new Map(rows.map((r) => [Number(r.pid), {
    pid: Number(r.pid),
    state: r.state ?? null,
    sentLsn: r.sent_lsn ?? null,
    writeLsn: r.write_lsn ?? null,
    flushLsn: r.flush_lsn ?? null,
    replayLsn: r.replay_lsn ?? null,
    writeLagSeconds: num(r.write_lag),
    flushLagSeconds: num(r.flush_lag),
    replayLagSeconds: num(r.replay_lag),
  }]));
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
    /** The tables whose copy is recorded, by database and sid. */
    copied: Map<string, Set<string>>;
    /** Who claimed each source, by database and sid. */
    owners: Map<string, OwnerRow>;
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
    copied: new Map<string, Set<string>>(),
    owners: new Map<string, OwnerRow>(),
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
    await readCopied(sql, out.copied);
    for (const o of await readOwners(sql)) out.owners.set(`${o.database}\u0000${o.sid}`, o);
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

/** Reads the tables whose initial copy is recorded into `into`, by database and sid. */
async function readCopied(sql: Sql, into: Map<string, Set<string>>): Promise<void> {
  const [{ present }] = await sql.unsafe(
    `SELECT to_regclass('kvsz.synced_tables') IS NOT NULL AS present`,
  );
  if (!present) return;
  const rows = await sql.unsafe(
    `SELECT database, sid, source_table FROM kvsz.synced_tables WHERE synced_lsn <> '0/0'`,
  );
  for (const r of rows) {
    const key = `${r.database}\u0000${r.sid}`;
    const tables = into.get(key) ?? new Set<string>();
    tables.add(r.source_table);
    into.set(key, tables);
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
