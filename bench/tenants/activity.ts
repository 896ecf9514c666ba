/**
 * What the engines hold on the servers of the `tenants` scenario: connections
 * and worker processes sampled from `pg_stat_activity` on both servers (the
 * benchmark's own sessions, application_name `kvsz-bench…`, left out), with
 * their peaks, and the memory of processes from `/proc/<pid>/smaps_rollup`.
 */
import postgres from "postgres";
import type { Server, Sql } from "../servers.ts";
import { processCpuSeconds, sleep } from "../util.ts";

/** One reading of both servers. */
export interface ActivitySample {
  /** Destination client backends (kvsz's connections; native has none). */
  destConnections: number;
  /** Destination logical replication workers (native's apply and table-sync workers). */
  destWorkers: number;
  /** Source client backends (not walsenders). */
  sourceConnections: number;
  /** Source walsenders (one per streaming slot, plus table syncs). */
  walsenders: number;
}

const SOURCE_QUERY = `SELECT
    count(*) FILTER (WHERE backend_type = 'client backend')::int AS connections,
    count(*) FILTER (WHERE backend_type = 'walsender')::int AS walsenders
  FROM pg_stat_activity WHERE coalesce(application_name, '') NOT LIKE 'kvsz-bench%'`;
const DEST_QUERY = `SELECT
    count(*) FILTER (WHERE backend_type = 'client backend')::int AS connections,
    count(*) FILTER (WHERE backend_type LIKE 'logical replication%worker')::int AS workers
  FROM pg_stat_activity WHERE coalesce(application_name, '') NOT LIKE 'kvsz-bench%'`;

/**
 * Samples both servers every `intervalMs` until stopped; keeps the peaks and
 * the last sample. {@link ActivitySampler.start} connects before the engine
 * does, so a full destination does not shut the sampler out.
 */
export class ActivitySampler {
  peak: ActivitySample = {
    destConnections: 0,
    destWorkers: 0,
    sourceConnections: 0,
    walsenders: 0,
  };
  last: ActivitySample | null = null;
  samples = 0;
  #running = true;
  #loop: Promise<void>;
  #source: Sql;
  #dest: Sql;

  /** Starts sampling; resolves after the first sample. */
  static async start(source: Server, dest: Server, intervalMs = 250): Promise<ActivitySampler> {
    const sampler = new ActivitySampler(source, dest, intervalMs);
    for (let i = 0; i < 1000 && sampler.samples === 0; i++) await sleep(10);
    if (sampler.samples === 0) {
      await sampler.stop();
      throw new Error("could not read pg_stat_activity on the tenant servers for 10 s");
    }
    return sampler;
  }

  private constructor(source: Server, dest: Server, intervalMs: number) {
    const client = (s: Server) =>
      postgres(s.url(), {
        max: 1,
        onnotice: () => {},
        connection: { application_name: "kvsz-bench-sampler" },
      });
    this.#source = client(source);
    this.#dest = client(dest);
    this.#loop = this.#run(intervalMs);
  }

  async #run(intervalMs: number): Promise<void> {
    while (this.#running) {
      try {
        const [[s], [d]] = await Promise.all([
          this.#source.unsafe(SOURCE_QUERY),
          this.#dest.unsafe(DEST_QUERY),
        ]);
        const sample: ActivitySample = {
          destConnections: d.connections,
          destWorkers: d.workers,
          sourceConnections: s.connections,
          walsenders: s.walsenders,
        };
        for (const k of Object.keys(sample) as (keyof ActivitySample)[]) {
          this.peak[k] = Math.max(this.peak[k], sample[k]);
        }
        this.last = sample;
        this.samples++;
      } catch {
        // A full server refuses even the sampler now and then: the next sample counts.
      }
      await sleep(intervalMs);
    }
  }

  /** Stops sampling and closes its connections; returns the peaks. */
  async stop(): Promise<ActivitySample> {
    this.#running = false;
    await this.#loop;
    await Promise.all([this.#source.end({ timeout: 2 }), this.#dest.end({ timeout: 2 })]);
    return this.peak;
  }
}

/** Memory of some processes, MiB: resident, and private (not shared buffers or libraries). */
export interface ProcessMemory {
  processes: number;
  rssMb: number;
  privateMb: number;
}

/** Sums `Rss` and `Private_Clean + Private_Dirty` of `/proc/<pid>/smaps_rollup` over `pids`. */
export function processesMemory(pids: number[]): ProcessMemory {
  let rss = 0;
  let priv = 0;
  let processes = 0;
  for (const pid of pids) {
    let text: string;
    try {
      text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
    } catch {
      continue; // gone
    }
    const kb = (field: string) =>
      Number(text.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"))?.[1] ?? 0);
    rss += kb("Rss");
    priv += kb("Private_Clean") + kb("Private_Dirty");
    processes++;
  }
  return { processes, rssMb: rss / 1024, privateMb: priv / 1024 };
}

/**
 * Process ids on the destination that serve an engine: kvsz's client
 * backends (`kind = "connections"`) or native's logical replication workers.
 */
export async function destinationPids(
  dest: Server,
  kind: "connections" | "workers",
): Promise<number[]> {
  const filter = kind === "connections"
    ? `backend_type = 'client backend'`
    : `backend_type LIKE 'logical replication%worker'`;
  const rows = await dest.sql().unsafe(
    `SELECT pid FROM pg_stat_activity
      WHERE ${filter} AND coalesce(application_name, '') NOT LIKE 'kvsz-bench%'`,
  );
  return rows.map((r) => r.pid as number);
}

/** The source's WAL position in bytes. */
export async function sourceWalBytes(source: Sql): Promise<bigint> {
  const [r] = await source.unsafe(
    `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::int8::text AS b`,
  );
  return BigInt(r.b);
}

/**
 * Waits until the source server is quiet: no autovacuum worker, and under
 * 64 kB of WAL written in 2 s (after a copy of many tenants, autovacuum
 * analyzes every fresh database, and each WAL record wakes every walsender:
 * that is not an idle engine). Gives up after `maxSeconds`; returns the
 * seconds waited.
 */
export async function waitSourceQuiet(source: Sql, maxSeconds: number): Promise<number> {
  const started = performance.now();
  while ((performance.now() - started) / 1000 < maxSeconds) {
    const before = await sourceWalBytes(source);
    await sleep(2_000);
    const [{ n }] = await source.unsafe(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'`,
    );
    if (n === 0 && (await sourceWalBytes(source)) - before < 65_536n) break;
  }
  return (performance.now() - started) / 1000;
}

/**
 * CPU seconds the server's running walsenders have used since they started
 * (from `/proc/<pid>/stat`; the benchmark runs beside the servers).
 */
export async function walsendersCpuSeconds(server: Server): Promise<number> {
  const rows = await server.sql("postgres").unsafe(
    `SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'`,
  );
  return rows.reduce((sum, r) => sum + (processCpuSeconds(Number(r.pid)) ?? 0), 0);
}

/**
 * MiB of WAL between the logical slots' restart points and the source's
 * current position, averaged over the slots: what each walsender reads
 * (decoding every tenant's records) when it starts.
 */
export async function walToReadMb(source: Sql): Promise<number | null> {
  const [r] = await source.unsafe(
    `SELECT (avg(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)) / 1048576)::float8 AS mb
       FROM pg_replication_slots WHERE slot_type = 'logical'`,
  );
  return r.mb === null ? null : Number(r.mb);
}
