/**
 * The two engines under test, behind one interface: kvsz (the `kvsz run`
 * process, stopped with SIGTERM, its slot kept) and PostgreSQL's native
 * logical replication (a publication on the source, a subscription on the
 * destination, stopped with ALTER SUBSCRIPTION DISABLE, its slot kept).
 */
import { stringify } from "yaml";
import { onCleanup } from "./cleanup.ts";
import type { Server } from "./servers.ts";
import { dropSlotAtCleanup, type WalsenderCpu, walsenderCpu } from "./slots.ts";
import { now, processCpuSeconds, processMemoryMb, say, sleep, waitUntil } from "./util.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
/** `setsid` (util-linux), when the machine has it: kvsz runs in a session of its own. */
const SETSID = ["/usr/bin/setsid", "/bin/setsid"].find((p) => {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
});

/** The V8 flags `deno task kvsz` runs with (heap cap), or $KVSZ_BENCH_V8_FLAGS. */
const V8_FLAGS = Deno.env.get("KVSZ_BENCH_V8_FLAGS") ??
  JSON.parse(Deno.readTextFileSync(new URL("../deno.json", import.meta.url))).tasks.kvsz
    .match(/--v8-flags=\S+/)?.[0] ??
  "";

/** One replication engine writing into one destination database. */
export interface Engine {
  /** Label in the report: "kvsz" or "native". */
  readonly label: string;
  /** Destination database it writes into. */
  readonly destDb: string;
  /** Replication slot names on the source (one per source). */
  readonly slots: string[];
  /** Starts (or resumes) replication. */
  start(): Promise<void>;
  /** Resolves when every table is copied and streaming has begun (first start). */
  waitStreaming(timeoutMs?: number): Promise<void>;
  /** Monotonic time (ms) when every table's initial copy was committed, seen while waiting. */
  readonly copiedAt: number | null;
  /** Stops at once (SIGKILL for kvsz); the slot is kept. */
  kill(): Promise<void>;
  /** Stops replication, keeping the slot; resolves when the slot is released. */
  stop(): Promise<void>;
  /** Throws when the engine died on its own. */
  checkAlive(): void;
  /** CPU seconds of the engine's own process(es) since start (native: apply workers). */
  cpuSeconds(): Promise<number | null>;
  /** CPU seconds and lifetime of the source walsender(s) streaming the engine's slots. */
  walsenderCpu(): Promise<WalsenderCpu | null>;
  /** Removes what the engine left on the servers (subscription; slots are dropped by the round). */
  dispose(): Promise<void>;
}

/** A source of a kvsz config. */
export interface KvszSource {
  database: string;
  url: string;
  sid: string;
  /** Source table → mode (clone or history), or its whole mapping (e.g. filter and set). */
  tables: Record<string, "clone" | "history" | Record<string, unknown>>;
}

/** Options of {@link KvszEngine}. */
export interface KvszOptions {
  label: string;
  source: Server;
  dest: Server;
  destDb: string;
  sources: KvszSource[];
  workDir: string;
  /** `apply:` overrides (batch_size, commit_interval_ms, queue_size); kvsz defaults otherwise. */
  apply?: Record<string, number>;
  /** Directory for `deno run --cpu-prof` profiles of the kvsz process (one per start). */
  cpuProfDir?: string;
  /** CPUs kvsz runs on (`taskset -c` list; see tenants/cpus.ts); default: the benchmark's. */
  cpus?: string;
  /** Where the kvsz logs of every start are appended. */
  logFile: string;
  /** Called with every line kvsz prints (JSON log lines). */
  onLine?: (line: string) => void;
  /** The whole config to write instead of the one made from `sources` (e.g. `all_tables`). */
  config?: Record<string, unknown>;
}

/** The name kvsz gives a source's slot and publication (see lib/pg/identifiers.ts). */
export function kvszSlotName(database: string, sid: string): string {
  return `kvsz_${database}_${sid}`.toLowerCase().replace(/[^a-z0-9_]/g, "_").slice(0, 63);
}

/** kvsz as a subprocess: `deno run -A main.ts run --config <generated yaml>`. */
export class KvszEngine implements Engine {
  readonly label: string;
  readonly destDb: string;
  readonly slots: string[];
  #configPath: string;
  #child: Deno.ChildProcess | null = null;
  #exited: Deno.CommandStatus | null = null;
  #status: Promise<Deno.CommandStatus> | null = null;
  #readers: Promise<void> = Promise.resolve();
  #tail: string[] = [];
  #streamingLines = 0;
  #copiedLines = 0;
  #lastOutputAt = 0;
  copiedAt: number | null = null;
  #unregister: () => void = () => {};
  #log: Deno.FsFile | null = null;
  /** Time (ms, monotonic) and process CPU seconds when the last expected "streaming from" arrived. */
  streamingAt: { time: number; cpu: number | null } | null = null;
  startedAt = 0;

