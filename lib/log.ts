/**
 * Structured logs, one event per line on stderr: `text` on a terminal, `json`
 * otherwise. Known secrets (the passwords of configured URLs) are masked in
 * every line, whatever produced it.
 */
import { configureSync, getLogger, type Logger, type LogRecord, resetSync } from "@logtape/logtape";

const secrets = new Set<string>();
const encoder = new TextEncoder();

/** How logs are written: the lowest level written, and the line format. */
export interface LogConfig {
  level: "debug" | "info" | "warning" | "error";
  /** `auto`: text on a terminal, json otherwise. */
  format: "auto" | "text" | "json";
}

/** Registers secrets (passwords) so they never reach a log line. */
export function registerSecrets(secretTexts: string[]): void {
  for (const s of secretTexts) if (s) secrets.add(s);
}

/** Replaces every registered secret in `text` with `***`. */
export function maskSecrets(text: string): string {
  let out = text;
  for (const s of secrets) out = out.replaceAll(s, "***");
  return out;
}

/** Configures logging for the process (call once at start; again to change). */
export function configureLogging(config: Pick<LogConfig, "level" | "format">): void {
  const format = config.format === "auto"
    ? (Deno.stderr.isTerminal() ? "text" : "json")
    : config.format;
  const formatter = format === "json" ? formatJson : formatText;
  resetSync();
  configureSync({
    sinks: {
      stderr: (record: LogRecord) => {
        Deno.stderr.writeSync(encoder.encode(maskSecrets(formatter(record)) + "\n"));
      },
    },
    loggers: [
      { category: ["kvsz"], lowestLevel: config.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** A logger for one part of kvsz, e.g. `log("source")`. */
export function log(...category: string[]): Logger {
  return getLogger(["kvsz", ...category]);
}

function renderMessage(record: LogRecord): string {
  return record.message.map((part, i) => i % 2 === 0 ? String(part) : renderValue(part)).join(
    "",
  );
}

function renderValue(v: unknown): string {
  if (typeof v === "string") return v;
  if (v instanceof Error) return v.message;
  if (typeof v === "bigint") return v.toString();
  return JSON.stringify(v) ?? String(v);
}

const LEVELS: Record<string, string> = {
  trace: "TRC",
  debug: "DBG",
  info: "INF",
  warning: "WRN",
  error: "ERR",
  fatal: "FTL",
};

function formatText(record: LogRecord): string {
  const time = new Date(record.timestamp).toISOString();
  const props = Object.entries(record.properties)
    .filter(([k]) => !record.rawMessage.includes(`{${k}}`))
    .map(([k, v]) => `${k}=${renderValue(v)}`)
    .join(" ");
  const category = record.category.slice(1).join(".");
  return `${time} ${LEVELS[record.level]} ${category}: ${renderMessage(record)}${
    props ? " " + props : ""
  }`;
}

function formatJson(record: LogRecord): string {
  const props: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record.properties)) {
    props[k] = v instanceof Error ? v.message : typeof v === "bigint" ? v.toString() : v;
  }
  return JSON.stringify({
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    logger: record.category.join("."),
    message: renderMessage(record),
    ...props,
  });
}

/**
 * Bounds the lines said about one thing (a table's anomalies, its failed
 * expressions): at most `perMinute` a minute for each key; the ones held back
 * are counted and named in the next line said for that key. A table whose
 * every row fails logs ten lines a minute, not one per row; the metrics still
 * count every one.
 */
export class LineBudget {
  readonly #windows = new Map<string, { start: number; said: number; held: number }>();

  constructor(readonly perMinute = 10, readonly now: () => number = () => performance.now()) {}

  /**
   * Whether a line about `key` may be said now; when it may, `held` is how
   * many were held back since the last one said (0 otherwise).
   */
  take(key: string): { say: boolean; held: number } {
    const now = this.now();
    let w = this.#windows.get(key);
    if (!w || now - w.start >= 60_000) {
      const held = w?.held ?? 0;
      w = { start: now, said: 0, held: 0 };
      this.#windows.set(key, w);
      w.said++;
      return { say: true, held };
    }
    if (w.said < this.perMinute) {
      w.said++;
      const held = w.held;
      w.held = 0;
      return { say: true, held };
    }
    w.held++;
    return { say: false, held: 0 };
  }
}

/** The tail of a line said after {@link LineBudget} held others back: "" when none were. */
export function heldNote(held: number): string {
  return held > 0 ? ` (and ${held} more like it not logged since the last line)` : "";
}
