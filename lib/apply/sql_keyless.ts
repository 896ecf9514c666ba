/**
 * Writers for routes without a usable key (REPLICA IDENTITY FULL, no primary
 * key). Inserts go in one multi-row statement per chunk; each UPDATE and
 * DELETE finds exactly one row whose every mapped column equals the old row
 * (compared as text, since json, xml, point and friends have no `=`) and
 * touches that row only, even when identical duplicates exist.
 */
import type { Sql } from "../pg/connect.ts";
import type { ColumnValue, Tuple } from "../source/messages.ts";
import type { WireParam } from "../pg/wire_statement.ts";
import { textArray } from "./text_array.ts";
import type { FoldAnomaly } from "./fold.ts";
import type { AnomalyKind } from "./types.ts";
import {
  and,
  carriedValues,
  CURRENT,
  DELETED,
  END,
  FIRST_START,
  insertColumns,
  newValues,
  openVersion,
  Params,
  q,
  type RouteShape,
  run,
  sidMatch,
  sidParam,
  sidValue,
  VERSION_COLUMNS,
} from "./sql_common.ts";
import type { StepResult } from "./sql_step.ts";

/** The multi-row insert: one `text[]` parameter per mapped column (plus sid first). */
export function insertRowsSql(shape: RouteShape, history: boolean): string {
  const p = new Params();
  const sid = shape.route.target.hasSid ? p.text(null) : null;
  const cols = shape.route.columns;
  const args = cols.map(() => `${p.add(null)}::text[]`);
  const names = cols.map((_, j) => `c${j}`);
  const insCols = insertColumns(sid, cols, history ? VERSION_COLUMNS : []);
  const insVals = [
    ...sidValue(shape, sid),
    ...cols.map((c, j) => `s.c${j}::${c.type}`),
    ...(history ? openVersion(shape, `'${FIRST_START}'`) : []),
  ];
  if (args.length === 0) {
    // No mapped column: one row per element of a dummy array.
    args.push(`${p.add(null)}::text[]`);
    names.push("x");
  }
  return `INSERT INTO ${shape.table} (${insCols}) OVERRIDING SYSTEM VALUE SELECT ${
    insVals.join(", ")
  } FROM unnest(${args.join(", ")}) AS s(${names.join(", ")})`;
}

/** Inserts rows (source column order) in one statement; history rows are open versions from 1900. */
export async function insertRows(
  tx: Sql,
  shape: RouteShape,
  opts: { rows: readonly Tuple[]; history: boolean },
): Promise<StepResult> {
  const text = insertRowsSql(shape, opts.history);
  const { count } = await run(tx, text, insertRowsParams(shape, opts.rows));
  return { rows: count, anomalies: [] };
}

/** The parameters of {@link insertRowsSql} for `rows`. */
export function insertRowsParams(shape: RouteShape, rows: readonly Tuple[]): WireParam[] {
  const params: WireParam[] = [];
  if (shape.route.target.hasSid) params.push(shape.route.sid);
  const idx = shape.allIdx;
  const n = rows.length;
  for (let j = 0; j < idx.length; j++) {
    const col: ColumnValue[] = new Array(n);
    const c = idx[j];
    for (let r = 0; r < n; r++) col[r] = rows[r][c];
    params.push(textArray(col));
  }
  if (idx.length === 0) params.push(textArray(new Array(n).fill(null)));
  return params;
}

/** The anomaly key of a keyless row: every mapped column (unchanged TOAST as NULL, a large value described). */
function rowKey(shape: RouteShape, row: Tuple): (string | null)[] {
  return shape.allIdx.map((i) => {
    const v = row[i];
    return v === undefined || v === null ? null : String(v);
  });
}

/** A keyless UPDATE: the old row it matches, the new row, its commit time (read by history). */
export interface KeylessUpdate {
  old: Tuple;
  row: Tuple;
  at: string;
}

/** A keyless DELETE: the old row it matches, its commit time (read by history). */
export interface KeylessDelete {
  old: Tuple;
  at: string;
}

/** The anomaly `kind` of the keyless row `old`, which matched no destination row. */
function missingRow(shape: RouteShape, old: Tuple, kind: AnomalyKind): FoldAnomaly[] {
  return [{ kind, key: rowKey(shape, old) }];
}

/**
 * `m` CTE: the (tableoid, ctid) of one row (of the sid) whose mapped columns
 * equal `old` as text (columns whose old value is unchanged TOAST are skipped);
 * in history mode, a current row.
 */