  constructor(readonly opts: KvszOptions) {
    this.label = opts.label;
    this.destDb = opts.destDb;
    this.slots = opts.sources.map((s) => kvszSlotName(s.database, s.sid));
    for (const slot of this.slots) dropSlotAtCleanup(opts.source, slot);
    this.#configPath = `${opts.workDir}/${opts.label.replace(/\W+/g, "_")}-${opts.destDb}.yaml`;
    const config = opts.config ?? {
      destination: { url: opts.dest.url(opts.destDb), schema: "public" },
      databases: opts.sources.map((s) => ({
        database: s.database,
        urls: [{ url: s.url, sid: s.sid }],
        tables: Object.fromEntries(
          Object.entries(s.tables).map((
            [t, mode],
          ) => [t, mode === "clone" ? null : typeof mode === "string" ? { type: mode } : mode]),
        ),
      })),
      ...(opts.apply && Object.keys(opts.apply).length ? { apply: opts.apply } : {}),
      metrics: { listen: "" },
      log: { level: Deno.env.get("KVSZ_BENCH_LOG_LEVEL") ?? "info", format: "json" },
    };
    Deno.writeTextFileSync(this.#configPath, stringify(config));
  }

  /** Path of the config file kvsz runs with (for `kvsz switchover` and `kvsz verify`). */
  get configPath(): string {
    return this.#configPath;
  }

  /** Process id of the running kvsz, or null. */
  get pid(): number | null {
    return this.#child && !this.#exited ? this.#child.pid : null;
  }

  async start(): Promise<void> {
    if (this.#child && !this.#exited) throw new Error(`${this.label} is already running`);
    this.#tail = [];
    this.#streamingLines = 0;
    this.#copiedLines = 0;
    this.copiedAt = null;
    this.streamingAt = null;
    this.#exited = null;
    this.#log ??= await Deno.open(this.opts.logFile, { append: true, create: true });
    const prof = this.opts.cpuProfDir
      ? ["--cpu-prof", `--cpu-prof-dir=${this.opts.cpuProfDir}`]
      : [];
    this.startedAt = now();
    this.#lastOutputAt = now();
    // In a session of its own (setsid), as a service runs and as pg_ctl starts the
    // servers: the kernel's autogroup scheduling then shares the CPU between kvsz,
    // the servers and the benchmark's own load generator fairly, instead of
    // counting kvsz and the load generator as one.
    const command = [
      ...(this.opts.cpus ? ["taskset", "-c", this.opts.cpus] : []),
      ...(SETSID ? [SETSID] : []),
      Deno.execPath(),
    ];
    const child = new Deno.Command(command[0], {
      args: [
        ...command.slice(1),
        "run",
        "-A",
        ...(V8_FLAGS ? [V8_FLAGS] : []),
        ...prof,
        MAIN,
        "run",
        "--config",
        this.#configPath,
      ],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    this.#child = child;
    this.#status = child.status.then((s) => (this.#exited = s));
    this.#unregister = onCleanup(`kvsz process ${child.pid}`, () => this.#kill(), () => {
      try {
        child.kill("SIGTERM"); // abrupt exit: no waiting, the slot is dropped with the server
      } catch { /* gone */ }
    });
    this.#readers = Promise.all([this.#read(child.stdout), this.#read(child.stderr)]).then(
      () => {},
    );
  }

  async #read(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    for await (const chunk of stream) {
      const text = decoder.decode(chunk, { stream: true });
      await this.#log?.write(new TextEncoder().encode(text));
      pending += text;
      let nl;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        this.#lastOutputAt = now();
        this.opts.onLine?.(line);
        this.#tail.push(line);
        if (this.#tail.length > 15) this.#tail.shift();
        if (line.includes(`"message":"copied `)) {
          this.#copiedLines++;
          const tables = this.opts.sources.reduce((n, s) => n + Object.keys(s.tables).length, 0);
          if (this.#copiedLines === tables) this.copiedAt = now();
        }
        if (line.includes("streaming from")) {
          this.#streamingLines++;
          if (this.#streamingLines === this.opts.sources.length) {
            this.streamingAt = {
              time: now(),
              cpu: this.#child ? processCpuSeconds(this.#child.pid) : null,
            };
          }
        }
      }
    }
  }

  /** The last lines kvsz printed. */
  tail(): string {
    return this.#tail.join("\n");
  }

