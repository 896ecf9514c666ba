/** What every scenario gets: options, servers, pgbench, the recorder. */
import type { Recorder } from "./report.ts";
import type { Server } from "./servers.ts";

/** Scenario names accepted by `--scenarios`, in run order. */
export const SCENARIOS = [
  "initial",
  "stream-small",
  "stream-small-tls",
  "stream-live",
  "stream-large",
  "history",
  "transform",
  "latency",
  "fan-in",
  "tenants",
  "upgrade",
] as const;
export type Scenario = typeof SCENARIOS[number];

/** Benchmark options (command-line flags with their defaults). */
export interface BenchOptions {
  scenarios: Set<Scenario>;
  rounds: number;
  /** pgbench scale of the main source (100,000 accounts per unit). */
  scale: number;
  /** Backlog of tpcb-like transactions for stream-small and history. */
  transactions: number;
  /** Transactions of the live load (engine running). */
  liveTransactions: number;
  /** pgbench clients of the loads. */
  clients: number;
  /** Rows of the stream-large transaction. */
  largeRows: number;
  fanInSources: number;
  /** tpcb-like transactions over all fan-in sources together. */
  fanInTransactions: number;
  fanInScale: number;
  latencySeconds: number;
  /** pgbench --rate of the latency load; 0 = half of the measured maximum. */
  latencyRate: number;
  /** The `tenants` scenario: tenant databases, accounts per tenant, and its loads. */
  tenants: TenantOptions;
  /** The `upgrade` scenario: pgbench scale of its PostgreSQL 12 source. */
  upgradeScale: number;
  /** The `upgrade` scenario: transactions/s of its live client. */
  upgradeRate: number;
  /** Native subscription `streaming` option. */
  nativeStreaming: string;
  /** kvsz `apply:` overrides. */
  apply: Record<string, number>;
  /** Write `deno --cpu-prof` profiles of every kvsz start here. */
  cpuProfDir?: string;
  /** Keep the work directory after a successful run. */
  keep: boolean;
  json: string;
  major: number;
}

/** Shared state of a benchmark run. */
export interface BenchContext {
  opts: BenchOptions;
  source: Server;
  dest: Server;
  pgbench: string;
  workDir: string;
  rec: Recorder;
  /** kvsz logs of every start are appended here. */
  kvszLog: string;
}

/** Database of the main source. */
export const SOURCE_DB = "bench";

/** Sizes of the `tenants` scenario. */
export interface TenantOptions {
  /** Tenant databases on the source server. */
  count: number;
  /** Rows of each tenant's accounts table. */
  rows: number;
  /** Changed rows of the backlog, over all tenants together. */
  backlogChanges: number;
  /** Changed rows per second of the steady load, over all tenants together. */
  changesPerSecond: number;
  /** Seconds of the steady load. */
  loadSeconds: number;
  /** Seconds kvsz is watched while every tenant is idle. */
  idleSeconds: number;
  /** Seconds an engine gets to copy every tenant and stream (0: 120 + 1 per tenant). */
  timeoutSeconds: number;
  /** Above this many tenants native is not run (one worker process per tenant). */
  nativeMax: number;
  /** Source side and destination side on CPUs of their own (tenants/cpus.ts). */
  splitCpus: boolean;
}
