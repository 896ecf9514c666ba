/** The validated configuration kvsz runs with (defaults applied, `${ENV}` expanded). */
import { type LogConfig } from "../log.ts";
import type { TransformSpec } from "../transform/table_transform.ts";
import type { Problem } from "./errors.ts";

/** How a table's changes are written to its target. */
export type TableMode = "clone" | "append" | "history";

/**
 * What happens to a table when a target column it filled loses its source
 * column (dropped or renamed at the source): `stop` writing the table until
 * the target is fixed (then it is copied again), or `continue` as
 * kuvasz-streamer does (the column gets NULL in new rows, stale values in
 * updated ones). Either way the drift is logged, counted and shown by `status`.
 */
export type ColumnDriftPolicy = "stop" | "continue";

/** One mapped source table of a database. */
export interface TableMapping {
  /** Source table as written in the config key, e.g. `t1` or `private.t8`. */
  source: string;
  /** Source schema (default `public`). */
  sourceSchema: string;
  /** Source table name without schema. */
  sourceName: string;
  /** Target table name in the destination schema (default: the source name). */
  target: string;
  /** Schema of the target; absent: `destination.schema` (see {@link targetSchemaOf}). */
  targetSchema?: string;
  /** Write mode (default `clone`). */
  mode: TableMode;
  /** When set, leaf partitions whose names match are published and mapped onto the target. */
  partitionsRegex?: string;
  /** The table's `on_column_drift`, else `apply.on_column_drift`. */
  onColumnDrift: ColumnDriftPolicy;
  /** The table's `filter` and `set` (CEL) with `on_error`; absent when it has neither. */
  transform?: TransformConfig;
}

/** A table's `filter` and `set`, with where each was written (for type errors found at start). */
export interface TransformConfig extends TransformSpec {
  /** Place of `filter` and of each `set.<column>` in the config or map file. */
  places: ReadonlyMap<string, Omit<Problem, "message">>;
}

/** One source connection of a database (kuvasz-streamer's `urls[]`). */
export interface SourceUrl {
  /** Connection URL, password included; never print it (use `redactUrl`). */
  url: string;
  /** Source id stored in the target's `sid` column, as text. */
  sid: string;
  /**
   * Create the slot synchronized to standbys (PostgreSQL 17+), so that after a
   * promotion kvsz resumes from the standby's copy of it.
   */
  failover: boolean;
  /** Set for a source found by a `discover` block (never for one listed in `urls`). */
  discovered?: DiscoveredDatabase;
}

/** Where a discovered source came from. */
export interface DiscoveredDatabase {
  /** The database's name on its server. */
  name: string;
  /** The URL its server's databases are listed through (`discover.url`, password included). */
  serverUrl: string;
}

/**
 * A `discover` block: every database of one server whose whole name matches
 * `pattern` is a source of its entry, its URL being `url` with that database.
 */
export interface DiscoverConfig {
  /**
   * The server, password and parameters included; kvsz lists the databases
   * through the database it names (`postgres` when it names none).
   */
  url: string;
  /** A regular expression (JavaScript syntax) matched against the whole database name. */
  pattern: string;
  /** How the sid is made from the name: `$0` the whole name, `$1`/`${1}` a group, `${name}` a named one. */
  sid: string;
  /** Seconds between listings of the server. */
  intervalSeconds: number;
}

/** Which source a record is about. */
export interface SourceKey {
  /** `DatabaseMapping.database`. */
  database: string;
  /** The source's `sid`. */
  sid: string;
}

/** Which table of which source a record is about. */
export interface TableKey extends SourceKey {
  /** `TableMapping.source`. */
  sourceTable: string;
}

/** One source database with its connections and table map (kuvasz-streamer's map entry). */
export interface DatabaseMapping {
  database: string;
  urls: SourceUrl[];
  tables: TableMapping[];
  /**
   * Every table of the source besides `tables` (an upgrade's natural map): each
   * table not excluded goes to the same schema and name at the destination.
   */
  allTables?: AllTablesConfig;
  /** Sources found while running, besides `urls` (see {@link DiscoverConfig}). */
  discover?: DiscoverConfig;
}

/** Where everything is written. */
export interface DestinationConfig {
  url: string;
  /** Schema of the target tables (default `public`). */
  schema: string;
  /**
   * Write as a replica (`session_replication_role = replica`), as a
   * subscription does: the targets' triggers and foreign keys do not fire.
   */
  replicaRole: boolean;
  /**
   * `kvsz run` creates what the targets need and the destination lacks, from
   * the source's catalog (lib/schema/): tables at once, their indexes,
   * constraints and triggers once the sources are copied.
   */
  createTables: boolean;
  /**
   * kvsz's destination sessions set `default_transaction_read_only = off`:
   * they write into a database fenced by `kvsz switchover` (the reverse
   * stream of `switchover --reverse`), its other clients staying fenced.
   */
  overrideReadOnly: boolean;
}

