/**
 * Prometheus metrics of one kvsz process: the names kuvasz-streamer users
 * already chart (`streamer_*`, `url_heartbeat`) plus kvsz's own (`kvsz_*`),
 * fed by the engine through {@link PipelineEvents} hooks and rendered in the
 * text exposition format. Also the readiness of every source, for `/readyz`.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { CommitInfo } from "../apply/applier.ts";
import type { Anomaly } from "../apply/types.ts";
import type { DriftReport } from "../apply/routes.ts";
import type { SlotLag } from "../source/slot.ts";
import { VERSION } from "../version.ts";
import { log } from "../log.ts";
import { type PipelineEvents } from "../engine/events.ts";
import { SyncBoard } from "./sync_progress.ts";

/** Readiness of one source, as `/readyz` reports it. */
export interface SourceReadiness {
  database: string;
  sid: string;
  /**
   * `streaming`, `lagging` (connected, lag over the bound), `syncing` (initial
   * copy), `waiting` (another kvsz process holds its destination lock) or `disconnected`.
   */
  state: "streaming" | "lagging" | "syncing" | "waiting" | "disconnected";
  ready: boolean;
  connected: boolean;
  /** Seconds the destination is behind the source (see {@link Metrics.lagSeconds}). */
  lagSeconds: number;
  /** Last known unconfirmed WAL bytes of the slot, or null when not polled. */
  lagBytes: number | null;
  /**
   * The error of the source's last failed attempt, until it applies a
   * transaction or has streamed for {@link ERROR_SHOWN_MS} since; else null.
   */
  error: string | null;
}

/** Readiness of the whole process: ready when every source is. */
export interface Readiness {
  ready: boolean;
  sources: SourceReadiness[];
}

/** Options of {@link Metrics}. */
export interface MetricsOptions {
  /** Clock in milliseconds since the epoch (tests pass a fake one). */
  now?: () => number;
  /** Draw the initial copy's progress on stderr as a terminal (default: when it is one). */
  tty?: boolean;
  /**
   * Per-table series (and the per-source histograms) carry each source's
   * `database` and `sid` while there are at most this many sources, else
   * they are summed over sources (`metrics.per_source_tables`; default: always per source).
   */
  perSourceTables?: number;
}

const SOURCE = ["database", "sid"] as const;
/** A source connected this long after its last failure is taken to work again. */
const ERROR_SHOWN_MS = 60_000;
const OPERATION_SECONDS_BUCKETS = [
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];
const BATCH_SIZE_BUCKETS = [1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000];

/** Per-source state behind the gauges that are computed at scrape time. */
interface SourceState {
  database: string;
  sid: string;
  connected: boolean;
  /** When it last connected (ms since the epoch). */
  connectedMs: number;
  /** The error of its last failed attempt (see {@link SourceReadiness.error}). */
  error: string | null;
  /** Another kvsz process holds the source's destination lock. */
  waiting: boolean;
  /** When the hooks were first asked for (the lag baseline before any event). */
  registeredMs: number;
  /**
   * The moment the destination was last known to be up to date with: the
   * commit time of the last applied commit, or the arrival of a keepalive
   * (everything the server had sent by then was received in order).
   */
  caughtUpMs: number | null;
  /** Highest WAL end reported by a keepalive. */
  keepaliveLsn: bigint;
  /** The slot poller's last lag (current LSN − `confirmed_flush_lsn`), null when unknown. */
  polledLagBytes: number | null;
  /** While it streams: the server's highest WAL end known (the stream's, or the poller's current LSN). */
  walEnd: bigint;
  /** While it streams: what kvsz last confirmed to the server (null before the first status update). */
  confirmed: bigint | null;
  /** Drifted columns per table, as last reported (the series to remove when they go). */
  drift: Map<string, { column: string; kind: string }[]>;
}

/** The Prometheus registry of a kvsz process and the hooks that feed it. */
export class Metrics {
  /** The prom-client registry (only kvsz's metrics; no process defaults). */
  readonly registry: Registry = new Registry();
  /** Content type of {@link render}'s output. */
  readonly contentType: string = this.registry.contentType;

