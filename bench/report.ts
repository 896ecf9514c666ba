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
    "engine process CPU s per 1M changes (kvsz process / native apply worker)",
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
  m("stream-live", "lag_seconds", "lag when the load ends", "s", 2, false),
  m("stream-live", "tps", "pgbench tps during the live load", "tps", 0, null),
  m("stream-large", "rows_per_s", "rows/s (commit → applied)", "rows/s", 0, true),
  m("stream-large", "seconds", "seconds (commit → applied)", "s", 2, false),
  m("stream-large", "peak_rss_mb", "peak RSS (VmHWM)", "MiB", 0, false),
  m("history", "changes_per_s", "catch-up: changed rows/s", "rows/s", 0, true),
  m("history", "seconds", "catch-up: seconds", "s", 2, false),
  m("history", "rows_written", "destination rows inserted", "rows", 0, null),
  m("fan-in", "changes_per_s", "catch-up: changed rows/s, all sources", "rows/s", 0, true),
  m("fan-in", "seconds", "catch-up: seconds", "s", 2, false),
  m("fan-in", "engine_cpu_per_m", "kvsz process CPU s per 1M changes", "s", 1, false),
  m("latency", "p50_ms", "source commit → destination write, p50", "ms", 0, false),
  m("latency", "p99_ms", "source commit → destination write, p99", "ms", 0, false),
  m("latency", "max_ms", "source commit → destination write, max", "ms", 0, false),
  m("latency", "tps", "pgbench tps (target: half of max)", "tps", 0, null),
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

/** Raw values: scenario → metric → engine → one value per round. */
export type RawResults = Record<string, Record<string, Record<string, (number | null)[]>>>;

/** Collects measurements and notes. */
export class Recorder {
  readonly raw: RawResults = {};
  readonly notes: string[] = [];
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
      if (!k && !n) continue;
      rows.push({
        ...spec,
        kvsz: k,
        native: n,
        ratio: spec.higherIsBetter !== null && k && n && n.median !== 0
          ? k.median / n.median
          : null,
      });
    }
    return rows;
  }
}

/** One line of the summary. */
export interface SummaryRow extends MetricSpec {
  kvsz: Spread | null;
  native: Spread | null;
  /** kvsz median / native median. */
  ratio: number | null;
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

/** The markdown table: per metric, medians with (min–max) and the kvsz/native ratio. */
export function markdownTable(rec: Recorder): string {
  const lines = [
    "| scenario | metric | kvsz median (min–max) | native median (min–max) | kvsz/native |",
    "| --- | --- | --: | --: | --: |",
  ];
  let last = "";
  for (const r of rec.summary()) {
    const title = r.scenario === last ? "" : (rec.titles[r.scenario] ?? r.scenario);
    last = r.scenario;
    lines.push(
      `| ${title} | ${r.label} | ${cell(r.kvsz, r.digits)} | ${cell(r.native, r.digits)} | ${
        ratioCell(r)
      } |`,
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
