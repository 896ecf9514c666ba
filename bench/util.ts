/** Small helpers of the benchmark: progress lines, waiting, statistics, /proc readings. */

const started = performance.now();

/** Prints a progress line prefixed with the time since the benchmark started. */
export function say(message: string): void {
  const s = Math.floor((performance.now() - started) / 1000);
  const stamp = `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
  console.error(`[${stamp}] ${message}`);
}

/** Seconds since the benchmark started (for the total run time). */
export function elapsedSeconds(): number {
  return (performance.now() - started) / 1000;
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Milliseconds on a monotonic clock. */
export function now(): number {
  return performance.now();
}

/** Options of {@link waitUntil}. */
export interface WaitOptions {
  what: string;
  timeoutMs?: number;
  intervalMs?: number;
  /** Called on every poll; throw from it to give up early (e.g. the engine died). */
  alive?: () => void;
}

/** Polls `check` until it returns true; throws after the timeout with `what` in the message. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  opts: WaitOptions,
): Promise<void> {
  const deadline = now() + (opts.timeoutMs ?? 300_000);
  const interval = opts.intervalMs ?? 50;
  let lastError: unknown = null;
  while (now() < deadline) {
    opts.alive?.();
    try {
      if (await check()) return;
      lastError = null;
    } catch (e) {
      lastError = e;
    }
    await sleep(interval);
  }
  throw new Error(
    `timed out after ${((opts.timeoutMs ?? 300_000) / 1000).toFixed(0)} s waiting for ${opts.what}${
      lastError ? ` (last error: ${(lastError as Error).message})` : ""
    }`,
  );
}

/** Median, min and max of some numbers (null entries are left out). */
export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Median and range of `values`; null when there are none. */
export function spread(values: (number | null | undefined)[]): Spread | null {
  const v = values.filter((x): x is number => typeof x === "number" && Number.isFinite(x))
    .sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], n: v.length };
}

/** The q-quantile (0..1) of sorted numbers, nearest-rank. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) a process has used so far, or null when it is gone. */
export function processCpuSeconds(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may contain spaces: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return (utime + stime) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

/** Busy CPU seconds of the whole machine so far (all cores; from /proc/stat). */
export function machineCpuSeconds(): number {
  return busySeconds(Deno.readTextFileSync("/proc/stat").split("\n")[0]);
}

/**
 * Busy CPU seconds so far of the CPUs in `list` (numbers, comma-separated,
 * as `cpuSplit` gives them), or of the whole machine when null.
 */
export function cpusBusySeconds(list: string | null): number {
  if (list === null) return machineCpuSeconds();
  const wanted = new Set(list.split(",").map((c) => `cpu${c}`));
  return Deno.readTextFileSync("/proc/stat").split("\n")
    .filter((line) => wanted.has(line.split(" ")[0]))
    .reduce((sum, line) => sum + busySeconds(line), 0);
}

/** The number of CPUs in `list` (as {@link cpusBusySeconds} takes it), or of the machine. */
export function cpuCount(list: string | null): number {
  return list === null ? navigator.hardwareConcurrency : list.split(",").length;
}

/** The busy seconds of one `cpu…` line of /proc/stat. */
function busySeconds(line: string): number {
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) / CLOCK_TICKS;
}

/** A value of /proc/<pid>/status in MiB (e.g. VmHWM, VmRSS), or null. */
export function processMemoryMb(pid: number, field: "VmHWM" | "VmRSS"): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/** Formats a number with thousands separators and `digits` decimals. */
export function fmt(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}
