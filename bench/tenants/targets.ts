/**
 * The targets of issue 15 ("Many tenants") against what the `tenants`
 * scenario measured, one line each: met, not met, or not measured (and why).
 * The connection, memory and CPU targets are set for 1,000 tenants, the
 * catch-up, latency and fairness targets for 200 side by side with native;
 * each line says at how many tenants it was measured.
 */
import { DEFAULT_APPLY, DEFAULT_SYNC } from "../../lib/config/defaults.ts";
import { fmt } from "../util.ts";
import type { ActivitySample } from "./activity.ts";
import type { LatencyResult } from "./load.ts";

/** What one engine's run of the scenario measured (null: not reached). */
export interface TenantRun {
  label: "kvsz" | "native";
  /** Every tenant copied and streaming; otherwise why not. */
  failure: string | null;
  copySeconds: number | null;
  peak: ActivitySample | null;
  idleCpuPct: number | null;
  peakRssMb: number | null;
  catchUpChangesPerSecond: number | null;
  loadChangesPerSecond: number | null;
  latency: LatencyResult | null;
}

/** kvsz's `apply.workers`: the configured value, else kvsz's default, else the issue's 4. */
export function applyWorkers(apply: Record<string, number>): number {
  const defaults = DEFAULT_APPLY as Record<string, unknown>;
  return apply.workers ?? (typeof defaults.workers === "number" ? defaults.workers : 4);
}

/** The target lines for `tenants` tenants; `native` is null when native did not run. */
export function targetLines(
  tenants: number,
  kvsz: TenantRun,
  native: TenantRun | null,
  opts: { apply: Record<string, number>; changesPerSecond: number },
): string[] {
  const at = (n: number) => tenants === n ? `${n} tenants` : `${n} tenants; measured at ${tenants}`;
  const limit = applyWorkers(opts.apply) + DEFAULT_SYNC.parallelism + 2;
  const lines: string[] = [];
  const line = (ok: boolean | null, what: string, figure: string, scope: string) =>
    lines.push(
      `- ${ok === null ? "not measured" : ok ? "met" : "NOT MET"}: ${what}: ${figure} (${scope})`,
    );
  const ms = (x: number | undefined) => `${fmt(x, 0)} ms`;
  line(
    kvsz.failure === null,
    "every tenant copied and streaming in one kvsz process",
    kvsz.failure ?? `in ${fmt(kvsz.copySeconds, 1)} s`,
    at(1000),
  );
  // A bound kept by a kvsz that never got every tenant streaming proves nothing: only a breach counts.
  const bounded = (value: number | null, ok: (v: number) => boolean) =>
    value === null || (kvsz.failure !== null && ok(value)) ? null : ok(value);
  const conns = kvsz.peak?.destConnections ?? null;
  line(
    bounded(conns, (c) => c <= limit),
    `destination connections at most apply.workers + sync.parallelism + 2 = ${limit}`,
    `peak ${fmt(conns)}`,
    at(1000),
  );
  line(
    bounded(kvsz.peakRssMb, (r) => r < 600),
    "kvsz RSS under 600 MiB",
    `peak ${fmt(kvsz.peakRssMb)} MiB`,
    at(1000),
  );
  line(
    kvsz.idleCpuPct === null ? null : kvsz.idleCpuPct < 2,
    "kvsz CPU under 2 % of a core while every tenant is idle",
    `${fmt(kvsz.idleCpuPct, 2)} %`,
    at(1000),
  );
  const ratio = kvsz.catchUpChangesPerSecond !== null && native?.catchUpChangesPerSecond
    ? kvsz.catchUpChangesPerSecond / native.catchUpChangesPerSecond
    : null;
  line(
    ratio === null ? null : ratio >= 1.5,
    "catch-up of a backlog over every tenant at least 1.5× native's changed rows/s",
    ratio === null
      ? native ? "one of the engines did not catch up" : "native not run"
      : `kvsz ${fmt(kvsz.catchUpChangesPerSecond)} rows/s, native ${
        fmt(native!.catchUpChangesPerSecond)
      } rows/s: ${ratio.toFixed(2)}×`,
    at(200),
  );
  const lat = kvsz.latency;
  line(
    lat === null ? null : lat.p99Ms < 1000,
    `p99 latency under 1 s at ${fmt(opts.changesPerSecond)} changed rows/s over every tenant`,
    lat === null
      ? "not reached"
      : `p99 ${ms(lat.p99Ms)} (p50 ${ms(lat.p50Ms)}) at ${fmt(kvsz.loadChangesPerSecond)} rows/s${
        native?.latency ? `; native p99 ${ms(native.latency.p99Ms)}` : ""
      }`,
    at(200),
  );
  const spread = lat ? lat.slowestTenantMs / lat.medianTenantMs : null;
  line(
    spread === null ? null : spread <= 2,
    "the slowest tenant's lag within 2× the median tenant's",
    lat === null || spread === null
      ? "not reached"
      : `slowest ${lat.slowestTenant} ${ms(lat.slowestTenantMs)}, median ${
        ms(lat.medianTenantMs)
      }: ${spread.toFixed(2)}×`,
    at(200),
  );
  return [`Targets of issue 15 (tenants scenario, ${tenants} tenants):`, ...lines];
}
