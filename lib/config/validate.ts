/** Schema checks: turns a parsed config document into a `Config`, collecting every problem. */

import { ConnInfoError, parseConnInfo } from "../pg/conninfo.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { redactUrl } from "../pg/redact.ts";
import { DiscoverError, tenantMatcher } from "./discover.ts";
import {
  DEFAULT_API,
  DEFAULT_APPLY,
  DEFAULT_DESTINATION_SCHEMA,
  DEFAULT_DISCOVER,
  DEFAULT_LOG,
  DEFAULT_MAP_STORE,
  DEFAULT_METRICS,
  DEFAULT_RETAINED_WAL_WARN_MB,
  DEFAULT_SOURCE_SCHEMA,
  DEFAULT_SYNC,
  DEFAULT_TABLE_MODE,
  DEFAULT_TIMEOUTS,
} from "./defaults.ts";
import { formatPath, lineOf, type Path, problemAt, type SourceDocument } from "./document.ts";
import type { Problem } from "./errors.ts";
import { didYouMean } from "./suggest.ts";
import { expressions } from "./expressions.ts";
import type {
  AllTablesConfig,
  ApiConfig,
  ApplyConfig,
  ColumnDriftPolicy,
  Config,
  DatabaseMapping,
  DestinationConfig,
  DiscoverConfig,
  MapStore,
  MetricsConfig,
  SourceUrl,
  SyncConfig,
  TableMapping,
  TableMode,
  TimeoutsConfig,
  TransformConfig,
} from "./types.ts";
import { type LogConfig } from "../log.ts";

/** Table modes accepted in `type:`. */
export const TABLE_MODES: readonly TableMode[] = ["clone", "append", "history"];
/** Accepted `on_column_drift` values. */
export const COLUMN_DRIFT_POLICIES: readonly ColumnDriftPolicy[] = ["stop", "continue"];
/** Accepted `log.level` values. */
export const LOG_LEVELS: readonly LogConfig["level"][] = ["debug", "info", "warning", "error"];
/** Accepted `log.format` values. */
export const LOG_FORMATS: readonly LogConfig["format"][] = ["auto", "text", "json"];

const ROOT_KEYS = [
  "destination",
  "databases",
  "map_file",
  "apply",
  "sync",
  "timeouts",
  "metrics",
  "api",
  "map_store",
  "log",
  "status",
];
const DESTINATION_KEYS = [
  "url",
  "schema",
  "replica_role",
  "create_tables",
  "override_read_only",
];
const DATABASE_KEYS = ["database", "urls", "discover", "tables", "all_tables"];
const ALL_TABLES_KEYS = ["exclude", "schemas", "type"];
const URL_KEYS = ["url", "sid", "failover"];
const DISCOVER_KEYS = ["url", "pattern", "sid", "interval_seconds"];
const TABLE_KEYS = [
  "target",
  "type",
  "partitions_regex",
  "on_column_drift",
  "filter",
  "set",
  "on_error",
];
const APPLY_KEYS = [
  "batch_size",
  "commit_interval_ms",
  "queue_size",
  "stream_in_progress",
  "stream_wait_ms",
  "spool_dir",
  "on_column_drift",
  "workers",
];
const SYNC_KEYS = ["parallelism", "rate", "burst", "split_mb"];
const TIMEOUTS_KEYS = ["replication_receive_seconds", "destination_check_seconds"];
const METRICS_KEYS = ["listen", "ready_max_lag_seconds", "per_source_tables"];
const LOG_KEYS = ["level", "format"];
const API_KEYS = ["token_sha256", "token_env", "read_auth"];
/** Accepted `map_store` values. */
export const MAP_STORES: readonly MapStore[] = ["file", "destination"];
const STATUS_KEYS = ["retained_wal_warn_mb"];

/** The config built from a document (meaningful only when `problems` is empty). */
export interface Validation {
  config: Config;
  problems: Problem[];
}

/**
 * Checks the config document `main` and builds the `Config`. When `main` names
 * a `map_file`, `mapDocument` is that file read by the loader; when the loader
 * could not read it, it has reported why and the databases are not checked.
 */