  /**
   * Waits for "streaming from" of every source. Throws {@link StalledError}
   * when kvsz prints nothing for `stallMs` before that (it hung).
   */
  waitStreaming(timeoutMs = 600_000, stallMs = 15_000): Promise<void> {
    return waitUntil(() => this.streamingAt !== null, {
      what: `${this.label}: "streaming from" for all ${this.opts.sources.length} source(s)`,
      timeoutMs,
      intervalMs: 20,
      alive: () => {
        this.checkAlive();
        if (now() - this.#lastOutputAt > stallMs) {
          throw new StalledError(
            `${this.label} printed nothing for ${
              stallMs / 1000
            } s before streaming from all ${this.opts.sources.length} source(s) (${this.#streamingLines} streaming); last output:\n${this.tail()}`,
          );
        }
      },
    });
  }

  async kill(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
    await this.#status;
    await this.#readers;
    this.#unregister();
    this.#child = null;
    await waitSlotsReleased(this.opts.source, this.slots);
  }

  checkAlive(): void {
    if (this.#exited) {
      throw new Error(
        `${this.label} exited with code ${this.#exited.code}; last output:\n${this.tail()}`,
      );
    }
  }

  cpuSeconds(): Promise<number | null> {
    return Promise.resolve(this.#child ? processCpuSeconds(this.#child.pid) : null);
  }

  walsenderCpu(): Promise<WalsenderCpu | null> {
    return walsenderCpu(this.opts.source, this.slots);
  }

  /** Peak resident memory of the running kvsz process (VmHWM), MiB. */
  peakRssMb(): number | null {
    return this.#child && !this.#exited ? processMemoryMb(this.#child.pid, "VmHWM") : null;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    if (!this.#exited) {
      try {
        child.kill("SIGTERM");
      } catch { /* exited meanwhile */ }
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 60_000);
    const status = await this.#status!;
    clearTimeout(timer);
    await this.#readers;
    this.#unregister();
    this.#child = null;
    if (status.code !== 0) {
      say(`warning: ${this.label} exited with code ${status.code}:\n${this.tail()}`);
    }
    await waitSlotsReleased(this.opts.source, this.slots);
  }

  async #kill(): Promise<void> {
    const child = this.#child;
    if (!child || this.#exited) return;
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 10_000);
    await this.#status;
    clearTimeout(timer);
  }

  async dispose(): Promise<void> {
    await this.stop();
    this.#log?.close();
    this.#log = null;
  }
}

/** kvsz stopped making progress (no output) before it streamed. */
export class StalledError extends Error {}

/** Options of {@link NativeEngine}. */
export interface NativeOptions {
  source: Server;
  sourceDb: string;
  dest: Server;
  destDb: string;
  /** Publication (created by the caller on the source) and subscription/slot name. */
  name: string;
  /** Subscription `streaming` option: off (PostgreSQL 17's default), on or parallel. */
  streaming: string;
  /** Connection string of the source (default: plain TCP, `source.url(sourceDb)`). */
  url?: string;
}

/** PostgreSQL's own logical replication: CREATE SUBSCRIPTION ... WITH (copy_data). */
export class NativeEngine implements Engine {
  readonly label = "native";
  readonly destDb: string;
  readonly slots: string[];
  #created = false;
  #unregister: () => void = () => {};
  startedAt = 0;
  copiedAt: number | null = null;

  constructor(readonly opts: NativeOptions) {
    this.destDb = opts.destDb;
    this.slots = [opts.name];
    dropSlotAtCleanup(opts.source, opts.name);
  }

  async start(): Promise<void> {
    const sql = this.opts.dest.sql(this.destDb);
    this.startedAt = now();
    this.copiedAt = null;
    if (!this.#created) {
      const conn = (this.opts.url ?? this.opts.source.url(this.opts.sourceDb)).replaceAll(
        "'",
        "''",
      );
      await sql.unsafe(
        `CREATE SUBSCRIPTION ${this.opts.name} CONNECTION '${conn}' PUBLICATION ${this.opts.name}
           WITH (copy_data = true, streaming = ${this.opts.streaming})`,
      );
      this.#created = true;
      // On a failed run: stop the apply worker first, so it does not hold the slot on the source.
      this.#unregister = onCleanup(`subscription ${this.opts.name}`, () => this.#drop());
    } else {
      await sql.unsafe(`ALTER SUBSCRIPTION ${this.opts.name} ENABLE`);
    }
  }

