/** Collects per-round measurements and renders the summary table and the JSON result. */
import { fmt, type Spread, spread } from "./util.ts";

/** One measured quantity. */
export interface MetricSpec {
  scenario: string;
  metric: string;
  /** Label in the table, e.g. "changed rows/s". */
  label: string;
  unit: string;
  digits: number;
  /** Whether a larger value is better (for the ratio's reading); null: informational, no ratio. */
  higherIsBetter: boolean | null;
}

/** Every metric the benchmark can record, in table order. */
export const METRICS: MetricSpec[] = [
  m("initial", "rows_per_s", "rows/s (start → every table copied)", "rows/s", 0, true),
  m("initial", "copied_seconds", "seconds (start → every table copied)", "s", 2, false),
  m("initial", "seconds", "seconds (start → streaming)", "s", 2, false),
  m("stream-small", "changes_per_s", "catch-up: changed rows/s", "rows/s", 0, true),
  m("stream-small", "seconds", "catch-up: seconds (start → applied)", "s", 2, false),
  m("stream-small", "confirm_seconds", "catch-up: seconds (start → slot confirmed)", "s", 2, false),
  m("stream-small", "startup_seconds", "catch-up: seconds (start → streaming)", "s", 2, null),
  m(
    "stream-small",
    "engine_cpu_per_m",
    "engine process CPU s per 1M changes (kvsz process / native apply worker / floor: the bench's reader)",
    "s",
    1,
    false,
  ),
  m(
    "stream-small",
    "machine_cpu_per_m",
    "machine CPU s per 1M changes (both servers + engine)",
    "s",
    1,
    false,
  ),
  m(
    "stream-small",
    "walsender_cpu_seconds",
    "source walsender CPU s (connect → sent)",
    "s",
    2,
    null,
  ),
  m(
    "stream-small",
    "walsender_system_cpu_seconds",
    "… of which system (kernel: sends to the consumer)",
    "s",
    2,
    null,
  ),
  m(
    "stream-small",
    "walsender_busy_pct",
    "source walsender busy (CPU / its lifetime; 100 % = one core)",
    "%",
    0,
    null,
  ),
  m(
    "stream-small",
    "decode_only_changes_per_s",
    "decode only, in the server, no network (peek of the floor slot): changed rows/s",
    "rows/s",
    0,
    true,
  ),
  m(
    "stream-small",
    "decode_only_cpu_seconds",
    "decode only: backend CPU s",
    "s",
    2,
    null,
  ),
  m("stream-small-tls", "changes_per_s", "catch-up over TLS: changed rows/s", "rows/s", 0, true),
  m("stream-small-tls", "seconds", "catch-up over TLS: seconds", "s", 2, false),
  m(
    "stream-small-tls",
    "tls_over_plain",
    "catch-up time over TLS / over plain TCP (same engine, same backlog)",
    "×",
    2,
    null,
  ),
  m("stream-small-tls", "engine_cpu_per_m", "engine process CPU s per 1M changes", "s", 1, false),
  m("stream-live", "lag_seconds", "lag when the load ends", "s", 2, false),
  m("stream-live", "tps", "pgbench tps during the live load", "tps", 0, null),
  m("stream-large", "rows_per_s", "rows/s (commit → applied)", "rows/s", 0, true),
  m("stream-large", "seconds", "seconds (commit → applied)", "s", 2, false),
  m("stream-large", "peak_rss_mb", "peak RSS (VmHWM)", "MiB", 0, false),
  m("history", "changes_per_s", "catch-up: changed rows/s", "rows/s", 0, true),
  m("history", "seconds", "catch-up: seconds", "s", 2, false),
  m("history", "rows_written", "destination rows inserted", "rows", 0, null),
  m("transform", "copy_rows_per_s", "initial copy: rows/s", "rows/s", 0, true),
  m(
    "transform",
    "copy_over_plain",
    "initial copy: speed / plain kvsz's (target ≥ 0.7)",
    "×",
    2,
    null,
  ),
  m("transform", "changes_per_s", "catch-up: changed rows/s", "rows/s", 0, true),
  m(
    "transform",
    "catchup_over_plain",
    "catch-up: speed / plain kvsz's (target ≥ 0.85)",
    "×",
    2,
    null,
  ),
  m("fan-in", "changes_per_s", "catch-up: changed rows/s, all sources", "rows/s", 0, true),
  m("fan-in", "seconds", "catch-up: seconds", "s", 2, false),
  m("fan-in", "engine_cpu_per_m", "kvsz process CPU s per 1M changes", "s", 1, false),
  m("latency", "p50_ms", "source commit → destination write, p50", "ms", 0, false),
  m("latency", "p99_ms", "source commit → destination write, p99", "ms", 0, false),
  m("latency", "max_ms", "source commit → destination write, max", "ms", 0, false),
  m("latency", "tps", "pgbench tps (target: half of max)", "tps", 0, null),
  m("tenants", "copy_seconds", "seconds until every tenant is copied and streaming", "s", 1, false),
  m(
    "tenants",
    "dest_connections",
    "destination connections at peak (of max_connections)",
    "",
    0,
    null,
  ),
  m(
    "tenants",
    "dest_workers",
    "destination worker processes at peak (native: apply + sync)",
    "",
    0,
    null,
  ),
  m("tenants", "source_connections", "source connections at peak (not walsenders)", "", 0, null),
  m("tenants", "walsenders", "source walsenders at peak", "", 0, null),
  m("tenants", "rss_mb", "kvsz RSS, every tenant idle", "MiB", 0, null),
  m("tenants", "rss_per_tenant_kib", "kvsz RSS per tenant (idle RSS / tenants)", "KiB", 0, null),
  m("tenants", "peak_rss_mb", "kvsz peak RSS (VmHWM), whole run", "MiB", 0, null),
  m(
    "tenants",
    "dest_processes",
    "destination processes of the engine (kvsz: its connections; native: its workers)",
    "",
    0,
    false,
  ),
  m("tenants", "dest_private_mb", "… their private memory (smaps_rollup)", "MiB", 0, false),
  m(
    "tenants",
    "idle_cpu_pct",
    "CPU, every tenant idle (kvsz process; native: its workers), % of a core",
    "%",
    2,
    false,
  ),
  m(
    "tenants",
    "changes_per_s",
    "catch-up, backlog over every tenant: changed rows/s",
    "rows/s",
    0,
    true,
  ),
  m(
    "tenants",
    "catchup_seconds",
    "catch-up: seconds (start → every tenant's marker)",
    "s",
    2,
    false,
  ),
  m("tenants", "catchup_backlog_wal_mb", "catch-up: WAL the backlog wrote, MiB", "MiB", 1, null),
  m(
    "tenants",
    "catchup_wal_mb",
    "catch-up: WAL each walsender reads (its slot's restart point → end), MiB",
    "MiB",
    1,
    null,
  ),
  m(
    "tenants",
    "catchup_walsender_cpu_s",
    "catch-up: CPU s of the source's walsenders (each reads every tenant's WAL)",
    "s",
    1,
    false,
  ),
  m(
    "tenants",
    "catchup_walsender_cpu_s_per_mb",
    "… per MiB each reads",
    "s",
    2,
    false,
  ),
  m(
    "tenants",
    "catchup_source_busy_pct",
    "catch-up: source CPU busy, % of the source's CPUs",
    "%",
    0,
    null,
  ),
  m(
    "tenants",
    "catchup_walsender_share_pct",
    "… of which the walsenders, % of the busy time",
    "%",
    0,
    null,
  ),
  m("tenants", "load_changes_per_s", "steady load achieved: changed rows/s", "rows/s", 0, null),
  m("tenants", "p50_ms", "steady load: source commit → destination write, p50", "ms", 0, false),
  m("tenants", "p99_ms", "steady load: source commit → destination write, p99", "ms", 0, false),
  m("tenants", "max_ms", "steady load: source commit → destination write, max", "ms", 0, false),
  m("tenants", "median_tenant_ms", "steady load: the median tenant's mean latency", "ms", 0, false),
  m(
    "tenants",
    "slowest_tenant_ms",
    "steady load: the slowest tenant's mean latency",
    "ms",
    0,
    false,
  ),
  m("tenants", "slowest_over_median", "slowest tenant / median tenant", "×", 2, false),
  m(
    "upgrade",
    "copy_seconds",
    "seconds: start → every table copied and the whole schema made (kvsz: run with create_tables; native: lib/schema + subscription)",
    "s",
    2,
    false,
  ),
  m(
    "upgrade",
    "copied_seconds",
    "seconds: start → streaming (kvsz) / every pg_subscription_rel 'r' (native), schema before the copy included",
    "s",
    2,
    false,
  ),
  m("upgrade", "load_tps", "live client on the source: transactions/s", "tps", 0, null),
  m("upgrade", "switchover_seconds", "kvsz switchover: seconds (start → exit 0)", "s", 2, null),
  m("upgrade", "switchover_downtime_seconds", "write downtime printed by switchover", "s", 2, null),
  m(
    "upgrade",
    "client_downtime_seconds",
    "write downtime seen by the client (last source write → first destination write, verify pause left out)",
    "s",
    2,
    null,
  ),
  m("upgrade", "verify_seconds", "kvsz verify after the switchover: seconds", "s", 2, null),
  m("upgrade", "verify_pause_seconds", "the client held on the source for verify", "s", 2, null),
  m("upgrade", "acked_source_writes", "client writes acknowledged by the source", "", 0, null),
  m(
    "upgrade",
    "acked_destination_writes",
    "client writes acknowledged by the destination",
    "",
    0,
    null,
  ),
  m("upgrade", "lost_writes", "acknowledged source writes missing at the destination", "", 0, null),
];