export function validateConfig(main: SourceDocument, mapDocument?: SourceDocument): Validation {
  const check = new Checker(main);
  const config = emptyConfig(main.file);
  if (main.value === null) {
    check.report([], "the config file is empty");
    return { config, problems: check.problems };
  }
  const root = check.mapping(main.value, [], ROOT_KEYS);
  if (root === undefined) return { config, problems: check.problems };

  config.destination = destination(check, root.get("destination"));
  config.apply = apply(check, check.section(root.get("apply"), ["apply"], APPLY_KEYS));
  config.sync = sync(check, check.section(root.get("sync"), ["sync"], SYNC_KEYS));
  config.timeouts = timeouts(
    check,
    check.section(root.get("timeouts"), ["timeouts"], TIMEOUTS_KEYS),
  );
  config.metrics = metrics(check, check.section(root.get("metrics"), ["metrics"], METRICS_KEYS));
  config.api = api(check, check.section(root.get("api"), ["api"], API_KEYS));
  config.mapStore = check.choice(root, "map_store", [], { allowed: MAP_STORES }) ??
    DEFAULT_MAP_STORE;
  config.log = log(check, check.section(root.get("log"), ["log"], LOG_KEYS));
  const status = check.section(root.get("status"), ["status"], STATUS_KEYS);
  const warnMb = check.integer(status, "retained_wal_warn_mb", ["status"], { min: 1 });
  config.retainedWalWarnBytes = (warnMb ?? DEFAULT_RETAINED_WAL_WARN_MB) * 1024 * 1024;

  const mapProblems: Problem[] = [];
  const hasDatabases = root.has("databases");
  const hasMapFile = root.has("map_file");
  if (hasDatabases && hasMapFile) {
    check.report(["map_file"], "cannot be used together with databases; give only one of them");
  }
  if (!hasDatabases && !hasMapFile) {
    check.report(["databases"], "required (or map_file naming a kuvasz-streamer map file)");
  }
  const drift = config.apply.onColumnDrift;
  if (hasDatabases) {
    config.databases = databases(check, root.get("databases"), ["databases"], { drift });
  } else if (hasMapFile) {
    const mapFile = root.get("map_file");
    if (typeof mapFile !== "string" || mapFile === "") {
      check.report(["map_file"], `must be a file path, not ${describe(mapFile)}`);
    } else if (mapDocument !== undefined) {
      const mapCheck = new Checker(mapDocument);
      config.databases = databases(mapCheck, mapDocument.value, [], { drift });
      mapProblems.push(...mapCheck.problems);
    }
  }
  return { config, problems: [...check.problems, ...mapProblems] };
}

/** The destination of a config that has none (or a broken one). */
function noDestination(): DestinationConfig {
  return {
    url: "",
    schema: DEFAULT_DESTINATION_SCHEMA,
    replicaRole: false,
    createTables: false,
    overrideReadOnly: false,
  };
}

function emptyConfig(file: string): Config {
  return {
    file,
    destination: noDestination(),
    databases: [],
    apply: { ...DEFAULT_APPLY },
    sync: { ...DEFAULT_SYNC, burst: DEFAULT_SYNC.rate },
    timeouts: { ...DEFAULT_TIMEOUTS },
    metrics: { ...DEFAULT_METRICS },
    api: { ...DEFAULT_API },
    mapStore: DEFAULT_MAP_STORE,
    log: { ...DEFAULT_LOG },
    retainedWalWarnBytes: DEFAULT_RETAINED_WAL_WARN_MB * 1024 * 1024,
  };
}

function destination(check: Checker, value: unknown): DestinationConfig {
  const path = ["destination"];
  if (value === undefined || value === null) {
    check.report(path, "required (url and schema of the database changes are written to)");
    return noDestination();
  }
  const map = check.mapping(value, path, DESTINATION_KEYS);
  if (map === undefined) return noDestination();
  return {
    url: check.postgresUrl(map, "url", path) ?? "",
    schema: check.string(map, "schema", path) ?? DEFAULT_DESTINATION_SCHEMA,
    replicaRole: check.boolean(map, "replica_role", path) ?? false,
    createTables: check.boolean(map, "create_tables", path) ?? false,
    overrideReadOnly: check.boolean(map, "override_read_only", path) ?? false,
  };
}