  waitStreaming(timeoutMs = 600_000): Promise<void> {
    const sql = this.opts.dest.sql(this.destDb);
    return waitUntil(async () => {
      // 's' (SYNCDONE): the table's copy is committed; 'r': the apply worker took it over.
      const [r] = await sql.unsafe(
        `SELECT count(*)::int AS n, count(*) FILTER (WHERE srsubstate <> 'r')::int AS pending,
                count(*) FILTER (WHERE srsubstate NOT IN ('s', 'r'))::int AS copying
           FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid
          WHERE s.subname = $1`,
        [this.opts.name],
      );
      if (r.n > 0 && r.copying === 0 && this.copiedAt === null) this.copiedAt = now();
      return r.n > 0 && r.pending === 0;
    }, { what: "native: every pg_subscription_rel in state r", timeoutMs, intervalMs: 20 });
  }

  checkAlive(): void {}

  kill(): Promise<void> {
    return this.stop();
  }

  /** Sum of the CPU seconds of this subscription's running workers. */
  async cpuSeconds(): Promise<number | null> {
    const rows = await this.opts.dest.sql(this.destDb).unsafe(
      `SELECT pid FROM pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL`,
      [this.opts.name],
    );
    if (rows.length === 0) return null;
    return rows.reduce((sum, r) => sum + (processCpuSeconds(r.pid) ?? 0), 0);
  }

  async stop(): Promise<void> {
    if (!this.#created) return;
    const sql = this.opts.dest.sql(this.destDb);
    await sql.unsafe(`ALTER SUBSCRIPTION ${this.opts.name} DISABLE`);
    await waitUntil(async () => {
      const rows = await sql.unsafe(
        `SELECT 1 FROM pg_stat_subscription WHERE subname = $1 AND pid IS NOT NULL`,
        [this.opts.name],
      );
      return rows.length === 0;
    }, { what: "native: apply workers gone after DISABLE", timeoutMs: 60_000 });
    await waitSlotsReleased(this.opts.source, this.slots);
  }

  walsenderCpu(): Promise<WalsenderCpu | null> {
    return walsenderCpu(this.opts.source, this.slots);
  }

  async dispose(): Promise<void> {
    if (!this.#created) return;
    await this.stop();
    await this.#drop();
  }

  /** Drops the subscription, keeping its slot (the round or the cleanup drops slots). */
  async #drop(): Promise<void> {
    if (!this.#created) return;
    const sql = this.opts.dest.sql(this.destDb);
    await sql.unsafe(`ALTER SUBSCRIPTION ${this.opts.name} DISABLE`);
    await sql.unsafe(`ALTER SUBSCRIPTION ${this.opts.name} SET (slot_name = NONE)`);
    await sql.unsafe(`DROP SUBSCRIPTION ${this.opts.name}`);
    this.#created = false;
    this.#unregister();
  }
}

/** Waits until no process holds these slots on the source. */
export async function waitSlotsReleased(source: Server, slots: string[]): Promise<void> {
  await waitUntil(async () => {
    const rows = await source.sql().unsafe(
      `SELECT 1 FROM pg_replication_slots WHERE slot_name = ANY($1::text[]) AND active`,
      [slots],
    );
    return rows.length === 0;
  }, { what: `slots ${slots.join(", ")} released`, timeoutMs: 60_000 });
}

/** Drops every replication slot and publication in `databases` on the source (ours: a throwaway server). */
export async function dropSlotsAndPublications(source: Server, databases: string[]): Promise<void> {
  await waitUntil(async () => {
    const rows = await source.sql().unsafe(
      `SELECT slot_name FROM pg_replication_slots WHERE database = ANY($1::text[]) AND active`,
      [databases],
    );
    return rows.length === 0;
  }, { what: "no active slot before dropping", timeoutMs: 60_000 });
  await source.sql().unsafe(
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
      WHERE database = ANY($1::text[])`,
    [databases],
  );
  for (const db of databases) {
    const pubs = await source.sql(db).unsafe(`SELECT pubname FROM pg_publication`);
    for (const p of pubs) await source.sql(db).unsafe(`DROP PUBLICATION "${p.pubname}"`);
  }
  await sleep(0);
}

/** Waits until the slot's confirmed_flush_lsn reaches `lsn`. */
export async function waitConfirmed(
  source: Server,
  slots: string[],
  lsn: string,
  timeoutMs = 120_000,
): Promise<void> {
  await waitUntil(async () => {
    const [r] = await source.sql().unsafe(
      `SELECT count(*) FILTER (WHERE confirmed_flush_lsn >= $2::pg_lsn)::int AS ok
         FROM pg_replication_slots WHERE slot_name = ANY($1::text[])`,
      [slots, lsn],
    );
    return r.ok === slots.length;
  }, { what: `slots ${slots.join(", ")} confirmed up to ${lsn}`, timeoutMs, intervalMs: 50 });
}
