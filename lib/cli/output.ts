/** Printing helpers for subcommands: aligned tables, byte sizes, JSON, check lines. */
import { type Check } from "../preflight/check.ts";

/** Formats rows as a left-aligned text table under `headers`, columns two spaces apart. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** Prints `value` as indented JSON on stdout (bigints as numbers when safe, else strings). */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(
    value,
    (_k, v) =>
      typeof v === "bigint" ? (Number.isSafeInteger(Number(v)) ? Number(v) : String(v)) : v,
    2,
  ));
}

/** Formats a check as `ok   what`, `WARN what: problem — fix: how` or `FAIL what: problem — fix: how`. */
export function formatCheck(c: Check): string {
  const tag = c.status.padEnd(4);
  if (c.status === "ok" && !c.problem) return `${tag} ${c.check}`;
  return `${tag} ${c.check}${c.problem ? `: ${c.problem}` : ""}${c.fix ? ` — fix: ${c.fix}` : ""}`;
}
