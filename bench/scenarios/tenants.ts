/**
 * `tenants`: N tenant databases on one source server (a small keyed
 * `accounts` table each) into ONE destination table with `sid` for kvsz,
 * against a destination at PostgreSQL's default `max_connections = 100`; the
 * reference is native logical replication as a user would set it up without
 * kvsz: one subscription per tenant, each into a destination database of its
 * own, on the same servers. Each engine in turn: copy every tenant (timed),
 * idle (kvsz CPU and RSS), a steady load over every tenant (latency and the
 * spread between tenants), then a backlog over every tenant with the engine
 * stopped (catch-up). Connections and processes on both servers are sampled
 * throughout. The scenario runs once (not per round) on servers of its own,
 * stopped at its end, and prints the targets of issue 15 as met / not met.
 *
 * An engine that does not get every tenant copied and streaming in time
 * (kvsz before its shared writer pool, with more tenants than the
 * destination's connections allow) is a result: its peaks, how far it got and
 * its most frequent errors are reported, and its other steps are skipped.
 */
import type { BenchContext } from "../context.ts";
import { cpuCount, cpusBusySeconds, now, say, sleep } from "../util.ts";
import {
  ActivitySampler,
  processesMemory,
  sourceWalBytes,
  waitSourceQuiet,
  walsendersCpuSeconds,
  walToReadMb,
} from "../tenants/activity.ts";
import { NotStreamingError, type TenantEngine } from "../tenants/engine.ts";
import { type Fleet, setupFleet, startFleet } from "../tenants/fleet.ts";
import { KvszTenants } from "../tenants/kvsz.ts";
import {
  backlog,
  CHANGES_PER_TRANSACTION,
  compareDigests,
  insertMarkers,
  latency,
  markerTimes,
  sourceDigests,
  sourceTickTimes,
  steadyLoad,
} from "../tenants/load.ts";
import { NativeTenants } from "../tenants/native.ts";
import { targetLines, type TenantRun } from "../tenants/targets.ts";

const SCENARIO = "tenants";

/** Runs the tenants scenario (both engines, or kvsz alone above `--native-max-tenants`). */
export async function tenantsScenario(ctx: BenchContext): Promise<void> {
  const o = ctx.opts.tenants;
  const n = o.count;
  const withNative = n <= o.nativeMax;
  const perTenant = Math.max(1, Math.round(o.backlogChanges / CHANGES_PER_TRANSACTION / n));
  ctx.rec.titles[SCENARIO] = `tenants (${n} tenants × ${o.rows.toLocaleString("en-US")} accounts; ${
    (perTenant * CHANGES_PER_TRANSACTION * n).toLocaleString("en-US")
  }-change backlog; ${
    o.changesPerSecond.toLocaleString("en-US")
  } changes/s for ${o.loadSeconds} s; 1 run)`;
  say(`tenants: ${n} tenant databases${withNative ? ", kvsz then native" : ", kvsz alone"}`);
  const load = (await Deno.readTextFile("/proc/loadavg").catch(() => "")).split(" ")[0];
  if (load) {
    ctx.rec.notes.push(
      `tenants: machine load average ${load} when it started (${navigator.hardwareConcurrency} cores)`,
    );
  }
  if (!withNative) {
    ctx.rec.notes.push(
      `tenants: native not run above ${o.nativeMax} tenants (one apply worker process per subscription; --native-max-tenants)`,
    );
  }
  const fleet = await startFleet(ctx.opts.major, n, { native: withNative, splitCpus: o.splitCpus });
  ctx.rec.notes.push(
    fleet.cpus
      ? `tenants: source server and load on CPU ${fleet.cpus.source}, destination server and engine on CPU ${fleet.cpus.destination}, as on two machines (bench/tenants/cpus.ts; --tenant-cpus shared to turn off)`
      : `tenants: every process shares every CPU (--tenant-cpus shared, or fewer than 2 CPUs, or no taskset)`,
  );
  try {
    await setupFleet(fleet, o.rows, withNative);
    const kvsz = await runEngine(ctx, fleet, new KvszTenants(ctx, fleet), { phase: 10, perTenant });
    const native = withNative
      ? await runEngine(ctx, fleet, new NativeTenants(fleet, ctx.opts.nativeStreaming), {
        phase: 20,
        perTenant,
      })
      : null;
    ctx.rec.targets.push(
      ...targetLines(n, kvsz, native, {
        apply: ctx.opts.apply,
        changesPerSecond: o.changesPerSecond,
      }),
    );
  } finally {
    await fleet.stop();
  }
}

