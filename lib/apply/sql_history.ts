/**
 * History (SCD type 2) writer for keyed routes. A folded run becomes one
 * statement per chunk of keys: close each key's current row (kvsz_end =
 * '9999-01-01') at the time of its first operation, then insert every version
 * the run produced, carrying unchanged TOAST values from the closed row, and
 * return the keys whose current row was not in the state their first
 * operation expected (the anomalies).
 */
import type { Sql } from "../pg/connect.ts";
import type { ColumnValue } from "../source/messages.ts";
import type { WireParam } from "../pg/wire_statement.ts";
import { boolArray, textArray } from "./text_array.ts";
import type { HistoryEntry } from "./fold.ts";
import {
  addValueArrays,
  and,
  carriedValues,
  CURRENT,
  DELETED,
  END,
  FIRST_START,
  insertColumns,
  keyEquals,
  OPEN_END,
  openVersion,
  Params,
  q,
  type RouteShape,
  run,
  sidMatch,
  sidParam,
  sidValue,
  stagedKeyMatch,
  stagedKeys,
  VERSION_COLUMNS,
} from "./sql_common.ts";
import type { KeyChange, StepResult } from "./sql_step.ts";
import { cachedSql, clearNewKey, readAnomalies, sqlTag } from "./sql_step.ts";

/**
 * The set-based history statement. Parameters: sid (when the target has it);
 * per key: `f text[]` (first op I/U/D), `t1 text[]` (its commit time), one
 * `text[]` per key column; per version: `i int8[]` (1-based key position),
 * `st text[]` (start), `fs bool[]` (start at 1900 when the key had no row),
 * `en text[]` (end, NULL = open), `dl bool[]`, one `text[]` per value column and one `bool[]` per value
 * column listed in `carryCols` (true: take the closed row's value).
 */
export function historyChunkSql(shape: RouteShape, carryCols: readonly boolean[]): string {
  const p = new Params();
  const staged = stagedKeys(shape, p, [["f", "text[]"], ["t1", "text[]"]]);
  const sid = staged.sid;
  const vArgs = [
    `${p.add(null)}::int8[]`,
    `${p.add(null)}::text[]`,
    `${p.add(null)}::bool[]`,
    `${p.add(null)}::text[]`,
    `${p.add(null)}::bool[]`,
  ];
  const vNames = ["i", "st", "fs", "en", "dl"];
  addValueArrays(shape, p, { flagged: carryCols, args: vArgs, names: vNames });
  const T = shape.table;
  const match = stagedKeyMatch(shape, sid);
  const carried = shape.values.flatMap((c, j) => carryCols[j] ? [`t.${q(c.name)} AS c${j}`] : []);
  const anyCarry = carried.length > 0;
  const insCols = insertColumns(sid, shape.keyThenValues, VERSION_COLUMNS);
  const insVals = [
    ...sidValue(shape, sid),
    ...shape.key.map((k, j) => `s.k${j}::${k.type}`),
    ...shape.values.map((c, j) =>
      carryCols[j]
        ? `CASE WHEN v.p${j} THEN cl.c${j} ELSE v.c${j}::${c.type} END`
        : `v.c${j}::${c.type}`
    ),
    `(CASE WHEN v.fs AND seen.i IS NULL THEN '${FIRST_START}' ELSE v.st END)::${shape.startType}`,
    `COALESCE(v.en, '${OPEN_END}')::${shape.endType}`,
    "v.dl",
  ];
  // cl is an aggregate over closed, so every close runs before the first insert
  // (a unique index on the current rows never sees two current versions).
  const cl = anyCarry
    ? `SELECT DISTINCT ON (i) * FROM closed ORDER BY i`
    : `SELECT DISTINCT i FROM closed`;
  return `WITH s AS (SELECT * FROM unnest(${staged.args.join(", ")}) WITH ORDINALITY AS s(${
    staged.names.join(", ")
  }, i)),
v AS (SELECT * FROM unnest(${vArgs.join(", ")}) AS v(${vNames.join(", ")})),
closed AS (UPDATE ${T} t SET ${END} = s.t1::${shape.endType}, ${DELETED} = (s.f = 'D') FROM s WHERE ${match} AND ${CURRENT} RETURNING ${
    ["s.i", ...carried].join(", ")
  }),
cl AS (${cl}),
seen AS (SELECT DISTINCT s.i FROM s JOIN ${T} t ON ${match} WHERE s.f <> 'U'),
ins AS (INSERT INTO ${T} (${insCols}) OVERRIDING SYSTEM VALUE SELECT ${insVals.join(", ")}
  FROM v JOIN s ON s.i = v.i LEFT JOIN cl ON cl.i = v.i LEFT JOIN seen ON seen.i = v.i)
SELECT s.i::int4 AS i FROM s WHERE s.f = 'I' AND EXISTS (SELECT FROM cl WHERE cl.i = s.i)
UNION ALL
SELECT s.i::int4 FROM s WHERE s.f <> 'I' AND NOT EXISTS (SELECT FROM cl WHERE cl.i = s.i)`;
}