/** Streaming apply knobs. */
export interface ApplyConfig {
  /** Max source changes grouped into one destination transaction (a source transaction is never split). */
  batchSize: number;
  /** Max milliseconds a change waits before its destination commit. */
  commitIntervalMs: number;
  /** Max changes buffered between reader and applier before the source is paused. */
  queueSize: number;
  /** Receive large transactions while they run (PostgreSQL 14+ sources), spooled until commit. */
  streamInProgress: boolean;
  /**
   * A large transaction is applied as it streams, and transactions that commit
   * meanwhile are committed with it: after this many milliseconds of such a
   * wait, it is spooled and applied at its commit instead.
   */
  streamWaitMs: number;
  /** Directory of those spools (default: the system's temporary directory). */
  spoolDir?: string;
  /** `on_column_drift` of tables that do not set their own. */
  onColumnDrift: ColumnDriftPolicy;
  /**
   * Destination connections that write, shared by every source: a source's
   * destination transaction holds one from its first statement to its COMMIT.
   */
  workers: number;
}

/** Initial sync knobs. */
export interface SyncConfig {
  /** Tables (or page ranges) copied at once, over all sources together. */
  parallelism: number;
  /** Rows per second per source during initial copy; 0 = unlimited. */
  rate: number;
  /** Rows allowed above the rate in a burst. */
  burst: number;
  /** Tables of at least this many MiB are copied as page ranges, `parallelism` at once (0 = never). */
  splitMb: number;
}

/** When a connection is taken for dead. */
export interface TimeoutsConfig {
  /**
   * Seconds without a message on a source's replication connection, while kvsz
   * waits for one, before it reconnects (a keepalive is asked for at half); 0 never.
   */
  replicationReceiveSeconds: number;
  /**
   * Seconds a destination write may go unanswered before kvsz checks the
   * writing session on a separate connection (and reconnects when it is gone); 0 never.
   */
  destinationCheckSeconds: number;
}

/** Metrics and health endpoint. */
export interface MetricsConfig {
  /** `host:port`; empty string turns the endpoint off. */
  listen: string;
  /** `/readyz` reports unready when a source lags more than this many seconds. */
  readyMaxLagSeconds: number;
  /**
   * Per-table series carry each source's `database` and `sid` while kvsz runs
   * at most this many sources; with more they are summed over sources.
   */
  perSourceTables: number;
}

/**
 * Where the table map lives: the config `file` (declarative: the API reads
 * it and refuses changes), or the `destination`'s `kvsz` schema (changed at
 * run time through the API; the first start imports the file's map).
 */
export type MapStore = "file" | "destination";

/** The HTTP API and console on `metrics.listen` (`api:`). */
export interface ApiConfig {
  /** Hex SHA-256 of the bearer token (empty: none). */
  tokenSha256: string;
  /** Environment variable holding the bearer token itself (empty: none). */
  tokenEnv: string;
  /** Reads need the token too; false is honoured on a loopback-only listener alone. */
  readAuth: boolean;
}

/** Logging. */
/** The whole validated config. */
export interface Config {
  /** File the config was read from (for messages). */
  file: string;
  destination: DestinationConfig;
  databases: DatabaseMapping[];
  apply: ApplyConfig;
  sync: SyncConfig;
  timeouts: TimeoutsConfig;
  metrics: MetricsConfig;
  api: ApiConfig;
  /** See {@link MapStore}. */
  mapStore: MapStore;
  log: LogConfig;
  /** `status` warns when a slot retains more WAL than this many bytes. */
  retainedWalWarnBytes: number;
}

/** A database entry's `all_tables` block (see {@link DatabaseMapping.allTables}). */
export interface AllTablesConfig {
  /** Patterns of `schema.table` (or `table`, any schema) left out; `*` matches any run of characters. */
  exclude: string[];
  /** Schemas whose tables are mapped; empty: every schema but the system ones. */
  schemas: string[];
  /** Write mode of every table so mapped (default `clone`). */
  mode: TableMode;
}

/** The schema of a mapping's target: its own, else `destination.schema`. */
export function targetSchemaOf(mapping: TableMapping, destinationSchema: string): string {
  return mapping.targetSchema ?? destinationSchema;
}

/** Names a mapping's target uniquely among a config's: `schema.name` with its own schema, else the name. */
export function targetKey(mapping: Pick<TableMapping, "target" | "targetSchema">): string {
  return mapping.targetSchema === undefined
    ? mapping.target
    : `${mapping.targetSchema}.${mapping.target}`;
}
