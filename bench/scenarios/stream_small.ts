/**
 * `stream-small` (and `history`, which replays the same backlog into history
 * targets): with every engine stopped and its slot kept, pgbench tpcb-like
 * transactions pile up in the slots; then each engine in turn is started and
 * timed until the destination has everything (the marker inserted after the
 * load is there, the rows are equal) and until its slot confirms the source's
 * LSN at load end. `stream-small` also drains the same backlog from a slot of
 * its own with a consumer that decodes and discards (the walsender floor, see
 * bench/floor.ts): the speed no consumer of one slot can beat. `stream-live`:
 * the same load with the engine running; the figure is the lag when the load
 * ends.
 */
import { type BenchContext, SOURCE_DB } from "../context.ts";
import { type Engine, KvszEngine, waitConfirmed } from "../engines.ts";
import { FLOOR_NAME, FloorSlot } from "../floor.ts";
import { pgbenchLoad } from "../pgbench.ts";
import { FLOOR_COLUMN as FLOOR } from "../report.ts";
import type { WalsenderCpu } from "../slots.ts";
import { machineCpuSeconds, now, say } from "../util.ts";
import {
  insertMarker,
  largeTable,
  pgbenchRowCount,
  replicatedTables,
  type TargetForm,
} from "../workload.ts";
import { catchUp, verify, waitMarker } from "./common.ts";
import { verifyTransform } from "./transform.ts";

/** One engine of the catch-up phase and where its result goes. */
export interface CatchUpRun {
  engine: Engine;
  /** stream-small-tls: the same catch-up over TLS, compared with stream-small's run of the engine. */
  scenario: "stream-small" | "stream-small-tls" | "history" | "transform";
  /** Engine column in the report. */
  reportAs: string;
  form: TargetForm | "transform";
}

/**
 * Loads the backlog once, then times each engine's catch-up from it; with a
 * `stream-small` run, first the walsender floor from a slot of its own.
 */
export async function runCatchUp(ctx: BenchContext, runs: CatchUpRun[]): Promise<void> {
  // Created before the backlog, so the backlog is in it; the same tables as native's publication.
  const floor = runs.some((r) => r.scenario === "stream-small")
    ? await FloorSlot.create(ctx.source, SOURCE_DB, replicatedTables(largeTable("native")))
    : null;
  try {
    await catchUpRuns(ctx, runs, floor);
  } finally {
    await floor?.drop();
  }
}

