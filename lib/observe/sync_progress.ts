/**
 * Initial-sync progress of a kvsz process: a log line per table (and every
 * 10 s while one is copied), a line per source whose copy is done with the
 * count of sources copied out of all, and on a terminal one live display for
 * every source: a line "sources copied: done of total" and a bar per table
 * being copied (rows, MB, rate, ETA from the planner's estimate).
 */
import { log } from "../log.ts";
import { type SyncProgress } from "../engine/events.ts";

/** One source, as the display names it. */
export interface SyncSource {
  database: string;
  sid: string;
}

interface TableState {
  label: string;
  estimate: number;
  rows: number;
  bytes: number;
  started: number;
  lastLogged: number;
}

interface SourceState {
  /** Every table it maps is copied (it streams). */
  copied: boolean;
  /** A copy of it ran since it last streamed. */
  copying: boolean;
}

/** The progress display of every source's initial copy (see the module comment). */
export class SyncBoard {
  #tables = new Map<string, TableState>();
  #sources = new Map<string, SourceState>();
  #drawn = 0;
  #lastDraw = 0;
  readonly #tty: boolean;

  constructor(tty = Deno.stderr.isTerminal()) {
    this.#tty = tty;
  }

  /** Sources known (see {@link add}). */
  get total(): number {
    return this.#sources.size;
  }

  /** Sources whose every table is copied: they stream, or did since their last copy. */
  get done(): number {
    let n = 0;
    for (const s of this.#sources.values()) if (s.copied) n++;
    return n;
  }

  /** A source kvsz runs: counted, not copied until it streams. */
  add(source: SyncSource): void {
    if (!this.#sources.has(key(source))) {
      this.#sources.set(key(source), { copied: false, copying: false });
    }
  }

  /** A source kvsz no longer runs. */
  remove(source: SyncSource): void {
    this.#sources.delete(key(source));
  }

  /** The source streams: its tables are copied; said when it copied some. */
  streaming(source: SyncSource): void {
    const s = this.#sources.get(key(source));
    if (!s || s.copied) return;
    s.copied = true;
    if (!s.copying) return;
    s.copying = false;
    log("sync").with({ ...source }).info(
      "initial copy done, streaming: {done} of {total} sources copied",
      { done: this.done, total: this.total },
    );
    this.#draw(true);
  }

  /**
   * The display of one source's copies; `onRows` receives the rows and bytes
   * copied since the last update (for metrics).
   */
  source(
    source: SyncSource,
    onRows?: (table: string, rows: number, bytes: number) => void,
  ): SyncProgress {
    const logger = log("sync").with({ ...source });
    const tableKey = (table: string) => `${key(source)}\u0000${table}`;
    return {
      start: (table, estimatedRows, ranges = 1) => {
        const s = this.#sources.get(key(source));
        if (s) Object.assign(s, { copied: false, copying: true });
        const now = performance.now();
        this.#tables.set(tableKey(table), {
          label: this.#sources.size > 1 ? `${source.database} ${table}` : table,
          estimate: estimatedRows,
          rows: 0,
          bytes: 0,
          started: now,
          lastLogged: now,
        });
        logger.info(
          ranges > 1
            ? "copying {table} (about {estimate} rows, {ranges} page ranges in parallel)"
            : "copying {table} (about {estimate} rows)",
          { table, estimate: estimatedRows, ranges },
        );
        this.#draw(true);
      },
      update: (table, rows, bytes) => {
        const t = this.#tables.get(tableKey(table));
        if (!t) return;
        onRows?.(table, rows - t.rows, bytes - t.bytes);
        t.rows = rows;
        t.bytes = bytes;
        const now = performance.now();
        if (!this.#tty && now - t.lastLogged > 10_000) {
          t.lastLogged = now;
          logger.info("copying {table}: {line}", { table, line: describe(t, now) });
        }
        this.#draw(false);
      },
      finish: (table, rows) => {
        const t = this.#tables.get(tableKey(table));
        if (!t) return;
        t.rows = rows;
        const seconds = (performance.now() - t.started) / 1000;
        this.#clear();
        this.#tables.delete(tableKey(table));
        logger.info("copied {table}: {rows} rows, {mb} MB in {seconds} s", {
          table,
          rows,
          mb: (t.bytes / 1e6).toFixed(1),
          seconds: seconds.toFixed(1),
        });
        this.#draw(true);
      },
    };
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
    if (this.#tables.size === 0) return;
    const lines = [
      `sources copied: ${this.done} of ${this.total}`,
      ...[...this.#tables.values()].map((t) => `${bar(t)} ${describe(t, now)}`),
    ];
    write(lines.join("\n") + "\n");
    this.#drawn = lines.length;
  }
}

function key(source: SyncSource): string {
  return `${source.database}\u0000${source.sid}`;
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