function apply(check: Checker, map: Map<string, unknown>): ApplyConfig {
  const path = ["apply"];
  return {
    batchSize: check.integer(map, "batch_size", path, { min: 1 }) ?? DEFAULT_APPLY.batchSize,
    commitIntervalMs: check.integer(map, "commit_interval_ms", path, { min: 0 }) ??
      DEFAULT_APPLY.commitIntervalMs,
    queueSize: check.integer(map, "queue_size", path, { min: 1 }) ?? DEFAULT_APPLY.queueSize,
    streamInProgress: check.boolean(map, "stream_in_progress", path) ??
      DEFAULT_APPLY.streamInProgress,
    streamWaitMs: check.integer(map, "stream_wait_ms", path, { min: 0 }) ??
      DEFAULT_APPLY.streamWaitMs,
    spoolDir: check.string(map, "spool_dir", path),
    onColumnDrift: check.choice(map, "on_column_drift", path, { allowed: COLUMN_DRIFT_POLICIES }) ??
      DEFAULT_APPLY.onColumnDrift,
    workers: check.integer(map, "workers", path, { min: 1 }) ?? DEFAULT_APPLY.workers,
  };
}

function sync(check: Checker, map: Map<string, unknown>): SyncConfig {
  const path = ["sync"];
  const rate = check.integer(map, "rate", path, { min: 0 }) ?? DEFAULT_SYNC.rate;
  return {
    parallelism: check.integer(map, "parallelism", path, { min: 1 }) ?? DEFAULT_SYNC.parallelism,
    rate,
    burst: check.integer(map, "burst", path, { min: 0 }) ?? rate,
    splitMb: check.integer(map, "split_mb", path, { min: 0 }) ?? DEFAULT_SYNC.splitMb,
  };
}

function timeouts(check: Checker, map: Map<string, unknown>): TimeoutsConfig {
  const path = ["timeouts"];
  return {
    replicationReceiveSeconds:
      check.integer(map, "replication_receive_seconds", path, { min: 0 }) ??
        DEFAULT_TIMEOUTS.replicationReceiveSeconds,
    destinationCheckSeconds: check.integer(map, "destination_check_seconds", path, { min: 0 }) ??
      DEFAULT_TIMEOUTS.destinationCheckSeconds,
  };
}

function metrics(check: Checker, map: Map<string, unknown>): MetricsConfig {
  const path = ["metrics"];
  const listen = check.string(map, "listen", path, { allowEmpty: true });
  if (listen !== undefined && listen !== "" && !isHostPort(listen)) {
    check.report(
      [...path, "listen"],
      `must be "host:port" (e.g. 127.0.0.1:9187), or "" to turn metrics off, not ${
        describe(listen)
      }`,
    );
  }
  return {
    listen: listen ?? DEFAULT_METRICS.listen,
    readyMaxLagSeconds: check.integer(map, "ready_max_lag_seconds", path, { min: 1 }) ??
      DEFAULT_METRICS.readyMaxLagSeconds,
    perSourceTables: check.integer(map, "per_source_tables", path, { min: 0 }) ??
      DEFAULT_METRICS.perSourceTables,
  };
}

function api(check: Checker, map: Map<string, unknown>): ApiConfig {
  const path = ["api"];
  const hash = check.string(map, "token_sha256", path, { allowEmpty: true });
  if (hash !== undefined && hash !== "" && !/^[0-9a-fA-F]{64}$/.test(hash)) {
    check.report(
      [...path, "token_sha256"],
      'must be the token\'s SHA-256 as 64 hex digits (printf %s "$TOKEN" | sha256sum), ' +
        "not the token itself",
    );
  }
  return {
    tokenSha256: (hash ?? DEFAULT_API.tokenSha256).toLowerCase(),
    tokenEnv: check.string(map, "token_env", path, { allowEmpty: true }) ?? DEFAULT_API.tokenEnv,
    readAuth: check.boolean(map, "read_auth", path) ?? DEFAULT_API.readAuth,
  };
}

