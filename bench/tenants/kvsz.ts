/**
 * kvsz in the `tenants` scenario: one process, one config with a source per
 * tenant database (sid t0001 …), every tenant's `accounts` and `ticks` into
 * one destination database whose targets carry `sid`.
 */
import type { BenchContext } from "../context.ts";
import { KvszEngine } from "../engines.ts";
import { now, processMemoryMb, sleep, waitUntil } from "../util.ts";
import { destinationPids } from "./activity.ts";
import { NotStreamingError, type TenantEngine } from "./engine.ts";
import { type Fleet, KVSZ_DEST_DB } from "./fleet.ts";
import { digests, type Marker, type TickTimes } from "./load.ts";
import { KvszWatch } from "./kvsz_watch.ts";

/** Gives up on "every tenant streaming" when no new tenant copied or streamed this long while kvsz logs problems. */
const STALL_MS = 90_000;

/** kvsz over every tenant of the fleet. */
export class KvszTenants implements TenantEngine {
  readonly label = "kvsz";
  readonly watch = new KvszWatch();
  readonly engine: KvszEngine;
  #dbBySid: Map<string, string>;

  constructor(ctx: BenchContext, readonly fleet: Fleet) {
    const tables = { accounts: "clone" as const, ticks: "clone" as const };
    this.engine = new KvszEngine({
      label: "kvsz",
      source: fleet.source,
      dest: fleet.dest,
      destDb: KVSZ_DEST_DB,
      sources: fleet.tenants.map((t) => ({
        database: t.database,
        url: fleet.source.url(t.database),
        sid: t.sid,
        tables,
      })),
      workDir: ctx.workDir,
      apply: ctx.opts.apply,
      cpuProfDir: ctx.opts.cpuProfDir,
      cpus: fleet.cpus?.destination,
      logFile: ctx.kvszLog,
      onLine: this.watch.line,
    });
    this.#dbBySid = new Map(fleet.tenants.map((t) => [t.sid, t.database]));
  }

  async start(): Promise<void> {
    // Connected before kvsz, so a destination full of kvsz's connections does not shut us out.
    await this.fleet.dest.sql(KVSZ_DEST_DB).unsafe(`SELECT 1`);
    this.watch.reset();
    await this.engine.start();
  }

  /**
   * Every tenant streaming: a `streaming from` line per sid, or (should the
   * log change) every kvsz slot's walsender past START_REPLICATION on the
   * source, which kvsz sends once the tenant's copy is committed.
   */
  async waitAllStreaming(timeoutMs: number): Promise<void> {
    const started = now();
    const n = this.fleet.tenants.length;
    let replicating = 0;
    let polled = 0;
    while (Math.max(this.watch.streaming.size, replicating) < n) {
      this.#checkAlive(n, (now() - started) / 1000);
      if (now() - polled > 1000) {
        polled = now();
        const count = await this.#replicatingSlots();
        if (count > replicating) this.watch.progressAt = now();
        replicating = count;
      }
      const waited = now() - started;
      const stalled = now() - this.watch.progressAt > STALL_MS && this.watch.problems.size > 0;
      if (waited > timeoutMs || stalled) {
        const why = stalled
          ? `no new tenant copied or streaming for ${STALL_MS / 1000} s`
          : `timed out after ${Math.round(waited / 1000)} s`;
        const streaming = Math.max(this.watch.streaming.size, replicating);
        throw new NotStreamingError(
          `kvsz did not get every tenant copied and streaming (${why}): ${streaming} of ${n} streaming, ${this.watch.copied.size} copied`,
          streaming,
          waited / 1000,
          this.watch.summary(),
        );
      }
      await sleep(200);
    }
  }

  /** Throws {@link NotStreamingError} when kvsz exited (e.g. its start-up checks failed). */
  #checkAlive(n: number, seconds: number): void {
    try {
      this.engine.checkAlive();
    } catch (e) {
      const exited = (e as Error).message.split("; last output")[0];
      throw new NotStreamingError(
        `${exited} before every tenant was copied and streaming: ${this.watch.streaming.size} of ${n} streaming`,
        this.watch.streaming.size,
        seconds,
        this.watch.summary(),
      );
    }
  }

  /** kvsz slots whose walsender is replicating (catchup or streaming). */
  async #replicatingSlots(): Promise<number> {
    const [r] = await this.fleet.source.sql().unsafe(
      `SELECT count(*)::int AS n FROM pg_replication_slots s
         JOIN pg_stat_replication r ON r.pid = s.active_pid
        WHERE s.slot_name = ANY($1::text[]) AND r.state IN ('catchup', 'streaming')`,
      [this.engine.slots],
    );
    return r.n;
  }

  pause(): Promise<void> {
    return this.engine.stop();
  }

  async waitMarkers(markers: Map<string, Marker>, phase: number, timeoutMs: number) {
    const sql = this.fleet.dest.sql(KVSZ_DEST_DB);
    await waitUntil(async () => {
      const [r] = await sql.unsafe(`SELECT count(*)::int AS n FROM ticks WHERE phase = $1`, [
        phase,
      ]);
      return r.n >= markers.size;
    }, {
      what: `kvsz: the marker of every tenant (phase ${phase})`,
      timeoutMs,
      intervalMs: 100,
      alive: () => this.engine.checkAlive(),
    });
  }

  async destTickTimes(phase: number): Promise<TickTimes> {
    const rows = await this.fleet.dest.sql(KVSZ_DEST_DB).unsafe(
      `SELECT sid, id::int AS id, extract(epoch FROM dst_ts)::text AS t FROM ticks WHERE phase = $1`,
      [phase],
    );
    const out: TickTimes = new Map();
    for (const r of rows) {
      const db = this.#dbBySid.get(r.sid)!;
      if (!out.has(db)) out.set(db, new Map());
      out.get(db)!.set(r.id, Number(r.t));
    }
    return out;
  }

  async destDigests(): Promise<Map<string, string>> {
    const bySid = await digests(this.fleet.dest.sql(KVSZ_DEST_DB), true);
    return new Map([...bySid].map(([sid, d]) => [this.#dbBySid.get(sid) ?? sid, d]));
  }

  cpuSeconds(): Promise<number | null> {
    return this.engine.cpuSeconds();
  }

  /** Resident memory of the kvsz process now, MiB. */
  rssMb(): number | null {
    return this.engine.pid === null ? null : processMemoryMb(this.engine.pid, "VmRSS");
  }

  destPids(): Promise<number[]> {
    return destinationPids(this.fleet.dest, "connections");
  }

  dispose(): Promise<void> {
    return this.engine.dispose();
  }
}