async function catchUpRuns(
  ctx: BenchContext,
  runs: CatchUpRun[],
  floor: FloorSlot | null,
): Promise<void> {
  const src = ctx.source.sql(SOURCE_DB);
  const txns = ctx.opts.transactions;
  say(
    `  stream-small: pgbench backlog of ${
      txns.toLocaleString("en-US")
    } transactions (engines stopped)`,
  );
  const load = await pgbenchLoad(ctx.pgbench, ctx.source.url(SOURCE_DB), txns, ctx.opts.clients);
  const transactions = load.transactions ?? txns;
  const changes = transactions * 4;
  const marker = await insertMarker(src, "end of backlog");
  // The insert position, not pg_current_wal_lsn() (the write position, which with
  // synchronous_commit = off can be short of the marker's commit record).
  const [{ lsn: lsnEnd }] = await ctx.source.sql().unsafe(
    `SELECT pg_current_wal_insert_lsn()::text AS lsn`,
  );
  say(
    `  stream-small: backlog ready (${load.seconds.toFixed(1)} s, ${fmtTps(load.tps)} tps; ${
      changes.toLocaleString("en-US")
    } changed rows up to ${lsnEnd})`,
  );
  if (floor) await runFloor(ctx, floor, lsnEnd, changes);
  /** Each engine's stream-small seconds, for its stream-small-tls run. */
  const plainSeconds = new Map<string, number>();
  for (const run of runs) {
    const e = run.engine;
    const dest = ctx.dest.sql(e.destDb);
    const rowsBefore = run.form === "history" ? await pgbenchRowCount(dest) : 0;
    const cpu0 = machineCpuSeconds();
    const t0 = now();
    await e.start();
    await waitMarker(ctx, e, marker);
    const seconds = (now() - t0) / 1000;
    const machineCpu = machineCpuSeconds() - cpu0;
    // Everything is sent by now: the walsender's CPU over its life is that of the catch-up.
    const walsender = await e.walsenderCpu();
    let engineCpu = await e.cpuSeconds();
    let startup: number | null = null;
    if (e instanceof KvszEngine && e.streamingAt) {
      startup = (e.streamingAt.time - t0) / 1000;
      // kvsz: CPU of its process between "streaming from" and everything applied.
      if (engineCpu !== null && e.streamingAt.cpu !== null) engineCpu -= e.streamingAt.cpu;
    }
    await waitConfirmed(ctx.source, e.slots, lsnEnd);
    const confirm = (now() - t0) / 1000;
    if (run.form === "transform") await verifyTransform(src, dest, `transform ${e.label}`);
    else await verify(src, dest, run.form, `${run.scenario} ${e.label}`);
    const rec = ctx.rec;
    rec.add(run.scenario, "seconds", run.reportAs, seconds);
    rec.add(run.scenario, "changes_per_s", run.reportAs, changes / seconds);
    if (run.scenario === "stream-small-tls") {
      rec.add(
        run.scenario,
        "engine_cpu_per_m",
        run.reportAs,
        engineCpu === null ? null : (engineCpu / changes) * 1e6,
      );
      const plain = plainSeconds.get(run.reportAs);
      rec.add(run.scenario, "tls_over_plain", run.reportAs, plain ? seconds / plain : null);
    } else if (run.scenario === "transform") {
      const plain = plainSeconds.get(run.reportAs);
      rec.add(run.scenario, "catchup_over_plain", run.reportAs, plain ? plain / seconds : null);
    } else if (run.scenario === "stream-small") {
      plainSeconds.set(run.reportAs, seconds);
      rec.add(run.scenario, "confirm_seconds", run.reportAs, confirm);
      rec.add(run.scenario, "startup_seconds", run.reportAs, startup);
      rec.add(run.scenario, "machine_cpu_per_m", run.reportAs, (machineCpu / changes) * 1e6);
      rec.add(
        run.scenario,
        "engine_cpu_per_m",
        run.reportAs,
        engineCpu === null ? null : (engineCpu / changes) * 1e6,
      );
      recordWalsender(ctx, run.reportAs, walsender);
    } else {
      rec.add(
        run.scenario,
        "rows_written",
        run.reportAs,
        (await pgbenchRowCount(dest)) - rowsBefore,
      );
    }
    say(
      `  ${run.scenario}: ${e.label} applied ${changes.toLocaleString("en-US")} changes in ${
        seconds.toFixed(2)
      } s = ${Math.round(changes / seconds).toLocaleString("en-US")} rows/s${
        startup !== null ? ` (streaming after ${startup.toFixed(2)} s)` : ""
      }, slot confirmed at ${confirm.toFixed(2)} s, engine CPU ${
        engineCpu?.toFixed(2) ?? "?"
      } s, walsender CPU ${walsender?.cpu.toFixed(2) ?? "?"} s, machine CPU ${
        machineCpu.toFixed(2)
      } s; rows equal`,
    );
    await e.stop();
  }
}

