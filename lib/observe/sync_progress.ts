/**
 * Initial-sync progress: a bar per table on a terminal (rows, MB, rate, ETA
 * from the planner's estimate), a log line per table otherwise.
 */
import { log } from "../log.ts";
import { type SyncProgress } from "../engine/events.ts";

interface TableState {
  label: string;
  estimate: number;
  rows: number;
  bytes: number;
  started: number;
  lastLogged: number;
}

/** Progress as log lines (and a live bar when stderr is a terminal). */
export class SyncProgressDisplay implements SyncProgress {
  #tables = new Map<string, TableState>();
  #drawn = 0;
  #lastDraw = 0;
  readonly #log;
  readonly #tty: boolean;

  constructor(
    readonly source: { database: string; sid: string },
    tty = Deno.stderr.isTerminal(),
    /** Receives the rows and bytes copied since the last update (for metrics). */
    readonly onRows?: (table: string, rows: number, bytes: number) => void,
  ) {
    this.#log = log("sync").with(source);
    this.#tty = tty;
  }

  start(table: string, estimatedRows: number, ranges = 1): void {
    const now = performance.now();
    this.#tables.set(table, {
      label: table,
      estimate: estimatedRows,
      rows: 0,
      bytes: 0,
      started: now,
      lastLogged: now,
    });
    this.#log.info(
      ranges > 1
        ? "copying {table} (about {estimate} rows, {ranges} page ranges in parallel)"
        : "copying {table} (about {estimate} rows)",
      { table, estimate: estimatedRows, ranges },
    );
    this.#draw(true);
  }

  update(table: string, rows: number, bytes: number): void {
    const t = this.#tables.get(table);
    if (!t) return;
    this.onRows?.(table, rows - t.rows, bytes - t.bytes);
    t.rows = rows;
    t.bytes = bytes;
    const now = performance.now();
    if (!this.#tty && now - t.lastLogged > 10_000) {
      t.lastLogged = now;
      this.#log.info("copying {table}: {line}", { table, line: describe(t, now) });
    }
    this.#draw(false);
  }

  finish(table: string, rows: number): void {
    const t = this.#tables.get(table);
    if (!t) return;
    t.rows = rows;
    const seconds = (performance.now() - t.started) / 1000;
    this.#clear();
    this.#tables.delete(table);
    this.#log.info("copied {table}: {rows} rows, {mb} MB in {seconds} s", {
      table,
      rows,
      mb: (t.bytes / 1e6).toFixed(1),
      seconds: seconds.toFixed(1),
    });
    this.#draw(true);
  }

  #clear(): void {
    if (!this.#tty || this.#drawn === 0) return;
    write(`\x1b[${this.#drawn}A\x1b[J`);
    this.#drawn = 0;
  }

  #draw(force: boolean): void {
    if (!this.#tty) return;
    const now = performance.now();
    if (!force && now - this.#lastDraw < 200) return;
    this.#lastDraw = now;
    this.#clear();
    const lines = [...this.#tables.values()].map((t) => `${bar(t)} ${describe(t, now)}`);
    if (lines.length) write(lines.join("\n") + "\n");
    this.#drawn = lines.length;
  }
}

function describe(t: TableState, now: number): string {
  const seconds = Math.max((now - t.started) / 1000, 0.001);
  const rate = t.rows / seconds;
  const left = t.estimate > t.rows && rate > 0 ? (t.estimate - t.rows) / rate : 0;
  return `${t.label} ${t.rows.toLocaleString("en")}${
    t.estimate ? "/" + t.estimate.toLocaleString("en") : ""
  } rows, ${(t.bytes / 1e6).toFixed(1)} MB, ${Math.round(rate).toLocaleString("en")} rows/s${
    left > 0 ? `, ETA ${Math.ceil(left)} s` : ""
  }`;
}

function bar(t: TableState): string {
  const width = 20;
  const frac = t.estimate > 0 ? Math.min(t.rows / t.estimate, 1) : 0;
  const done = Math.round(frac * width);
  return `[${"#".repeat(done)}${".".repeat(width - done)}] ${
    String(Math.round(frac * 100)).padStart(3)
  }%`;
}

const encoder = new TextEncoder();
function write(text: string): void {
  Deno.stderr.writeSync(encoder.encode(text));
}