function isHostPort(text: string): boolean {
  const match = /^(.*):([0-9]{1,5})$/.exec(text);
  if (match === null || Number(match[2]) > 65535) return false;
  const host = match[1];
  return !host.includes(":") || /^\[[0-9a-fA-F:.]+\]$/.test(host);
}

function log(check: Checker, map: Map<string, unknown>): LogConfig {
  const path = ["log"];
  return {
    level: check.choice(map, "level", path, { allowed: LOG_LEVELS }) ?? DEFAULT_LOG.level,
    format: check.choice(map, "format", path, { allowed: LOG_FORMATS }) ?? DEFAULT_LOG.format,
  };
}

/** Options of {@link databases} and of the checks of their parts. */
interface MappingOptions {
  /** `on_column_drift` of a table that sets none (`apply.on_column_drift`). */
  drift: ColumnDriftPolicy;
}

/** Checks a list of database entries (the `databases:` list or a whole map file). */
function databases(
  check: Checker,
  value: unknown,
  path: Path,
  opts: MappingOptions,
): DatabaseMapping[] {
  if (!Array.isArray(value)) {
    const message = value === null
      ? "must list at least one database"
      : `must be a list of databases, not ${describe(value)}`;
    check.report(path, message);
    return [];
  }
  if (value.length === 0) check.report(path, "must list at least one database");
  const result: DatabaseMapping[] = [];
  const paths: Path[] = [];
  value.forEach((entry, index) => {
    const at = [...path, index];
    const mapping = database(check, entry, at, opts);
    if (mapping !== undefined) {
      result.push(mapping);
      paths.push(at);
    }
  });
  checkSharedTargets(check, result, paths);
  checkObjectNames(check, result);
  return result;
}

function database(
  check: Checker,
  value: unknown,
  path: Path,
  opts: MappingOptions,
): DatabaseMapping | undefined {
  const map = check.mapping(value, path, DATABASE_KEYS);
  if (map === undefined) return undefined;
  const name = check.string(map, "database", path, { required: "the source database name" });
  const found = discover(check, map.get("discover"), [...path, "discover"]);
  const all = allTables(check, map.get("all_tables"), [...path, "all_tables"]);
  const listed = map.get("tables");
  return {
    database: name ?? "",
    urls: sourceUrls(check, map.get("urls"), [...path, "urls"], found !== null),
    tables: all !== null && (listed === undefined || listed === null)
      ? []
      : tables(check, listed, [...path, "tables"], opts),
    ...(all ? { allTables: all } : {}),
    ...(found ? { discover: found } : {}),
  };
}

/**
 * The entry's `all_tables`: `true`, or a block with `exclude` and `schemas`
 * (lists of names; `*` in an exclusion matches any run of characters) and
 * `type`; null when absent or false, undefined when broken (reported).
 */
function allTables(check: Checker, value: unknown, path: Path): AllTablesConfig | null | undefined {
  if (value === undefined || value === null || value === false) return null;
  if (value === true) return { exclude: [], schemas: [], mode: DEFAULT_TABLE_MODE };
  const map = check.mapping(value, path, ALL_TABLES_KEYS);
  if (map === undefined) return undefined;
  const list = (key: string): string[] | undefined => {
    const v = map.get(key);
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string" || x === "")) {
      check.report([...path, key], `must be a list of names, not ${describe(v)}`);
      return undefined;
    }
    return v as string[];
  };
  const exclude = list("exclude");
  const schemas = list("schemas");
  const mode = check.choice(map, "type", path, { allowed: TABLE_MODES }) ?? DEFAULT_TABLE_MODE;
  if (exclude === undefined || schemas === undefined) return undefined;
  return { exclude, schemas, mode };
}