/** Applies folded history entries (distinct keys) in one statement. */
export async function applyHistoryChunk(
  tx: Sql,
  shape: RouteShape,
  entries: readonly HistoryEntry[],
): Promise<StepResult> {
  const n = entries.length;
  const nk = shape.key.length;
  const nv = shape.values.length;
  const vIdx = shape.valueIdx;
  const f: string[] = new Array(n);
  const t1: string[] = new Array(n);
  const keys: (string | null)[][] = Array.from({ length: nk }, () => new Array(n));
  const vi: number[] = [];
  const st: string[] = [];
  const fs: boolean[] = [];
  const en: (string | null)[] = [];
  const dl: boolean[] = [];
  const vals: ColumnValue[][] = Array.from({ length: nv }, () => []);
  const carryCols: boolean[] = new Array(nv).fill(false);
  let versions = 0;
  for (let r = 0; r < n; r++) {
    const e = entries[r];
    f[r] = e.first;
    t1[r] = e.firstTime;
    for (let j = 0; j < nk; j++) keys[j][r] = e.key[j];
    for (const v of e.versions) {
      vi.push(r + 1);
      st.push(v.start);
      fs.push(v.firstStart);
      en.push(v.end);
      dl.push(v.deleted);
      for (let j = 0; j < nv; j++) {
        const x = v.row[vIdx[j]];
        vals[j].push(x);
        if (x === undefined) carryCols[j] = true;
      }
      versions++;
    }
  }
  const params: WireParam[] = [];
  if (shape.route.target.hasSid) params.push(shape.route.sid);
  params.push(textArray(f), textArray(t1));
  for (let j = 0; j < nk; j++) params.push(textArray(keys[j]));
  params.push(`{${vi.join(",")}}`, textArray(st), boolArray(fs), textArray(en), boolArray(dl));
  for (let j = 0; j < nv; j++) params.push(textArray(vals[j]));
  for (let j = 0; j < nv; j++) {
    if (carryCols[j]) params.push(boolArray(vals[j].map((x) => x === undefined)));
  }
  const text = cachedSql(
    shape,
    sqlTag("history", carryCols),
    () => historyChunkSql(shape, carryCols),
  );
  const { rows } = await run(tx, text, params);
  const { anomalous, anomalies } = readAnomalies(rows, entries);
  let closed = 0;
  for (let r = 0; r < n; r++) if ((entries[r].first === "I") === (anomalous[r] === 1)) closed++;
  return { rows: closed + versions, anomalies };
}

/**
 * Applies an UPDATE that changed the key at time `at`: a current row of the new
 * key is closed (insert_existing), the old key's current row is closed, and a
 * version with the new key starts at `at`, carrying unchanged TOAST values from
 * the closed row (NULL and update_missing when there was none).
 */
export async function applyHistoryKeyChange(
  tx: Sql,
  shape: RouteShape,
  { oldKey, newKey, row, at }: KeyChange,
): Promise<StepResult> {
  const T = shape.table;
  const cleared = await clearNewKey(tx, shape, {
    newKey,
    write: (p, match) =>
      `UPDATE ${T} t SET ${END} = ${p.text(at)}::${shape.endType} WHERE ${match} AND ${CURRENT}`,
  });
  const p = new Params();
  const sid = sidParam(shape, p);
  const atP = p.text(at);
  const oldMatch = and(sidMatch(shape, sid), ...keyEquals(shape, p, oldKey));
  const { values, carried } = carriedValues(p, shape.values, { row, from: "c1" });
  const insCols = insertColumns(sid, shape.keyThenValues, VERSION_COLUMNS);
  const insVals = [
    ...sidValue(shape, sid),
    ...shape.key.map((k, j) => `${p.text(newKey[j])}::${k.type}`),
    ...values,
    ...openVersion(shape, atP),
  ];
  const text =
    `WITH c AS (UPDATE ${T} t SET ${END} = ${atP}::${shape.endType}, ${DELETED} = false WHERE ${oldMatch} AND ${CURRENT} RETURNING ${
      carried.join(", ")
    }),
c1 AS (SELECT * FROM c LIMIT 1)
INSERT INTO ${T} (${insCols}) OVERRIDING SYSTEM VALUE SELECT ${insVals.join(", ")}
FROM (SELECT) x LEFT JOIN c1 ON true
RETURNING (SELECT count(*) FROM c)::int4 AS n`;
  const { rows } = await run(tx, text, p.values);
  const closedOld = Number(rows[0]?.n ?? 0);
  if (closedOld === 0) cleared.anomalies.push({ kind: "update_missing", key: oldKey });
  return { rows: cleared.rows + closedOld + 1, anomalies: cleared.anomalies };
}

/** Applies a TRUNCATE in history mode: every current row (of the sid) is closed as deleted at `at`. */
export async function applyHistoryTruncate(
  tx: Sql,
  shape: RouteShape,
  at: string,
): Promise<StepResult> {
  const p = new Params();
  const sid = sidParam(shape, p);
  const text = `UPDATE ${shape.table} t SET ${END} = ${
    p.text(at)
  }::${shape.endType}, ${DELETED} = true WHERE ${and(sidMatch(shape, sid), CURRENT)}`;
  const { count } = await run(tx, text, p.values);
  return { rows: count, anomalies: [] };
}
