/**
 * `stream-small` (and `history`, which replays the same backlog into history
 * targets): with every engine stopped and its slot kept, pgbench tpcb-like
 * transactions pile up in the slots; then each engine in turn is started and
 * timed until the destination has everything (the marker inserted after the
 * load is there, the rows are equal) and until its slot confirms the source's
 * LSN at load end. `stream-live`: the same load with the engine running; the
 * figure is the lag when the load ends.
 */
import { type BenchContext, SOURCE_DB } from "../context.ts";
import { type Engine, KvszEngine, waitConfirmed } from "../engines.ts";
import { pgbenchLoad } from "../pgbench.ts";
import { machineCpuSeconds, now, say } from "../util.ts";
import { insertMarker, pgbenchRowCount, type TargetForm } from "../workload.ts";
import { catchUp, verify, waitMarker } from "./common.ts";

/** One engine of the catch-up phase and where its result goes. */
export interface CatchUpRun {
  engine: Engine;
  scenario: "stream-small" | "history";
  /** Engine column in the report. */
  reportAs: string;
  form: TargetForm;
}

/** Loads the backlog once, then times each engine's catch-up from it. */
export async function runCatchUp(ctx: BenchContext, runs: CatchUpRun[]): Promise<void> {
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
  const lsnEnd = await ctx.source.currentLsn();
  say(
    `  stream-small: backlog ready (${load.seconds.toFixed(1)} s, ${fmtTps(load.tps)} tps; ${
      changes.toLocaleString("en-US")
    } changed rows up to ${lsnEnd})`,
  );
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
    let engineCpu = await e.cpuSeconds();
    let startup: number | null = null;
    if (e instanceof KvszEngine && e.streamingAt) {
      startup = (e.streamingAt.time - t0) / 1000;
      // kvsz: CPU of its process between "streaming from" and everything applied.
      if (engineCpu !== null && e.streamingAt.cpu !== null) engineCpu -= e.streamingAt.cpu;
    }
    await waitConfirmed(ctx.source, e.slots, lsnEnd);
    const confirm = (now() - t0) / 1000;
    await verify(src, dest, run.form, `${run.scenario} ${e.label}`);
    const rec = ctx.rec;
    rec.add(run.scenario, "seconds", run.reportAs, seconds);
    rec.add(run.scenario, "changes_per_s", run.reportAs, changes / seconds);
    if (run.scenario === "stream-small") {
      rec.add(run.scenario, "confirm_seconds", run.reportAs, confirm);
      rec.add(run.scenario, "startup_seconds", run.reportAs, startup);
      rec.add(run.scenario, "machine_cpu_per_m", run.reportAs, (machineCpu / changes) * 1e6);
      rec.add(
        run.scenario,
        "engine_cpu_per_m",
        run.reportAs,
        engineCpu === null ? null : (engineCpu / changes) * 1e6,
      );
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
      } s, machine CPU ${machineCpu.toFixed(2)} s; rows equal`,
    );
    await e.stop();
  }
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