function m(
  scenario: string,
  metric: string,
  label: string,
  unit: string,
  digits: number,
  higherIsBetter: boolean | null,
): MetricSpec {
  return { scenario, metric, label, unit, digits, higherIsBetter };
}

/** The engines in column order. */
export const ENGINES = ["kvsz", "native"] as const;

/**
 * Column of the walsender floor (stream-small only): a decode-and-discard
 * consumer of a slot of its own, the fastest any consumer of one slot can go.
 */
export const FLOOR_COLUMN = "floor";

/** Raw values: scenario → metric → engine → one value per round. */
export type RawResults = Record<string, Record<string, Record<string, (number | null)[]>>>;

/** Collects measurements and notes. */
export class Recorder {
  readonly raw: RawResults = {};
  readonly notes: string[] = [];
  /** Targets with "met" / "not met" (the tenants and upgrade scenarios). */
  readonly targets: string[] = [];
  /** Times kvsz hung and had to be restarted. */
  incidents = 0;
  /** Scenario headings with their sizes, e.g. "initial (1,000,110 rows)". */
  readonly titles: Record<string, string> = {};

  /** The notes, identical ones merged with a count. */
  mergedNotes(): string[] {
    const counts = new Map<string, number>();
    for (const n of this.notes) counts.set(n, (counts.get(n) ?? 0) + 1);
    return [...counts].map(([n, c]) => (c > 1 ? `${n} (${c}×)` : n));
  }

