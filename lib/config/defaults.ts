/** Values used when the config leaves a setting out. */

import type { ColumnDriftPolicy, TableMode } from "./types.ts";
import { type LogConfig } from "../log.ts";

/** Destination schema of the target tables. */
export const DEFAULT_DESTINATION_SCHEMA = "public";
/** Schema of a source table written without one (`t1` means `public.t1`). */
export const DEFAULT_SOURCE_SCHEMA = "public";
/** Mode of a table that does not say. */
export const DEFAULT_TABLE_MODE: TableMode = "clone";

/** `apply:` defaults. */
export const DEFAULT_APPLY = {
  batchSize: 10_000,
  commitIntervalMs: 200,
  queueSize: 20_000,
  streamInProgress: true,
  streamWaitMs: 5000,
  /** Destination writer connections shared by every source. */
  workers: 4,
  /** A table whose target lost a source column stops until fixed: nothing is lost silently. */
  onColumnDrift: "stop" as ColumnDriftPolicy,
};
/** `databases[].discover` defaults: the sid is the whole database name; listed every 30 s. */
export const DEFAULT_DISCOVER = { sid: "$0", intervalSeconds: 30, database: "postgres" };
/** `sync:` defaults; `burst` defaults to the configured `rate`. */
export const DEFAULT_SYNC = { parallelism: 2, rate: 0, splitMb: 64 };
/** `timeouts:` defaults, in seconds (PostgreSQL's `wal_receiver_timeout` is 60 s). */
export const DEFAULT_TIMEOUTS = { replicationReceiveSeconds: 60, destinationCheckSeconds: 60 };
/** `metrics:` defaults. */
export const DEFAULT_METRICS = {
  listen: "127.0.0.1:9187",
  readyMaxLagSeconds: 60,
  /** Up to 50 sources, per-table series per source (as kuvasz-streamer's); beyond, summed. */
  perSourceTables: 50,
};
/** `api:` defaults: no hashed token, the token may come from $KVSZ_API_TOKEN, reads need it. */
export const DEFAULT_API = { tokenSha256: "", tokenEnv: "KVSZ_API_TOKEN", readAuth: true };
/** `map_store` default: the map is the config file's (declarative). */
export const DEFAULT_MAP_STORE = "file" as const;
/** `log:` defaults. */
export const DEFAULT_LOG: LogConfig = { level: "info", format: "auto" };
/** `status.retained_wal_warn_mb` default, in MiB. */
export const DEFAULT_RETAINED_WAL_WARN_MB = 1024;

/** Config files looked for, in order, when neither `--config` nor `$KVSZ_CONFIG` is given. */
export const DEFAULT_CONFIG_PATHS: readonly string[] = ["kvsz.yaml", "/etc/kvsz/kvsz.yaml"];