  readonly #now: () => number;
  readonly #sources = new Map<string, SourceState>();
  /** The initial copy's progress display, and which sources are copied. */
  readonly sync: SyncBoard;
  #perSourceTables: number;
  /** True while per-table series are summed over sources (see {@link MetricsOptions.perSourceTables}). */
  #summed = false;

  readonly operations = new Counter({
    name: "streamer_operations_total",
    help: "Row operations applied to the destination, by source table and operation.",
    labelNames: ["database", "sid", "table", "operation", "result"] as const,
    registers: [this.registry],
  });
  readonly operationSeconds = new Histogram({
    name: "streamer_operations_seconds",
    help: "Time of one set-based destination statement applying operations of one table.",
    labelNames: ["database", "sid", "table", "operation", "result"] as const,
    buckets: OPERATION_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly syncRows = new Counter({
    name: "streamer_sync_total_rows",
    help: "Rows copied by the initial sync, by source table.",
    labelNames: ["database", "sid", "table"] as const,
    registers: [this.registry],
  });
  readonly syncBytes = new Counter({
    name: "streamer_sync_total_bytes",
    help: "Bytes copied by the initial sync (COPY text), by source table.",
    labelNames: ["database", "sid", "table"] as const,
    registers: [this.registry],
  });
  readonly syncSources: Gauge = new Gauge({
    name: "kvsz_sync_sources",
    help: "Sources kvsz runs (the total of the initial copy's kvsz_sync_sources_done).",
    registers: [this.registry],
    collect: () => {
      this.syncSources.set(this.sync.total);
    },
  });
  readonly syncSourcesDone: Gauge = new Gauge({
    name: "kvsz_sync_sources_done",
    help:
      "Sources whose every table is copied: they stream (a source copying a table added later is not).",
    registers: [this.registry],
    collect: () => {
      this.syncSourcesDone.set(this.sync.done);
    },
  });
  readonly heartbeat = new Gauge({
    name: "url_heartbeat",
    help: "Last activity of a source (connection, change, keepalive, copy), in unix seconds.",
    labelNames: SOURCE,
    registers: [this.registry],
  });
  readonly lagBytesGauge: Gauge<"database" | "sid"> = new Gauge({
    name: "kvsz_lag_bytes",
    help:
      "Source WAL not yet confirmed by kvsz, in bytes: the server's WAL end minus what kvsz confirmed, from the stream while the source streams, else from the slot poller (current LSN minus confirmed_flush_lsn).",
    labelNames: SOURCE,
    registers: [this.registry],
    collect: () => {
      for (const s of this.#sources.values()) {
        const bytes = this.#lagBytes(s);
        const labels = { database: s.database, sid: s.sid };
        if (bytes === null) this.lagBytesGauge.remove(labels);
        else this.lagBytesGauge.set(labels, bytes);
      }
    },
  });
  readonly lagSecondsGauge: Gauge<"database" | "sid"> = new Gauge({
    name: "kvsz_lag_seconds",
    help:
      "Seconds the destination is behind the source: 0 when caught up, else the age of the last applied source commit.",
    labelNames: SOURCE,
    registers: [this.registry],
    collect: () => {
      for (const s of this.#sources.values()) {
        this.lagSecondsGauge.set({ database: s.database, sid: s.sid }, this.#lagSeconds(s));
      }
    },
  });
  readonly retainedWal = new Gauge({
    name: "kvsz_slot_retained_wal_bytes",
    help: "WAL the source keeps for the kvsz slot (current LSN minus restart_lsn), in bytes.",
    labelNames: SOURCE,
    registers: [this.registry],
  });
  readonly anomalies = new Counter({
    name: "kvsz_anomalies_total",
    help:
      "Changes that did not match the destination (insert_existing, update_missing, delete_missing), converged as the mode says; expression_error: a table's filter or set failed on a row (handled as its on_error says).",
    labelNames: ["database", "sid", "table", "kind"] as const,
    registers: [this.registry],
  });
  readonly oneByOne = new Counter({
    name: "kvsz_one_by_one_total",
    help:
      "Batches that broke a destination constraint folded, or had a value refused, and were applied again one change at a time, in source order.",
    labelNames: ["database", "sid", "table"] as const,
    registers: [this.registry],
  });
  readonly columnDrift = new Gauge({
    name: "kvsz_column_drift",
    help:
      "1 per drifted column: missing_at_source (a target column kvsz filled whose source column was dropped or renamed), missing_at_target (a source column added since the copy that the target lacks).",
    labelNames: ["database", "sid", "table", "column", "kind"] as const,
    registers: [this.registry],
  });
  readonly tableStopped = new Gauge({
    name: "kvsz_table_stopped",
    help:
      "1 while a table is stopped for column drift (on_column_drift: stop): its changes wait for the target's fix and a fresh copy.",
    labelNames: ["database", "sid", "table"] as const,
    registers: [this.registry],
  });
  readonly failures = new Counter({
    name: "kvsz_source_errors_total",
    help:
      "Failed attempts of a source (each retried on its own; the log and /readyz say the error).",
    labelNames: SOURCE,
    registers: [this.registry],
  });
  readonly connected = new Gauge({
    name: "kvsz_source_connected",
    help: "1 while the source's replication stream is running, else 0.",
    labelNames: SOURCE,
    registers: [this.registry],
  });
  readonly waiting = new Gauge({
    name: "kvsz_source_waiting",
    help:
      "1 while another kvsz process holds the source's destination lock (this one waits to take it over), else 0.",
    labelNames: SOURCE,
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: "kvsz_batch_size",
    help: "Source changes per destination transaction.",
    labelNames: SOURCE,
    buckets: BATCH_SIZE_BUCKETS,
    registers: [this.registry],
  });
  readonly commitSeconds = new Histogram({
    name: "kvsz_apply_commit_seconds",
    help: "Time to apply one destination transaction, from its first write to its commit.",
    labelNames: SOURCE,
    buckets: OPERATION_SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly transactions = new Counter({
    name: "kvsz_transactions_total",
    help: "Source transactions applied to the destination.",
    labelNames: SOURCE,
    registers: [this.registry],
  });
  readonly rows = new Counter({
    name: "kvsz_rows_total",
    help: "Rows written to the destination, by table mode (clone, append, history).",
    labelNames: ["database", "sid", "mode"] as const,
    registers: [this.registry],
  });
  readonly info = new Gauge({
    name: "kvsz_info",
    help: "Always 1; the kvsz version as a label.",
    labelNames: ["version"] as const,
    registers: [this.registry],
  });

  constructor(opts: MetricsOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#perSourceTables = opts.perSourceTables ?? Infinity;
    this.sync = new SyncBoard(opts.tty);
    this.info.set({ version: VERSION }, 1);
  }

  /** The hooks of one source for `SourcePipeline`; asking again for the same source shares its state. */
  pipelineEvents(database: string, sid: string): PipelineEvents {
    const s = this.#source(database, sid);
    const labels = { database, sid };
    const beat = () => this.heartbeat.set(labels, this.#now() / 1000);
    return {
      onConnected: (connected) => {
        s.connected = connected;
        if (connected) {
          s.connectedMs = this.#now();
          this.sync.streaming(labels);
        } else {
          s.walEnd = 0n;
          s.confirmed = null;
        }
        this.connected.set(labels, connected ? 1 : 0);
        if (connected) beat();
      },
      onFailure: (error) => {
        s.error = error;
        this.failures.inc(labels);
      },
      onCommit: (info: CommitInfo) => {
        beat();
        s.error = null;
        if (info.endLsn > s.keepaliveLsn && info.commitTimeIso !== null) {
          const t = Date.parse(info.commitTimeIso);
          if (Number.isFinite(t)) s.caughtUpMs = t;
        }
        this.batchSize.observe(this.#scope(labels), info.changes);
        this.commitSeconds.observe(this.#scope(labels), info.seconds);
        this.transactions.inc(labels, info.transactions);
        for (const mode of ["clone", "append", "history"] as const) {
          if (info.counts[mode] > 0) this.rows.inc({ ...labels, mode }, info.counts[mode]);
        }
      },
      onAnomaly: (a: Anomaly) => {
        this.anomalies.inc({ ...this.#scope(labels), table: a.route.source, kind: a.kind });
      },
      onOneByOne: (table: string) => this.oneByOne.inc({ ...this.#scope(labels), table }),
      onColumnDrift: ({ table, drift, stopped }: DriftReport) => {
        for (const d of s.drift.get(table) ?? []) {
          this.columnDrift.remove({ ...labels, table, column: d.column, kind: d.kind });
        }
        for (const d of drift) {
          this.columnDrift.set({ ...labels, table, column: d.column, kind: d.kind }, 1);
        }
        s.drift.set(table, drift);
        if (stopped) this.tableStopped.set({ ...labels, table }, 1);
        else this.tableStopped.remove({ ...labels, table });
      },
      onSlotLag: (lag: SlotLag) => this.setLag(database, sid, lag),
      onConfirmed: (confirmed, walEnd) => {
        s.confirmed = confirmed;
        if (walEnd > s.walEnd) s.walEnd = walEnd;
      },
      onWalEnd: (walEnd: bigint) => {
        beat();
        if (walEnd > s.keepaliveLsn) s.keepaliveLsn = walEnd;
        if (s.connected && walEnd > s.walEnd) s.walEnd = walEnd;
        s.caughtUpMs = this.#now();
      },
      syncProgress: () =>
        this.sync.source(labels, (table, rows, bytes) => {
          beat();
          if (rows > 0) this.syncRows.inc({ ...this.#scope(labels), table }, rows);
          if (bytes > 0) this.syncBytes.inc({ ...this.#scope(labels), table }, bytes);
        }),
      onOperations: (table, { operation, count, seconds }) => {
        beat();
        const l = { ...this.#scope(labels), table, operation, result: "success" };
        if (count > 0) this.operations.inc(l, count);
        this.operationSeconds.observe(l, seconds);
      },
      onLockWait: (waiting) => {
        s.waiting = waiting;
        this.waiting.set(labels, waiting ? 1 : 0);
      },
    };
  }

  /** Records what the source says about the slot (from `pg_replication_slots`); null removes the series. */
  setLag(database: string, sid: string, lag: SlotLag): void {
    const s = this.#source(database, sid);
    const labels = { database, sid };
    s.polledLagBytes = lag.bytes;
    // The stream's WAL end lags behind while kvsz reads nothing (backpressure): the poller's counts too.
    if (s.connected && lag.currentLsn !== undefined && lag.currentLsn > s.walEnd) {
      s.walEnd = lag.currentLsn;
    }
    if (lag.retainedBytes === null) this.retainedWal.remove(labels);
    else if (lag.retainedBytes !== undefined) this.retainedWal.set(labels, lag.retainedBytes);
  }

  /**
   * Seconds the destination is behind a source: 0 when the slot has nothing
   * unconfirmed, else the time since the destination was last known to be up
   * to date (the commit time of the last applied commit, or the last
   * keepalive, whichever came last); before any event, since registration.
   */
  lagSeconds(database: string, sid: string): number {
    return this.#lagSeconds(this.#source(database, sid));
  }

  /** Readiness: every source connected and at most `maxLagSeconds` behind. */
  readiness(maxLagSeconds: number): Readiness {
    const sources = [...this.#sources.values()].map((s): SourceReadiness => {
      const lagSeconds = this.#lagSeconds(s);
      const state = !s.connected
        ? (this.sync.copying(s) ? "syncing" : s.waiting ? "waiting" : "disconnected")
        : lagSeconds > maxLagSeconds
        ? "lagging"
        : "streaming";
      return {
        database: s.database,
        sid: s.sid,
        state,
        ready: state === "streaming",
        connected: s.connected,
        lagSeconds,
        lagBytes: this.#lagBytes(s),
        error: s.connected && this.#now() - s.connectedMs >= ERROR_SHOWN_MS ? null : s.error,
      };
    });
    return { ready: sources.every((s) => s.ready), sources };
  }

  /** Sources known to the metrics, as `{database, sid}`. */
  sources(): { database: string; sid: string }[] {
    return [...this.#sources.values()].map((s) => ({ database: s.database, sid: s.sid }));
  }

  /** Forgets a source (removed from the config): its series disappear from the exposition. */
  async removeSource(database: string, sid: string): Promise<void> {
    this.#sources.delete(key(database, sid));
    this.sync.remove({ database, sid });
    this.#checkSummed();
    for (const metric of this.#all()) {
      const { values } = await metric.get();
      const seen = new Set<string>();
      for (const v of values) {
        const labels = { ...v.labels } as Record<string, string | number>;
        if (labels.database !== database || String(labels.sid) !== sid) continue;
        delete labels.le;
        const id = JSON.stringify(labels);
        if (seen.has(id)) continue;
        seen.add(id);
        // deno-lint-ignore no-explicit-any
        (metric as any).remove(labels);
      }
    }
  }

  /** Changes `metrics.per_source_tables` (a config reload). */
  setPerSourceTables(max: number): void {
    this.#perSourceTables = max;
    this.#checkSummed();
  }

  /** The labels of a source on a per-table series or a per-source histogram: none once summed. */
  #scope(labels: { database: string; sid: string }): { database?: string; sid?: string } {
    return this.#summed ? {} : labels;
  }

  /**
   * Sums the per-table series over sources once there are more sources than
   * `metrics.per_source_tables`, and labels them per source again when there
   * are no longer: their series start over.
   */
  #checkSummed(): void {
    const summed = this.#sources.size > this.#perSourceTables;
    if (summed === this.#summed) return;
    this.#summed = summed;
    for (const metric of this.#perTable()) metric.reset();
    log("metrics").info(
      summed
        ? "more sources than metrics.per_source_tables ({max}): per-table series are summed over sources, without database and sid"
        : "no more sources than metrics.per_source_tables ({max}): per-table series are per source again",
      { max: this.#perSourceTables },
    );
  }

  /** The families whose series are summed over sources beyond `metrics.per_source_tables`. */
  #perTable() {
    return [
      this.operations,
      this.operationSeconds,
      this.syncRows,
      this.syncBytes,
      this.anomalies,
      this.oneByOne,
      this.batchSize,
      this.commitSeconds,
    ];
  }

  /** The text exposition (format 0.0.4) of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  #all() {
    return [
      this.operations,
      this.operationSeconds,
      this.syncRows,
      this.syncBytes,
      this.heartbeat,
      this.lagBytesGauge,
      this.lagSecondsGauge,
      this.retainedWal,
      this.anomalies,
      this.oneByOne,
      this.columnDrift,
      this.tableStopped,
      this.connected,
      this.waiting,
      this.failures,
      this.batchSize,
      this.commitSeconds,
      this.transactions,
      this.rows,
    ];
  }

  #source(database: string, sid: string): SourceState {
    const k = key(database, sid);
    let s = this.#sources.get(k);
    if (!s) {
      s = {
        database,
        sid,
        connected: false,
        connectedMs: 0,
        error: null,
        waiting: false,
        registeredMs: this.#now(),
        caughtUpMs: null,
        keepaliveLsn: 0n,
        polledLagBytes: null,
        walEnd: 0n,
        confirmed: null,
        drift: new Map(),
      };
      this.#sources.set(k, s);
      this.connected.set({ database, sid }, 0);
      this.waiting.set({ database, sid }, 0);
      this.failures.inc({ database, sid }, 0);
      this.sync.add({ database, sid });
      this.#checkSummed();
    }
    return s;
  }

  /** Unconfirmed WAL: from the stream while the source streams, else as polled; null when unknown. */
  #lagBytes(s: SourceState): number | null {
    if (!s.connected || s.confirmed === null) return s.polledLagBytes;
    return s.walEnd > s.confirmed ? Number(s.walEnd - s.confirmed) : 0;
  }

  #lagSeconds(s: SourceState): number {
    if (this.#lagBytes(s) === 0) return 0;
    const since = s.caughtUpMs ?? s.registeredMs;
    return Math.max(0, (this.#now() - since) / 1000);
  }
}

function key(database: string, sid: string): string {
  return `${database}\u0000${sid}`;
}