  /** Records one value of one round. */
  add(scenario: string, metric: string, engine: string, value: number | null): void {
    ((this.raw[scenario] ??= {})[metric] ??= {})[engine] ??= [];
    this.raw[scenario][metric][engine].push(value);
  }

  /** Median and spread of a metric for an engine. */
  spread(scenario: string, metric: string, engine: string): Spread | null {
    return spread(this.raw[scenario]?.[metric]?.[engine] ?? []);
  }

  /** Summary rows (medians, spreads, ratios) of every recorded metric. */
  summary(): SummaryRow[] {
    const rows: SummaryRow[] = [];
    for (const spec of METRICS) {
      const per = this.raw[spec.scenario]?.[spec.metric];
      if (!per) continue;
      const k = this.spread(spec.scenario, spec.metric, "kvsz");
      const n = this.spread(spec.scenario, spec.metric, "native");
      const f = this.spread(spec.scenario, spec.metric, FLOOR_COLUMN);
      if (!k && !n && !f) continue;
      const ratio = (a: Spread | null, b: Spread | null) =>
        spec.higherIsBetter !== null && a && b && b.median !== 0 ? a.median / b.median : null;
      rows.push({
        ...spec,
        kvsz: k,
        native: n,
        floor: f,
        ratio: ratio(k, n),
        kvsz_over_floor: ratio(k, f),
        native_over_floor: ratio(n, f),
      });
    }
    return rows;
  }

  /** Whether a walsender floor was measured (the table then has its columns). */
  hasFloor(): boolean {
    return Object.values(this.raw).some((metrics) =>
      Object.values(metrics).some((engines) => FLOOR_COLUMN in engines)
    );
  }