/**
 * One engine through the scenario's steps; records its figures and returns
 * them for the targets. Ticks of phase `phase` are the steady load, `+1` its
 * markers, `+2` the backlog, `+3` the backlog's markers.
 */
async function runEngine(
  ctx: BenchContext,
  fleet: Fleet,
  engine: TenantEngine,
  opts: { phase: number; perTenant: number },
): Promise<TenantRun> {
  const o = ctx.opts.tenants;
  const n = fleet.tenants.length;
  const label = engine.label;
  const add = (metric: string, value: number | null) => ctx.rec.add(SCENARIO, metric, label, value);
  const run: TenantRun = {
    label,
    failure: null,
    copySeconds: null,
    peak: null,
    idleCpuPct: null,
    peakRssMb: null,
    catchUpChangesPerSecond: null,
    loadChangesPerSecond: null,
    latency: null,
  };
  const kvsz = engine instanceof KvszTenants ? engine : null;
  const sampler = await ActivitySampler.start(fleet.source, fleet.dest);
  try {
    say(`  tenants: ${label} copies ${n} tenants`);
    const t0 = now();
    await engine.start();
    try {
      await engine.waitAllStreaming((o.timeoutSeconds || 120 + n) * 1000);
    } catch (e) {
      if (!(e instanceof NotStreamingError)) throw e;
      run.failure = `${e.streaming} of ${n} tenants streaming after ${Math.round(e.seconds)} s`;
      say(`  tenants: ${e.message}`);
      for (const p of e.problems) say(`    ${p}`);
      ctx.rec.notes.push(
        `tenants: ${e.message}; ${
          kvsz
            ? `destination connections peaked at ${sampler.peak.destConnections} of max_connections ${fleet.destMaxConnections}`
            : `destination workers peaked at ${sampler.peak.destWorkers}`
        }${e.problems.length ? `; most frequent problems: ${e.problems.join("; ")}` : ""}`,
      );
      return run;
    }
    run.copySeconds = (now() - t0) / 1000;
    add("copy_seconds", run.copySeconds);
    say(
      `  tenants: ${label}: every tenant copied and streaming in ${run.copySeconds.toFixed(1)} s`,
    );

    await sleep(3_000); // settle: the last copy's connections close
    const quietAfter = await waitSourceQuiet(fleet.source.sql(), 180);
    const wal0 = await sourceWalBytes(fleet.source.sql());
    const cpu0 = await engine.cpuSeconds();
    await sleep(o.idleSeconds * 1000);
    const cpu1 = await engine.cpuSeconds();
    const idleWalKb = Number((await sourceWalBytes(fleet.source.sql())) - wal0) / 1024;
    add("idle_source_wal_kb", idleWalKb);
    if (cpu0 !== null && cpu1 !== null) run.idleCpuPct = ((cpu1 - cpu0) / o.idleSeconds) * 100;
    add("idle_cpu_pct", run.idleCpuPct);
    if (kvsz) {
      const rss = kvsz.rssMb();
      add("rss_mb", rss);
      add("rss_per_tenant_kib", rss === null ? null : (rss * 1024) / n);
    }
    say(
      `  tenants: ${label} idle for ${o.idleSeconds} s: CPU ${
        run.idleCpuPct?.toFixed(2)
      } % of a core (the source quiet after ${quietAfter.toFixed(0)} s; ${
        idleWalKb.toFixed(0)
      } kB of source WAL meanwhile)`,
    );

    say(
      `  tenants: ${label}: steady load of ${o.changesPerSecond} changed rows/s for ${o.loadSeconds} s`,
    );
    const load = await steadyLoad(fleet, {
      phase: opts.phase,
      changesPerSecond: o.changesPerSecond,
      seconds: o.loadSeconds,
      rows: o.rows,
    });
    const mem = processesMemory(await engine.destPids());
    add("dest_processes", mem.processes);
    add("dest_private_mb", mem.privateMb);
    await engine.waitMarkers(await insertMarkers(fleet, opts.phase + 1), opts.phase + 1, 300_000);
    run.loadChangesPerSecond = load.changesPerSecond;
    run.latency = latency(
      fleet.tenants,
      await sourceTickTimes(fleet, opts.phase),
      await engine.destTickTimes(opts.phase),
    );
    const lat = run.latency;
    add("load_changes_per_s", load.changesPerSecond);
    add("p50_ms", lat.p50Ms);
    add("p99_ms", lat.p99Ms);
    add("max_ms", lat.maxMs);
    add("median_tenant_ms", lat.medianTenantMs);
    add("slowest_tenant_ms", lat.slowestTenantMs);
    add("slowest_over_median", lat.slowestTenantMs / lat.medianTenantMs);
    if (lat.missing > 0) {
      throw new Error(`${label}: ${lat.missing} ticks missing at the destination`);
    }
    say(
      `  tenants: ${label}: ${lat.ticks} ticks at ${
        Math.round(load.changesPerSecond)
      } rows/s: p50 ${lat.p50Ms.toFixed(0)} ms, p99 ${
        lat.p99Ms.toFixed(0)
      } ms; tenants' mean latency: median ${lat.medianTenantMs.toFixed(0)} ms, slowest ${
        lat.slowestTenantMs.toFixed(0)
      } ms (${lat.slowestTenant})`,
    );

    run.peakRssMb = kvsz?.engine.peakRssMb() ?? null; // VmHWM of this kvsz process
    await engine.pause();
    const walBefore = await sourceWalBytes(fleet.source.sql());
    const changes = await backlog(fleet, {
      phase: opts.phase + 2,
      transactionsPerTenant: opts.perTenant,
      rows: o.rows,
    });
    const markers = await insertMarkers(fleet, opts.phase + 3);
    say(
      `  tenants: ${label}: catching up ${
        changes.toLocaleString("en-US")
      } changed rows over ${n} tenants`,
    );
    const backlogMb = Number(await sourceWalBytes(fleet.source.sql()) - walBefore) /
      1048576;
    const walMb = await walToReadMb(fleet.source.sql());
    const startedAt = Date.now() / 1000; // wall clock, against the destination's dst_ts
    const sourceCpus = fleet.cpus?.source ?? null;
    const busyBefore = cpusBusySeconds(sourceCpus);
    await engine.start();
    await engine.waitMarkers(markers, opts.phase + 3, 600_000);
    // Every walsender now running started with this catch-up (the engine's were gone).
    const walsenderCpu = await walsendersCpuSeconds(fleet.source);
    const busy = cpusBusySeconds(sourceCpus) - busyBefore;
    const busyPct = (100 * busy) / ((Date.now() / 1000 - startedAt) * cpuCount(sourceCpus));
    const finished = markerTimes(markers, await engine.destTickTimes(opts.phase + 3));
    const seconds = finished[finished.length - 1] - startedAt;
    run.catchUpChangesPerSecond = changes / seconds;
    add("catchup_seconds", seconds);
    add("changes_per_s", run.catchUpChangesPerSecond);
    add("catchup_backlog_wal_mb", backlogMb);
    add("catchup_wal_mb", walMb);
    add("catchup_walsender_cpu_s", walsenderCpu);
    add("catchup_walsender_cpu_s_per_mb", walMb ? walsenderCpu / walMb : null);
    add("catchup_source_busy_pct", busyPct);
    add("catchup_walsender_share_pct", busy > 0 ? (100 * walsenderCpu) / busy : null);
    say(
      `  tenants: ${label}: caught up in ${seconds.toFixed(2)} s = ${
        Math.round(changes / seconds).toLocaleString("en-US")
      } rows/s (first tenant done after ${(finished[0] - startedAt).toFixed(2)} s); source CPU ${
        Math.round(busyPct)
      } % busy, its walsenders ${walsenderCpu.toFixed(1)} s of the ${
        busy.toFixed(1)
      } s, each reading ${walMb?.toFixed(1) ?? "?"} MiB of WAL`,
    );
    compareDigests(`tenants (${label})`, await sourceDigests(fleet), await engine.destDigests());
    say(`  tenants: ${label}: every tenant's rows equal at the destination`);
    return run;
  } finally {
    run.peak = await sampler.stop();
    const hwm = kvsz?.engine.peakRssMb() ?? null; // of the process started for the catch-up
    run.peakRssMb = Math.max(run.peakRssMb ?? 0, hwm ?? 0) || null;
    add("dest_connections", run.peak.destConnections);
    add("dest_workers", run.peak.destWorkers);
    add("source_connections", run.peak.sourceConnections);
    add("walsenders", run.peak.walsenders);
    if (kvsz) add("peak_rss_mb", run.peakRssMb);
    await engine.dispose();
    if (kvsz) await dropKvszSlots(fleet);
  }
}

/** Drops kvsz's slots (before native runs: they would retain WAL). */
async function dropKvszSlots(fleet: Fleet): Promise<void> {
  await fleet.source.sql().unsafe(
    `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
      WHERE slot_name LIKE 'kvsz\\_%' AND NOT active`,
  );
}