/**
 * The entry's `discover` block: null when absent, undefined when broken
 * (reported). Its pattern and sid template are compiled once here, so that
 * a mistake is said at load, not when the first database is listed.
 */
function discover(check: Checker, value: unknown, path: Path): DiscoverConfig | null | undefined {
  if (value === undefined || value === null) return null;
  const map = check.mapping(value, path, DISCOVER_KEYS);
  if (map === undefined) return undefined;
  const url = check.postgresUrl(map, "url", path);
  const pattern = check.string(map, "pattern", path, {
    required: "a regular expression matched against the whole database name",
  });
  const sid = check.string(map, "sid", path) ?? DEFAULT_DISCOVER.sid;
  const intervalSeconds = check.integer(map, "interval_seconds", path, { min: 1 }) ??
    DEFAULT_DISCOVER.intervalSeconds;
  if (pattern === undefined) return undefined;
  try {
    tenantMatcher(pattern, sid);
  } catch (error) {
    if (!(error instanceof DiscoverError)) throw error;
    check.report([...path, error.key], error.message);
    return undefined;
  }
  return url === undefined ? undefined : { url, pattern, sid, intervalSeconds };
}

function sourceUrls(check: Checker, value: unknown, path: Path, discovers: boolean): SourceUrl[] {
  if (value === undefined || value === null) {
    if (!discovers) {
      check.report(path, "required: list at least one source URL with its sid (or discover them)");
    }
    return [];
  }
  if (!Array.isArray(value)) {
    check.report(path, `must be a list of { url, sid }, not ${describe(value)}`);
    return [];
  }
  if (value.length === 0 && !discovers) check.report(path, "must list at least one source URL");
  const result: SourceUrl[] = [];
  const sidOwners = new Map<string, number>();
  value.forEach((entry, index) => {
    const at = [...path, index];
    const map = check.mapping(entry, at, URL_KEYS);
    if (map === undefined) return;
    const url = check.postgresUrl(map, "url", at);
    const sid = check.sid(map, at);
    if (sid !== undefined) {
      const first = sidOwners.get(sid);
      if (first === undefined) sidOwners.set(sid, index);
      else {
        const other = formatPath([...path, first]);
        check.report([...at, "sid"], `duplicate sid "${sid}" (also used by ${other})`);
        return;
      }
    }
    const failover = check.boolean(map, "failover", at) ?? false;
    if (failover && url !== undefined) {
      const problem = failoverUrlProblem(url);
      if (problem) check.report([...at, "failover"], problem);
    }
    if (url !== undefined && sid !== undefined) {
      result.push({ url, sid, failover });
      check.placed(result[result.length - 1], at);
    }
  });
  return result;
}

function tables(
  check: Checker,
  value: unknown,
  path: Path,
  opts: MappingOptions,
): TableMapping[] {
  if (value === undefined || value === null) {
    check.report(path, "required: map at least one source table");
    return [];
  }
  if (!(value instanceof Map)) {
    check.report(path, `must be a mapping of source table names, not ${describe(value)}`);
    return [];
  }
  if (value.size === 0) check.report(path, "must map at least one source table");
  const result: TableMapping[] = [];
  const sourceOwners = new Map<string, string>();
  for (const [source, options] of value as Map<string, unknown>) {
    const at = [...path, source];
    const parts = source.split(".");
    if (parts.length > 2 || parts.some((part) => part === "")) {
      check.report(at, `table name must be "table" or "schema.table", not ${describe(source)}`);
      continue;
    }
    const sourceName = parts[parts.length - 1];
    const sourceSchema = parts.length === 2 ? parts[0] : DEFAULT_SOURCE_SCHEMA;
    const qualified = `${sourceSchema}.${sourceName}`;
    const first = sourceOwners.get(qualified);
    if (first !== undefined) {
      check.report(at, `same source table as ${formatPath([...path, first])}`);
      continue;
    }
    sourceOwners.set(qualified, source);
    const table = tableOptions(check, options, at, opts);
    if (table === undefined) continue;
    result.push({
      source,
      sourceSchema,
      sourceName,
      target: table.target ?? sourceName,
      mode: table.mode,
      ...(table.partitionsRegex === undefined ? {} : { partitionsRegex: table.partitionsRegex }),
      onColumnDrift: table.onColumnDrift,
      ...(table.transform ? { transform: table.transform } : {}),
    });
  }
  return result;
}

