/**
 * Column drift: a source table's columns no longer matching what kvsz fills
 * in its target. kvsz remembers per table the source columns it knows (those
 * of the table's copy, plus columns added on both sides since); against them
 * a source layout shows two kinds of drift:
 *
 * - `missing_at_source`: a target column kvsz filled from the source, which
 *   the source no longer has (the source column was dropped or renamed). New
 *   rows get NULL (or the column's default) there, updated rows keep a stale
 *   value. The only kind that can stop a table (`on_column_drift: stop`).
 * - `missing_at_target`: a source column added after the table's copy that
 *   the target lacks. Its values are not copied.
 *
 * Intentional differences are not drift: source columns the target lacked at
 * the copy (left out on purpose), and target columns kvsz never filled (`sid`,
 * `kvsz_*`, columns of your own).
 */
import type { ColumnDriftPolicy } from "../config/types.ts";
import { KVSZ_COLUMNS } from "./catalog.ts";

/** The two kinds of drift (see the module comment). */
export type DriftKind = "missing_at_source" | "missing_at_target";

/** One drifted column. */
export interface ColumnDrift {
  column: string;
  kind: DriftKind;
  /** When kvsz first saw it (ISO 8601). */
  since: string;
}

/** What a source layout shows against what kvsz knows. */
export interface ColumnComparison {
  drift: { column: string; kind: DriftKind }[];
  /**
   * The source columns to know from now on: the known ones the source or the
   * target still has (a gone one the target still has stays drift), plus the
   * source's columns the target has too.
   */
  known: string[];
}

/**
 * Compares a source layout (`source`, column names) and the target's columns
 * with the source columns kvsz knows (`known`).
 */
export function compareColumns(
  source: readonly string[],
  target: Iterable<string>,
  known: Iterable<string>,
): ColumnComparison {
  const src = new Set(source);
  const tgt = new Set(target);
  const knew = new Set(known);
  const drift: ColumnComparison["drift"] = [];
  for (const c of knew) {
    if (tgt.has(c) && !src.has(c) && !KVSZ_COLUMNS.has(c)) {
      drift.push({ column: c, kind: "missing_at_source" });
    }
  }
  for (const c of src) {
    if (!knew.has(c) && !tgt.has(c) && !KVSZ_COLUMNS.has(c)) {
      drift.push({ column: c, kind: "missing_at_target" });
    }
  }
  const known2 = [...knew].filter((c) => src.has(c) || tgt.has(c));
  for (const c of src) if (tgt.has(c) && !knew.has(c)) known2.push(c);
  return { drift, known: known2 };
}

/** `drift` with the `since` of the entries already in `before` (else `now`). */
export function dated(
  drift: ColumnComparison["drift"],
  before: readonly ColumnDrift[],
  now: string,
): ColumnDrift[] {
  return drift.map((d) => ({
    ...d,
    since: before.find((b) => b.column === d.column && b.kind === d.kind)?.since ?? now,
  }));
}

/** True when `drift` stops a table under `policy`. */
export function stopsTable(drift: readonly { kind: DriftKind }[], policy: ColumnDriftPolicy) {
  return policy === "stop" && drift.some((d) => d.kind === "missing_at_source");
}

/** Where a drift message points: the source table and its target, both `schema.name`. */
export interface DriftPlace {
  source: string;
  target: string;
}

/** What a table's drift means (`problem`) and how to end it (`fix`). */
export interface DriftText {
  problem: string;
  fix: string;
}

/**
 * What a table's drift means and the fix; `stopped` says the table is not
 * written until then.
 */
export function driftText(
  place: DriftPlace,
  drift: readonly { column: string; kind: DriftKind }[],
  stopped: boolean,
): DriftText {
  const gone = drift.filter((d) => d.kind === "missing_at_source").map((d) => d.column);
  const added = drift.filter((d) => d.kind === "missing_at_target").map((d) => d.column);
  const { source, target } = place;
  const parts: string[] = [];
  if (gone.length > 0) {
    parts.push(
      `target ${target} column(s) ${
        gone.join(", ")
      } were filled from ${source}, which no longer has them (dropped or renamed at the source)`,
    );
  }
  if (added.length > 0) {
    parts.push(
      `${source} has new column(s) ${
        added.join(", ")
      } that target ${target} lacks: their values are not copied`,
    );
  }
  const renamed = gone.length === 1 && added.length === 1;
  const fixes: string[] = [];
  if (renamed) {
    fixes.push(
      `if ${gone[0]} was renamed to ${added[0]}: ALTER TABLE ${target} RENAME COLUMN ${
        gone[0]
      } TO ${added[0]}`,
    );
  }
  if (gone.length > 0) {
    fixes.push(
      `for a column dropped at the source: drop it at the target, or rename it to keep its old values`,
    );
  }
  if (added.length > 0 && !renamed) fixes.push(`add the new column(s) to the target`);
  const effect = stopped
    ? `table ${source} is stopped (on_column_drift: stop): its changes are not applied until the target is fixed; ` +
      `then send SIGHUP or restart kvsz and it is copied again and streams on`
    : gone.length > 0
    ? `new rows get NULL (or the default) in ${
      gone.join(", ")
    } and updated rows keep old values (on_column_drift: continue)`
    : `rows changed meanwhile keep NULL there (add columns to the destination first, then to the source)`;
  return { problem: `${parts.join("; ")}; ${effect}`, fix: fixes.join("; ") };
}

/** {@link driftText} as one line, for logs. */
export function describeDrift(
  place: DriftPlace,
  drift: readonly { column: string; kind: DriftKind }[],
  stopped: boolean,
): string {
  const { problem, fix } = driftText(place, drift, stopped);
  return `${problem}. Fix: ${fix}`;
}

/**
 * What `status` and `validate` say about a table's drift and stop (null:
 * nothing). A stop whose drift is gone, or whose policy is now `continue`,
 * waits only for a reload.
 */
export function driftNotice(
  place: DriftPlace,
  drift: readonly { column: string; kind: DriftKind }[],
  opts: { stoppedLsn: string | null; policy: ColumnDriftPolicy },
): DriftText | null {
  const { stoppedLsn } = opts;
  const stops = stopsTable(drift, opts.policy);
  if (stoppedLsn !== null && !stops) {
    return {
      problem:
        `kvsz stopped ${place.source} at ${stoppedLsn} for column drift that is fixed now (or on_column_drift is continue)`,
      fix: "send SIGHUP to kvsz, or restart it: the table is copied again and streams on",
    };
  }
  if (drift.length === 0) return null;
  const text = driftText(place, drift, stops);
  return stoppedLsn === null
    ? text
    : { ...text, problem: `stopped at ${stoppedLsn}: ${text.problem}` };
}
