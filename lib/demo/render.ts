/** Text output of `kvsz demo`: styles, aligned tables, tables side by side, times. */

/** Terminal styles, or plain text when stdout is not a terminal or `NO_COLOR` is set. */
export interface Styles {
  bold(s: string): string;
  dim(s: string): string;
  green(s: string): string;
  red(s: string): string;
  yellow(s: string): string;
}

/** Styles for `tty` (ANSI when true and `NO_COLOR` is unset). */
export function styles(tty: boolean): Styles {
  const on = tty && !Deno.env.get("NO_COLOR");
  const wrap = (open: number, close: number) => (s: string) =>
    on ? `\x1b[${open}m${s}\x1b[${close}m` : s;
  return {
    bold: wrap(1, 22),
    dim: wrap(2, 22),
    green: wrap(32, 39),
    red: wrap(31, 39),
    yellow: wrap(33, 39),
  };
}

const NUMBER = /^-?\d+(\.\d+)?$/;

/**
 * Formats rows as an aligned table: a header, a rule, then the rows; columns
 * whose values are all numbers are right-aligned. Returns one string per line.
 */
export function textTable(headers: string[], rows: string[][]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const numeric = headers.map((_, i) =>
    rows.length > 0 && rows.every((r) => NUMBER.test(r[i] ?? ""))
  );
  const line = (cells: string[]) =>
    cells.map((c, i) => numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])).join("  ");
  const out = [line(headers), widths.map((w) => "─".repeat(w)).join("  ")];
  out.push(...rows.map(line));
  if (rows.length === 0) out.push("(no rows)");
  return out.map((l) => l.trimEnd());
}

/** Puts two blocks of lines next to each other, `gap` between them. */
export function sideBySide(left: string[], right: string[], gap = "  │  "): string[] {
  const width = Math.max(0, ...left.map((l) => l.length));
  const n = Math.max(left.length, right.length);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(`${(left[i] ?? "").padEnd(width)}${gap}${right[i] ?? ""}`.trimEnd());
  }
  return out;
}

/** Width of the widest line. */
export function blockWidth(lines: string[]): number {
  return Math.max(0, ...lines.map((l) => l.length));
}

/** Indents every line by `n` spaces. */
export function indent(lines: string[], n = 4): string[] {
  return lines.map((l) => (l === "" ? l : " ".repeat(n) + l));
}

/**
 * A timestamp (server text, UTC) for a narrow column: the history sentinels
 * as dates (`1900-01-01`, `9999-01-01`), anything else as local time of day
 * with milliseconds (`14:03:05.123`).
 */
export function shortTime(text: string | null): string {
  if (text === null) return "";
  const sentinel = /^(1900-01-01|9999-01-01)/.exec(text);
  if (sentinel) return sentinel[1];
  const t = Date.parse(text.replace(" ", "T").replace(/([+-]\d\d)$/, "$1:00"));
  if (!Number.isFinite(t)) return text;
  const d = new Date(t);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${
    pad(d.getMilliseconds(), 3)
  }`;
}

/** Milliseconds or seconds for people: `84 ms`, `1.3 s`. */
export function duration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