interface TableOptions {
  target?: string;
  mode: TableMode;
  partitionsRegex?: string;
  onColumnDrift: ColumnDriftPolicy;
  transform?: TransformConfig;
}

function tableOptions(
  check: Checker,
  value: unknown,
  path: Path,
  opts: MappingOptions,
): TableOptions | undefined {
  const { drift } = opts;
  if (value === null) return { mode: DEFAULT_TABLE_MODE, onColumnDrift: drift };
  if (!(value instanceof Map)) {
    check.report(
      path,
      `must be empty or a mapping with ${TABLE_KEYS.join(", ")}, not ${describe(value)}`,
    );
    return undefined;
  }
  check.mapping(value, path, TABLE_KEYS);
  const target = check.string(value, "target", path);
  if (target !== undefined && target.includes(".")) {
    check.report(
      [...path, "target"],
      "must be a table name without schema (targets live in destination.schema)",
    );
  }
  const regex = check.string(value, "partitions_regex", path);
  if (regex !== undefined) {
    try {
      new RegExp(regex);
    } catch (error) {
      check.report([...path, "partitions_regex"], (error as Error).message);
    }
  }
  return {
    target,
    mode: check.choice(value, "type", path, { allowed: TABLE_MODES }) ?? DEFAULT_TABLE_MODE,
    partitionsRegex: regex,
    onColumnDrift:
      check.choice(value, "on_column_drift", path, { allowed: COLUMN_DRIFT_POLICIES }) ?? drift,
    transform: expressions(check, value, path),
  };
}

/** Reports a table of one database entry feeding a (target, sid) pair another entry already feeds. */
function checkSharedTargets(check: Checker, mappings: DatabaseMapping[], paths: Path[]): void {
  const owners = new Map<string, { entry: number; path: Path }>();
  mappings.forEach((mapping, entry) => {
    for (const table of mapping.tables) {
      const tablePath = [...paths[entry], "tables", table.source];
      for (const { sid } of mapping.urls) {
        const key = JSON.stringify([table.target, sid]);
        const owner = owners.get(key);
        if (owner === undefined) {
          owners.set(key, { entry, path: tablePath });
        } else if (owner.entry !== entry) {
          check.report(
            tablePath,
            `target "${table.target}" with sid "${sid}" is already fed by ${
              formatPath(owner.path)
            } (give the sources different sids or targets)`,
          );
          break;
        }
      }
    }
  });
}

/**
 * Reports a source whose slot, publication and replication origin name
 * ({@link kvszObjectName}: lower-case, `[a-z0-9_]`, at most 63 characters)
 * is another source's too, in any database entry: the second one could never
 * create its slot, and both would share one origin. Names that do not collide
 * stay as they are (existing slots keep working).
 */
function checkObjectNames(check: Checker, mappings: DatabaseMapping[]): void {
  const owners = new Map<string, { database: string; sid: string; path: Path }>();
  for (const { database, urls } of mappings) {
    for (const source of urls) {
      const sid = source.sid;
      const path = check.pathOf(source)!;
      const name = kvszObjectName(database, sid);
      const owner = owners.get(name);
      if (owner === undefined) {
        owners.set(name, { database, sid, path });
        continue;
      }
      const line = lineOf(check.document, owner.path);
      const other = `${formatPath(owner.path)}${line === undefined ? "" : ` (line ${line})`}`;
      const progress = owner.database === database && owner.sid === sid
        ? "the same kvsz.progress row and "
        : "";
      check.report(
        [...path, "sid"],
        `database "${database}" sid "${sid}" collides with ${other}, ` +
          `database "${owner.database}" sid "${owner.sid}": both would use ${progress}` +
          `the slot, publication and replication origin named ${name}; give one of them another sid`,
      );
    }
  }
}