  /**
   * One line per scenario with a floor, e.g. "stream-small catch-up: kvsz X
   * rows/s, native Y rows/s, walsender floor Z rows/s; kvsz/native …".
   */
  headlines(): string[] {
    const out: string[] = [];
    const rows = this.summary();
    const pct = (s: Spread | null | undefined) => (s ? `${fmt(s.median, 0)} %` : "–");
    const x = (q: number | null) => (q === null ? "–" : `${q.toFixed(2)}×`);
    const over = (a: Spread | null, b: Spread | null) =>
      a && b && b.median !== 0 ? a.median / b.median : null;
    for (const r of rows) {
      if (!r.floor || r.metric !== "changes_per_s") continue;
      const v = (s: Spread | null) => `${cell(s, r.digits)} ${r.unit}`;
      const find = (metric: string) =>
        rows.find((b) => b.scenario === r.scenario && b.metric === metric);
      const busy = find("walsender_busy_pct");
      const decode = find("decode_only_changes_per_s")?.floor ?? null;
      const parts = [
        `kvsz ${v(r.kvsz)}, native ${v(r.native)}, walsender floor ${v(r.floor)}`,
        `kvsz/native ${x(r.ratio)}, kvsz/floor ${x(r.kvsz_over_floor)}, native/floor ${
          x(r.native_over_floor)
        }`,
      ];
      if (busy) {
        parts.push(
          `source walsender busy: kvsz ${pct(busy.kvsz)}, native ${pct(busy.native)}, floor ${
            pct(busy.floor)
          }`,
        );
      }
      if (decode) {
        parts.push(
          `decode only in the server (no network) ${v(decode)}: kvsz/decode-only ${
            x(over(r.kvsz, decode))
          }, native/decode-only ${x(over(r.native, decode))}`,
        );
      }
      out.push(`${this.titles[r.scenario] ?? r.scenario}: ${parts.join("; ")}`);
    }
    return out;
  }
}

/** One line of the summary. */
export interface SummaryRow extends MetricSpec {
  kvsz: Spread | null;
  native: Spread | null;
  /** The walsender floor (stream-small catch-up only). */
  floor: Spread | null;
  /** kvsz median / native median. */
  ratio: number | null;
  /** kvsz median / floor median (1 would be the walsender's decoding speed). */
  kvsz_over_floor: number | null;
  /** native median / floor median. */
  native_over_floor: number | null;
}

function cell(s: Spread | null, digits: number): string {
  if (!s) return "–";
  if (s.n === 1) return fmt(s.median, digits);
  return `${fmt(s.median, digits)} (${fmt(s.min, digits)}–${fmt(s.max, digits)})`;
}

function ratioCell(r: SummaryRow): string {
  if (r.ratio === null) return "";
  const better = r.higherIsBetter ? r.ratio >= 1 : r.ratio <= 1;
  return `${r.ratio.toFixed(2)}×${better ? "" : " ⚠"}`;
}

/** A ratio against the floor: informational, the floor is a ceiling, not a competitor. */
function floorRatioCell(ratio: number | null): string {
  return ratio === null ? "" : `${ratio.toFixed(2)}×`;
}

/**
 * The markdown table: per metric, medians with (min–max) and the kvsz/native
 * ratio; when a walsender floor was measured, its column and the kvsz/floor
 * and native/floor ratios too.
 */
export function markdownTable(rec: Recorder): string {
  const floor = rec.hasFloor();
  const lines = floor
    ? [
      "| scenario | metric | kvsz median (min–max) | native median (min–max) | walsender floor median (min–max) | kvsz/native | kvsz/floor | native/floor |",
      "| --- | --- | --: | --: | --: | --: | --: | --: |",
    ]
    : [
      "| scenario | metric | kvsz median (min–max) | native median (min–max) | kvsz/native |",
      "| --- | --- | --: | --: | --: |",
    ];
  let last = "";
  for (const r of rec.summary()) {
    const title = r.scenario === last ? "" : (rec.titles[r.scenario] ?? r.scenario);
    last = r.scenario;
    const engines = `${cell(r.kvsz, r.digits)} | ${cell(r.native, r.digits)}`;
    lines.push(
      floor
        ? `| ${title} | ${r.label} | ${engines} | ${r.floor ? cell(r.floor, r.digits) : ""} | ${
          ratioCell(r)
        } | ${floorRatioCell(r.kvsz_over_floor)} | ${floorRatioCell(r.native_over_floor)} |`
        : `| ${title} | ${r.label} | ${engines} | ${ratioCell(r)} |`,
    );
  }
  return lines.join("\n");
}

/** Facts about the machine the benchmark ran on. */
export async function machineInfo(): Promise<Record<string, unknown>> {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const model = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? "unknown";
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  const memKb = Number(meminfo.match(/^MemTotal:\s+(\d+)/m)?.[1] ?? 0);
  return {
    cores: navigator.hardwareConcurrency,
    cpu: model,
    memory_gib: Math.round(memKb / 1024 / 1024),
    kernel: Deno.osRelease(),
    deno: Deno.version.deno,
  };
}