/** Drains the floor slot with a decode-and-discard consumer and records it as column "floor". */
async function runFloor(
  ctx: BenchContext,
  floor: FloorSlot,
  lsnEnd: string,
  changes: number,
): Promise<void> {
  const d = await floor.decodeOnly(lsnEnd);
  const r = await floor.drain(lsnEnd);
  await floor.drop(); // before the engines run: nothing but their own slots on the source
  // The backlog's changes plus the end-of-backlog marker.
  if (r.changes < changes) {
    throw new Error(
      `walsender floor: decoded ${r.changes} changes in ${r.transactions} transactions from ${FLOOR_NAME}, expected at least ${changes} (end LSN ${lsnEnd}, reached by ${r.reachedBy})`,
    );
  }
  const rec = ctx.rec;
  rec.add("stream-small", "seconds", FLOOR, r.seconds);
  rec.add("stream-small", "changes_per_s", FLOOR, changes / r.seconds);
  rec.add("stream-small", "machine_cpu_per_m", FLOOR, (r.machineCpu / changes) * 1e6);
  rec.add("stream-small", "engine_cpu_per_m", FLOOR, (r.consumerCpu / changes) * 1e6);
  rec.add("stream-small", "consumer_cpu_seconds", FLOOR, r.consumerCpu);
  rec.add("stream-small", "decode_only_changes_per_s", FLOOR, changes / d.seconds);
  rec.add("stream-small", "decode_only_cpu_seconds", FLOOR, d.backendCpu);
  recordWalsender(
    ctx,
    FLOOR,
    r.walsenderCpu === null ? null : {
      cpu: r.walsenderCpu,
      system: r.walsenderSystemCpu ?? 0,
      lifetime: r.walsenderLifetime ?? 0,
    },
  );
  say(
    `  stream-small: walsender floor (own slot, kvsz's reader, null sink) decoded ${
      r.changes.toLocaleString("en-US")
    } changes in ${r.transactions.toLocaleString("en-US")} transactions in ${
      r.seconds.toFixed(2)
    } s = ${Math.round(changes / r.seconds).toLocaleString("en-US")} rows/s, walsender CPU ${
      r.walsenderCpu?.toFixed(2) ?? "?"
    } s (${busy(r.walsenderCpu, r.walsenderLifetime)}), consumer CPU ${
      r.consumerCpu.toFixed(2)
    } s, machine CPU ${r.machineCpu.toFixed(2)} s`,
  );
  say(
    `  stream-small: decode only (pg_logical_slot_peek_binary_changes, no network): ${
      d.messages.toLocaleString("en-US")
    } pgoutput messages in ${d.seconds.toFixed(2)} s = ${
      Math.round(changes / d.seconds).toLocaleString("en-US")
    } rows/s, backend CPU ${d.backendCpu?.toFixed(2) ?? "?"} s (system ${
      d.backendSystemCpu?.toFixed(2) ?? "?"
    } s); walsender system CPU while streaming to the floor ${
      r.walsenderSystemCpu?.toFixed(2) ?? "?"
    } s`,
  );
}

/** Records the CPU of the source walsender that streamed to `column`, and how busy it was. */
function recordWalsender(
  ctx: BenchContext,
  column: string,
  ws: WalsenderCpu | null,
): void {
  ctx.rec.add("stream-small", "walsender_cpu_seconds", column, ws?.cpu ?? null);
  ctx.rec.add("stream-small", "walsender_system_cpu_seconds", column, ws?.system ?? null);
  ctx.rec.add(
    "stream-small",
    "walsender_busy_pct",
    column,
    ws && ws.lifetime > 0 ? (100 * ws.cpu) / ws.lifetime : null,
  );
}

function busy(cpu: number | null, lifetime: number | null): string {
  return cpu !== null && lifetime ? `${Math.round((100 * cpu) / lifetime)} % of its life` : "?";
}

/** Runs the load with each engine running and records the lag at load end. */
export async function runLive(ctx: BenchContext, order: Engine[]): Promise<number[]> {
  const src = ctx.source.sql(SOURCE_DB);
  const tpsSeen: number[] = [];
  for (const e of order) {
    await e.start();
    await catchUp(ctx, e, src);
    const txns = ctx.opts.liveTransactions;
    say(`  stream-live: ${e.label} running, pgbench ${txns.toLocaleString("en-US")} transactions`);
    const load = await pgbenchLoad(ctx.pgbench, ctx.source.url(SOURCE_DB), txns, ctx.opts.clients);
    const tEnd = now();
    const marker = await insertMarker(src, "end of live load");
    await waitMarker(ctx, e, marker);
    const lag = (now() - tEnd) / 1000;
    await verify(src, ctx.dest.sql(e.destDb), "clone", `stream-live ${e.label}`);
    ctx.rec.add("stream-live", "lag_seconds", e.label, lag);
    ctx.rec.add("stream-live", "tps", e.label, load.tps);
    if (load.tps) tpsSeen.push(load.tps);
    say(
      `  stream-live: ${e.label} lag at load end ${lag.toFixed(2)} s (pgbench ${
        fmtTps(load.tps)
      } tps)`,
    );
    await e.stop();
  }
  return tpsSeen;
}

function fmtTps(tps: number | null): string {
  return tps === null ? "?" : Math.round(tps).toLocaleString("en-US");
}