/** Short description of a value for messages, e.g. `a list`, `"abc"`, `5`. */
function describe(value: unknown): string {
  if (value === undefined || value === null) return "empty";
  if (Array.isArray(value)) return "a list";
  if (value instanceof Map) return "a mapping";
  if (typeof value === "string") {
    const shown = value.includes("://") ? redactUrl(value) : value;
    return JSON.stringify(shown.length > 40 ? `${shown.slice(0, 40)}...` : shown);
  }
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return `a ${typeof value}`;
}

/** Collects problems of one document and reads typed values out of its mappings. */
class Checker {
  readonly problems: Problem[] = [];
  /** Where each value built from the document came from (see {@link placed}). */
  readonly #paths = new WeakMap<object, Path>();

  constructor(readonly document: SourceDocument) {}

  /** Records a problem, unless the value at `path` had an unexpandable `${VAR}` (already reported). */
  report(path: Path, message: string): void {
    if (this.document.unresolved.has(formatPath(path))) return;
    this.problems.push(problemAt(this.document, path, message));
  }

  /** Remembers that `built` was read from `path`, for problems found later across entries. */
  placed(built: object, path: Path): void {
    this.#paths.set(built, path);
  }

  /** Where `built` was read from (see {@link placed}). */
  pathOf(built: object): Path | undefined {
    return this.#paths.get(built);
  }

  /** `value` as a mapping, reporting keys not in `known`; undefined (reported) when not a mapping. */
  mapping(value: unknown, path: Path, known: readonly string[]): Map<string, unknown> | undefined {
    if (!(value instanceof Map)) {
      const what = path.length === 0 ? "the top level must be a mapping" : "must be a mapping";
      this.report(path, `${what}, not ${describe(value)}`);
      return undefined;
    }
    for (const key of value.keys()) {
      if (known.includes(key)) continue;
      const hint = didYouMean(key, known) || ` (expected one of ${known.join(", ")})`;
      this.report([...path, key], `unknown key${hint}`);
    }
    return value;
  }

  /** An optional section: an empty mapping when absent or empty. */
  section(value: unknown, path: Path, known: readonly string[]): Map<string, unknown> {
    if (value === undefined || value === null) return new Map();
    return this.mapping(value, path, known) ?? new Map();
  }

