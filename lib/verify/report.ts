/** What `kvsz verify` found, per table and in all, and its text rendering. */
import type { RowDifference } from "./data_compare.ts";

/** A table's verdict: equal, different, skipped (not a copy by design) or error (not compared). */
export type TableVerdict = "equal" | "different" | "skipped" | "error";

/** One mapped table of one source, compared with its target. */
export interface TableReport {
  database: string;
  sid: string;
  /** `host:port/database` of the source (no user, no password). */
  endpoint: string;
  /** Source table, `schema.name` (empty when the source could not be read). */
  source: string;
  /** Target table, `schema.name`. */
  target: string;
  verdict: TableVerdict;
  /** Why the table was skipped, or the error. */
  reason?: string;
  sourceRows: number;
  destinationRows: number;
  chunks: number;
  differingChunks: number;
  /** How many rows differ. */
  rowDifferenceCount: number;
  /** The rows that differ, by key (the first ones when many). */
  rowDifferences: RowDifference[];
  /** Rows read key by key (both sides): the differing chunks narrowed to the ranges read. */
  rowsCompared: number;
  /** One line per schema difference. */
  schemaDifferences: string[];
}

/** The whole report. */
export interface VerifyReport {
  /** True when every compared table is equal and nothing failed. */
  equal: boolean;
  summary: Record<TableVerdict, number> & { tables: number };
  tables: TableReport[];
}

/** The report of `tables`, with its summary. */
export function verifyReport(tables: TableReport[]): VerifyReport {
  const count = (v: TableVerdict) => tables.filter((t) => t.verdict === v).length;
  const summary = {
    tables: tables.length,
    equal: count("equal"),
    different: count("different"),
    skipped: count("skipped"),
    error: count("error"),
  };
  return { equal: summary.different === 0 && summary.error === 0, summary, tables };
}

/** Differing keys listed per table in the text. */
export const KEYS_LISTED = 20;

const TAG: Record<TableVerdict, string> = {
  equal: "ok  ",
  different: "FAIL",
  skipped: "skip",
  error: "ERR ",
};

/** The report as text: a line per table, its differences indented below, then a summary. */
export function formatVerifyReport(report: VerifyReport): string[] {
  const lines: string[] = [];
  for (const t of report.tables) {
    const who = `${t.database} sid ${t.sid} ${t.source || `(${t.endpoint})`}${
      t.target ? ` → ${t.target}` : ""
    }`;
    lines.push(`${TAG[t.verdict]} ${who}: ${describe(t)}`);
    for (const s of t.schemaDifferences) lines.push(`       schema: ${s}`);
    for (const d of t.rowDifferences.slice(0, KEYS_LISTED)) lines.push(`       ${formatRow(d)}`);
    const unlisted = t.rowDifferenceCount - Math.min(t.rowDifferences.length, KEYS_LISTED);
    if (unlisted > 0) lines.push(`       … and ${unlisted} more (--json lists more)`);
  }
  const s = report.summary;
  lines.push(
    "",
    `${s.tables} table${
      s.tables === 1 ? "" : "s"
    }: ${s.equal} equal, ${s.different} different, ${s.skipped} skipped, ${s.error} not compared (error)`,
  );
  return lines;
}

function describe(t: TableReport): string {
  if (t.verdict === "skipped" || t.verdict === "error") return t.reason ?? t.verdict;
  const chunks = `${t.chunks} chunk${t.chunks === 1 ? "" : "s"}`;
  const rows = t.sourceRows === t.destinationRows
    ? `${t.sourceRows} rows`
    : `${t.sourceRows} rows at source, ${t.destinationRows} at destination`;
  if (t.verdict === "equal") return `${rows}, ${chunks}, equal`;
  // No chunk: the rows were not compared (the target is missing).
  const parts = t.chunks > 0 ? [rows, chunks] : [];
  if (t.differingChunks > 0 || t.rowDifferenceCount > 0) {
    parts.push(
      t.rowDifferenceCount > 0
        ? `${t.rowDifferenceCount} ${
          t.rowDifferenceCount === 1 ? "row differs" : "rows differ"
        } in ${t.differingChunks} chunk${t.differingChunks === 1 ? "" : "s"}`
        : "contents differ",
    );
  }
  if (t.schemaDifferences.length > 0) {
    parts.push(
      `${t.schemaDifferences.length} schema difference${
        t.schemaDifferences.length === 1 ? "" : "s"
      }`,
    );
  }
  return parts.join(", ");
}

/** `id=5: missing at destination`, `(a=1, b=x): different in name, v`. */
export function formatRow(d: RowDifference): string {
  const entries = Object.entries(d.key).map(([k, v]) => `${k}=${v}`);
  const key = entries.length === 1 ? entries[0] : `(${entries.join(", ")})`;
  const what = d.kind === "missing"
    ? "missing at destination"
    : d.kind === "extra"
    ? "extra at destination (not at source)"
    : `different${d.columns?.length ? ` in ${d.columns.join(", ")}` : ""}`;
  return `${key}: ${what}`;
}
