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
import {
  and,
  DELETED,
  END,
  FIRST_START,
  insertColumns,
  OPEN_END,
  Params,
  q,
  type RouteShape,
  run,
  sidMatch,
  START,
} from "./sql_common.ts";
import type { StepResult } from "./sql_clone.ts";

/** The multi-row insert: one `text[]` parameter per mapped column (plus sid first). */
export function insertRowsSql(shape: RouteShape, history: boolean): string {
  const p = new Params();
  const sid = shape.route.target.hasSid ? p.text(null) : null;
  const cols = shape.route.columns;
  const args = cols.map(() => `${p.add(null)}::text[]`);
  const names = cols.map((_, j) => `c${j}`);
  const insCols = insertColumns(sid, cols, history ? [START, END, DELETED] : []);
  const insVals = [
    ...(sid ? [`${sid}::${shape.sidType}`] : []),
    ...cols.map((c, j) => `s.c${j}::${c.type}`),
    ...(history
      ? [`'${FIRST_START}'::${shape.startType}`, `'${OPEN_END}'::${shape.endType}`, "false"]
      : []),
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
  rows: readonly Tuple[],
  history: boolean,
): Promise<StepResult> {
  const { count } = await run(tx, insertRowsSql(shape, history), insertRowsParams(shape, rows));
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
export function rowKey(shape: RouteShape, row: Tuple): (string | null)[] {
  return shape.allIdx.map((i) => {
    const v = row[i];
    return v === undefined || v === null ? null : String(v);
  });
}

/**
 * `m` CTE: the (tableoid, ctid) of one row (of the sid) whose mapped columns
 * equal `old` as text (columns whose old value is unchanged TOAST are skipped).
 */
function matchOne(shape: RouteShape, p: Params, old: Tuple, currentOnly: boolean): string {
  const sid = shape.route.target.hasSid ? p.text(shape.route.sid) : null;
  const conds = [sidMatch(shape, sid)];
  for (const c of shape.route.columns) {
    const v = old[c.sourceIndex];
    if (v === undefined) continue;
    conds.push(`t.${q(c.name)}::text IS NOT DISTINCT FROM ${p.text(v)}::${c.type}::text`);
  }
  if (currentOnly) conds.push(`t.${END} = '${OPEN_END}'`);
  return `m AS (SELECT t.tableoid AS r, t.ctid AS c FROM ${shape.table} t WHERE ${
    and(...conds)
  } LIMIT 1)`;
}

const ONE_ROW = "t.tableoid = m.r AND t.ctid = m.c";

/** Clone/append UPDATE of one matching row; inserts the new row when none matches (update_missing). */
export async function keylessUpdate(
  tx: Sql,
  shape: RouteShape,
  old: Tuple,
  row: Tuple,
): Promise<StepResult> {
  const p = new Params();
  const m = matchOne(shape, p, old, false);
  const cols = shape.route.columns;
  const vals = cols.map((c) => {
    const v = row[c.sourceIndex];
    return v === undefined ? null : `${p.text(v)}::${c.type}`;
  });
  const sets = cols.flatMap((c, j) => vals[j] === null ? [] : [`${q(c.name)} = ${vals[j]}`]);
  if (sets.length === 0 && cols.length > 0) sets.push(`${q(cols[0].name)} = t.${q(cols[0].name)}`);
  const sid = shape.route.target.hasSid ? p.text(shape.route.sid) : null;
  const insCols = insertColumns(sid, cols);
  const insVals = [...(sid ? [`${sid}::${shape.sidType}`] : []), ...vals.map((v) => v ?? "NULL")];
  const text = sets.length === 0 ? `WITH ${m} SELECT count(*)::int4 AS n FROM m` : `WITH ${m},
u AS (UPDATE ${shape.table} t SET ${sets.join(", ")} FROM m WHERE ${ONE_ROW} RETURNING 1),
ins AS (INSERT INTO ${shape.table} (${insCols}) OVERRIDING SYSTEM VALUE SELECT ${
    insVals.join(", ")
  } WHERE NOT EXISTS (SELECT FROM u))
SELECT count(*)::int4 AS n FROM u`;
  const { rows } = await run(tx, text, p.values);
  if (Number(rows[0]?.n ?? 0) > 0) return { rows: 1, anomalies: [] };
  return { rows: 1, anomalies: [{ kind: "update_missing", key: rowKey(shape, old) }] };
}

/** Clone DELETE of one matching row (delete_missing when none matches). */
export async function keylessDelete(tx: Sql, shape: RouteShape, old: Tuple): Promise<StepResult> {
  const p = new Params();
  const text = `WITH ${
    matchOne(shape, p, old, false)
  } DELETE FROM ${shape.table} t USING m WHERE ${ONE_ROW}`;
  const { count } = await run(tx, text, p.values);
  return anomalyUnless(shape, old, count, "delete_missing");
}

/**
 * History UPDATE at `at`: closes one matching current row and inserts the new
 * version from `at`, carrying unchanged TOAST values from the closed row.
 */
export async function keylessHistoryUpdate(
  tx: Sql,
  shape: RouteShape,
  old: Tuple,
  row: Tuple,
  at: string,
): Promise<StepResult> {
  const p = new Params();
  const m = matchOne(shape, p, old, true);
  const atP = p.text(at);
  const cols = shape.route.columns;
  const carried = ["1 AS one"];
  const vals = cols.map((c, j) => {
    const v = row[c.sourceIndex];
    if (v !== undefined) return `${p.text(v)}::${c.type}`;
    carried.push(`t.${q(c.name)} AS c${j}`);
    return `c.c${j}`;
  });
  const sid = shape.route.target.hasSid ? p.text(shape.route.sid) : null;
  const insCols = insertColumns(sid, cols, [START, END, DELETED]);
  const insVals = [
    ...(sid ? [`${sid}::${shape.sidType}`] : []),
    ...vals,
    `${atP}::${shape.startType}`,
    `'${OPEN_END}'::${shape.endType}`,
    "false",
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
  const res = anomalyUnless(shape, old, closed, "update_missing");
  return { rows: closed + 1, anomalies: res.anomalies };
}

/** History DELETE at `at`: closes one matching current row as deleted. */
export async function keylessHistoryDelete(
  tx: Sql,
  shape: RouteShape,
  old: Tuple,
  at: string,
): Promise<StepResult> {
  const p = new Params();
  const m = matchOne(shape, p, old, true);
  const text = `WITH ${m} UPDATE ${shape.table} t SET ${END} = ${
    p.text(at)
  }::${shape.endType}, ${DELETED} = true FROM m WHERE ${ONE_ROW}`;
  const { count } = await run(tx, text, p.values);
  return anomalyUnless(shape, old, count, "delete_missing");
}

function anomalyUnless(
  shape: RouteShape,
  old: Tuple,
  count: number,
  kind: FoldAnomaly["kind"],
): StepResult {
  return count > 0
    ? { rows: count, anomalies: [] }
    : { rows: 0, anomalies: [{ kind, key: rowKey(shape, old) }] };
}