  /** Whether `key` has a value worth checking (present, not null, not an unexpanded `${VAR}`). */
  #has(map: Map<string, unknown>, key: string, parent: Path): boolean {
    const value = map.get(key);
    if (value === undefined || value === null) return false;
    return !this.document.unresolved.has(formatPath([...parent, key]));
  }

  /** Whether `key` is absent because a `${VAR}` in it could not be expanded. */
  #unresolved(key: string, parent: Path): boolean {
    return this.document.unresolved.has(formatPath([...parent, key]));
  }

  /** A string; undefined when absent (reported when `required` says what it is) or invalid. */
  string(
    map: Map<string, unknown>,
    key: string,
    parent: Path,
    options: { required?: string; allowEmpty?: boolean } = {},
  ): string | undefined {
    const path = [...parent, key];
    if (!this.#has(map, key, parent)) {
      if (options.required !== undefined && !this.#unresolved(key, parent)) {
        this.report(path, `required (${options.required})`);
      }
      return undefined;
    }
    const value = map.get(key);
    if (typeof value !== "string") {
      this.report(path, `must be a string, not ${describe(value)}`);
      return undefined;
    }
    if (value === "" && !options.allowEmpty) {
      this.report(path, "must not be empty");
      return undefined;
    }
    return value;
  }

  /** An integer of at least `min`; undefined when absent or invalid. */
  integer(
    map: Map<string, unknown>,
    key: string,
    parent: Path,
    { min }: { /** The least value allowed. */ min: number },
  ): number | undefined {
    if (!this.#has(map, key, parent)) return undefined;
    const value = map.get(key);
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
      const wanted = min === 1 ? "a positive integer" : `an integer of ${min} or more`;
      const hint = typeof value === "string" && /^[0-9]+$/.test(value)
        ? " (remove the quotes)"
        : "";
      this.report([...parent, key], `must be ${wanted}, not ${describe(value)}${hint}`);
      return undefined;
    }
    return value;
  }

  /** true or false; undefined when absent or invalid. */
  boolean(map: Map<string, unknown>, key: string, parent: Path): boolean | undefined {
    if (!this.#has(map, key, parent)) return undefined;
    const value = map.get(key);
    if (typeof value === "boolean") return value;
    const hint = value === "true" || value === "false" ? " (remove the quotes)" : "";
    this.report([...parent, key], `must be true or false, not ${describe(value)}${hint}`);
    return undefined;
  }

  /** One of `allowed`, exactly; undefined when absent or invalid. */
  choice<T extends string>(
    map: Map<string, unknown>,
    key: string,
    parent: Path,
    { allowed }: { /** The values accepted. */ allowed: readonly T[] },
  ): T | undefined {
    if (!this.#has(map, key, parent)) return undefined;
    const value = map.get(key);
    if (typeof value === "string" && (allowed as readonly string[]).includes(value)) {
      return value as T;
    }
    const hint = typeof value === "string" ? didYouMean(value, allowed) : "";
    this.report(
      [...parent, key],
      `must be one of ${allowed.join(", ")}, not ${describe(value)}${hint}`,
    );
    return undefined;
  }

  /** A required postgres:// or postgresql:// URL; undefined when missing or invalid. */
  postgresUrl(map: Map<string, unknown>, key: string, parent: Path): string | undefined {
    const path = [...parent, key];
    if (!this.#has(map, key, parent)) {
      if (!this.#unresolved(key, parent)) {
        this.report(path, "required (a postgres:// or postgresql:// URL)");
      }
      return undefined;
    }
    const value = map.get(key);
    if (typeof value !== "string") {
      this.report(path, `must be a postgres:// or postgresql:// URL, not ${describe(value)}`);
      return undefined;
    }
    const problem = urlProblem(value);
    if (problem !== null) {
      this.report(path, problem);
      return undefined;
    }
    return value;
  }

  /** The required `sid` of a source URL as text (a number keeps its source text, e.g. `012`). */
  sid(map: Map<string, unknown>, parent: Path): string | undefined {
    const path = [...parent, "sid"];
    if (!this.#has(map, "sid", parent)) {
      if (!this.#unresolved("sid", parent)) {
        this.report(path, "required (a number or string identifying this source)");
      }
      return undefined;
    }
    const value = map.get("sid");
    if (typeof value === "number") {
      return this.document.numberText.get(formatPath(path)) ?? String(value);
    }
    if (typeof value === "string" && value.trim() !== "") return value;
    this.report(path, `must be a number or a non-empty string, not ${describe(value)}`);
    return undefined;
  }
}

/**
 * What is wrong with a source URL for `failover: true`, or null: with several
 * hosts, only target_session_attrs=read-write (or primary) keeps kvsz off a
 * standby, where the synchronized slot cannot be streamed from, and on the
 * promoted one.
 */
function failoverUrlProblem(url: string): string | null {
  const info = parseConnInfo(url);
  const attrs = info.targetSessionAttrs;
  if (info.hosts.length < 2 || attrs === "read-write" || attrs === "primary") return null;
  return `the URL lists ${info.hosts.length} hosts with target_session_attrs=${attrs}: ` +
    `kvsz could connect to a standby; add ?target_session_attrs=read-write to the URL ` +
    `so it follows the primary (see README, Failover)`;
}

/** What is wrong with a connection URL, or null; the password is never shown. */
function urlProblem(text: string): string | null {
  const shown = JSON.stringify(redactUrl(text));
  if (!/^postgres(?:ql)?:\/\//i.test(text)) {
    return `must be a postgres:// or postgresql:// URL, not ${shown}`;
  }
  try {
    parseConnInfo(text);
    return null;
  } catch (e) {
    if (e instanceof ConnInfoError) return `${shown}: ${e.message}`;
    throw e;
  }
}