function matchOne(shape: RouteShape, p: Params, old: Tuple): string {
  const conds = [sidMatch(shape, sidParam(shape, p))];
  for (const c of shape.route.columns) {
    const v = old[c.sourceIndex];
    if (v === undefined) continue;
    conds.push(`t.${q(c.name)}::text IS NOT DISTINCT FROM ${p.text(v)}::${c.type}::text`);
  }
  if (shape.route.mode === "history") conds.push(CURRENT);
  return `m AS (SELECT t.tableoid AS r, t.ctid AS c FROM ${shape.table} t WHERE ${
    and(...conds)
  } LIMIT 1)`;
}

const ONE_ROW = "t.tableoid = m.r AND t.ctid = m.c";

/** Clone/append UPDATE of one matching row; inserts the new row when none matches (update_missing). */
export async function keylessUpdate(
  tx: Sql,
  shape: RouteShape,
  { old, row }: KeylessUpdate,
): Promise<StepResult> {
  const p = new Params();
  const m = matchOne(shape, p, old);
  const cols = shape.route.columns;
  const vals = newValues(p, cols, row);
  const sets = cols.flatMap((c, j) => vals[j] === null ? [] : [`${q(c.name)} = ${vals[j]}`]);
  if (sets.length === 0 && cols.length > 0) sets.push(`${q(cols[0].name)} = t.${q(cols[0].name)}`);
  const sid = sidParam(shape, p);
  const insCols = insertColumns(sid, cols);
  const insVals = [...sidValue(shape, sid), ...vals.map((v) => v ?? "NULL")];
  const text = sets.length === 0 ? `WITH ${m} SELECT count(*)::int4 AS n FROM m` : `WITH ${m},
u AS (UPDATE ${shape.table} t SET ${sets.join(", ")} FROM m WHERE ${ONE_ROW} RETURNING 1),
ins AS (INSERT INTO ${shape.table} (${insCols}) OVERRIDING SYSTEM VALUE SELECT ${
    insVals.join(", ")
  } WHERE NOT EXISTS (SELECT FROM u))
SELECT count(*)::int4 AS n FROM u`;
  const { rows } = await run(tx, text, p.values);
  const found = Number(rows[0]?.n ?? 0) > 0;
  return { rows: 1, anomalies: found ? [] : missingRow(shape, old, "update_missing") };
}

/** Clone DELETE of one matching row (delete_missing when none matches). */
export async function keylessDelete(
  tx: Sql,
  shape: RouteShape,
  { old }: KeylessDelete,
): Promise<StepResult> {
  const p = new Params();
  const text = `WITH ${
    matchOne(shape, p, old)
  } DELETE FROM ${shape.table} t USING m WHERE ${ONE_ROW}`;
  const { count } = await run(tx, text, p.values);
  return { rows: count, anomalies: count > 0 ? [] : missingRow(shape, old, "delete_missing") };
}

/**
 * History UPDATE at `at`: closes one matching current row and inserts the new
 * version from `at`, carrying unchanged TOAST values from the closed row.
 */
export async function keylessHistoryUpdate(
  tx: Sql,
  shape: RouteShape,
  { old, row, at }: KeylessUpdate,
): Promise<StepResult> {
  const p = new Params();
  const m = matchOne(shape, p, old);
  const atP = p.text(at);
  const cols = shape.route.columns;
  const { values, carried } = carriedValues(p, cols, { row, from: "c" });
  const sid = sidParam(shape, p);
  const insCols = insertColumns(sid, cols, VERSION_COLUMNS);
  const insVals = [
    ...sidValue(shape, sid),
    ...values,
    ...openVersion(shape, atP),
  ];
  const text = `WITH ${m},
c AS (UPDATE ${shape.table} t SET ${END} = ${atP}::${shape.endType} FROM m WHERE ${ONE_ROW} RETURNING ${
    carried.join(", ")
  })
INSERT INTO ${shape.table} (${insCols}) OVERRIDING SYSTEM VALUE SELECT ${insVals.join(", ")}
FROM (SELECT) x LEFT JOIN c ON true
RETURNING (SELECT count(*) FROM c)::int4 AS n`;
  const { rows } = await run(tx, text, p.values);
  const closed = Number(rows[0]?.n ?? 0);
  return {
    rows: closed + 1,
    anomalies: closed > 0 ? [] : missingRow(shape, old, "update_missing"),
  };
}

/** History DELETE at `at`: closes one matching current row as deleted. */
export async function keylessHistoryDelete(
  tx: Sql,
  shape: RouteShape,
  { old, at }: KeylessDelete,
): Promise<StepResult> {
  const p = new Params();
  const m = matchOne(shape, p, old);
  const text = `WITH ${m} UPDATE ${shape.table} t SET ${END} = ${
    p.text(at)
  }::${shape.endType}, ${DELETED} = true FROM m WHERE ${ONE_ROW}`;
  const { count } = await run(tx, text, p.values);
  return { rows: count, anomalies: count > 0 ? [] : missingRow(shape, old, "delete_missing") };
}
