/**
 * Clone and append writers for keyed routes. A folded run of changes becomes
 * one statement per chunk of keys: data-modifying CTEs over `unnest` arrays
 * delete the keys that end absent, update the keys that end present and insert
 * those the update did not find, and return the keys whose destination state
 * was not the one their first operation expected (the anomalies).
 */
import type { Sql } from "../pg/connect.ts";
import { insertRowsParams, insertRowsSql } from "./sql_keyless.ts";
import { BinaryParam } from "../pg/wire_statement.ts";
import type { ColumnValue } from "../source/messages.ts";
import type { WireParam } from "../pg/wire_statement.ts";
import { boolArray, textArray } from "./text_array.ts";
import type { CloneEntry } from "./fold.ts";
import {
  addValueArrays,
  and,
  insertColumns,
  keyEquals,
  newValues,
  Params,
  PREPARED,
  q,
  type RouteShape,
  run,
  sidMatch,
  sidParam,
  sidValue,
  stagedKeyMatch,
  stagedKeys,
} from "./sql_common.ts";
import type { KeyChange, StepResult } from "./sql_step.ts";
import { cachedSql, clearNewKey, readAnomalies, sqlTag } from "./sql_step.ts";
import { errorCode } from "../pg/errors.ts";

/**
 * The set-based clone statement. Parameters: sid (when the target has it),
 * then `d bool[]` (key ends absent), `e bool[]` (key expected present), one
 * `text[]` per key column, one per value column, and one `bool[]` per value
 * column listed in `keepCols` (true: keep the destination's value).
 * Returns the 1-based positions `i` of the anomalous entries.
 *
 * Order inside the statement: every DELETE runs before the first UPDATE (the
 * `count(*) FROM del` init plan) and the INSERT reads all of `upd` before its
 * first row, so a unique value freed by a deleted row can be taken by an
 * updated or inserted one, as it was at the source.
 */
export function cloneChunkSql(shape: RouteShape, keepCols: readonly boolean[]): string {
  const p = new Params();
  const { sid, args, names } = stagedKeys(shape, p, [["d", "bool[]"], ["e", "bool[]"]]);
  addValueArrays(shape, p, { flagged: keepCols, args, names });
  const T = shape.table;
  const match = stagedKeyMatch(shape, sid);
  const sets = keptSets(shape, keepCols);
  const insCols = insertColumns(sid, shape.keyThenValues);
  const insVals = [
    ...sidValue(shape, sid),
    ...shape.key.map((k, j) => `s.k${j}::${k.type}`),
    ...shape.values.map((c, j) => `s.c${j}::${c.type}`),
  ];
  return `WITH s AS (SELECT * FROM unnest(${args.join(", ")}) WITH ORDINALITY AS s(${
    names.join(", ")
  }, i)),
del AS (DELETE FROM ${T} t USING s WHERE s.d AND ${match} RETURNING s.i),
upd AS (UPDATE ${T} t SET ${
    sets.join(", ")
  } FROM s WHERE NOT s.d AND ${match} AND (SELECT count(*) FROM del) >= 0 RETURNING s.i),
ins AS (INSERT INTO ${T} (${insCols}) OVERRIDING SYSTEM VALUE SELECT ${
    insVals.join(", ")
  } FROM s WHERE NOT s.d AND NOT EXISTS (SELECT FROM upd WHERE upd.i = s.i)),
f AS (SELECT i FROM del UNION ALL SELECT i FROM upd)
SELECT s.i::int4 AS i FROM s WHERE s.e AND NOT EXISTS (SELECT FROM f WHERE f.i = s.i)
UNION ALL
SELECT s.i::int4 FROM s WHERE NOT s.e AND EXISTS (SELECT FROM f WHERE f.i = s.i)`;
}

/**
 * The parameters of a clone statement for `entries`: sid, then (with
 * `withFlags`) `d` and `e`, the key arrays, the value arrays, and a keep
 * array for each value column holding an unchanged TOAST value somewhere.
 */
function entryParams(
  shape: RouteShape,
  entries: readonly CloneEntry[],
  withFlags: boolean,
): { params: WireParam[]; keepCols: boolean[] } {
  const n = entries.length;
  const nk = shape.key.length;
  const nv = shape.values.length;
  const d: boolean[] = withFlags ? new Array(n) : [];
  const e: boolean[] = withFlags ? new Array(n) : [];
  const keys: (string | null)[][] = Array.from({ length: nk }, () => new Array(n));
  const vals: ColumnValue[][] = Array.from({ length: nv }, () => new Array(n));
  const keepCols: boolean[] = new Array(nv).fill(false);
  const vIdx = shape.valueIdx;
  for (let r = 0; r < n; r++) {
    const en = entries[r];
    const row = en.row;
    if (withFlags) {
      d[r] = row === null;
      e[r] = en.first !== "I";
    }
    for (let j = 0; j < nk; j++) keys[j][r] = en.key[j];
    if (row === null) {
      for (let j = 0; j < nv; j++) vals[j][r] = null;
    } else {
      for (let j = 0; j < nv; j++) {
        const v = row[vIdx[j]];
        vals[j][r] = v;
        if (v === undefined) keepCols[j] = true;
      }
    }
  }
  const params: WireParam[] = [];
  if (shape.route.target.hasSid) params.push(shape.route.sid);
  if (withFlags) params.push(boolArray(d), boolArray(e));
  for (let j = 0; j < nk; j++) params.push(textArray(keys[j]));
  for (let j = 0; j < nv; j++) params.push(textArray(vals[j])); // undefined -> NULL
  for (let j = 0; j < nv; j++) {
    if (!keepCols[j]) continue;
    const col = vals[j];
    const keep: boolean[] = new Array(n);
    for (let r = 0; r < n; r++) keep[r] = col[r] === undefined;
    params.push(boolArray(keep));
  }
  return { params, keepCols };
}

/**
 * `col = s.c<j>::type` per value column (a column listed in `keepCols` keeps
 * the destination's value where `s.p<j>` is true); the key set to itself
 * when there is no value column.
 */
function keptSets(shape: RouteShape, keepCols: readonly boolean[]): string[] {
  const sets = shape.values.map((c, j) =>
    keepCols[j]
      ? `${q(c.name)} = CASE WHEN s.p${j} THEN t.${q(c.name)} ELSE s.c${j}::${c.type} END`
      : `${q(c.name)} = s.c${j}::${c.type}`
  );
  if (sets.length === 0) sets.push(`${q(shape.key[0].name)} = t.${q(shape.key[0].name)}`);
  return sets;
}

/** Applies folded clone entries (distinct keys) in one statement. */
export async function applyCloneChunk(
  tx: Sql,
  shape: RouteShape,
  entries: readonly CloneEntry[],
): Promise<StepResult> {
  const { params, keepCols } = entryParams(shape, entries, true);
  const text = cachedSql(shape, sqlTag("chunk", keepCols), () => cloneChunkSql(shape, keepCols));
  const { rows } = await run(tx, text, params);
  const { anomalous, anomalies } = readAnomalies(rows, entries);
  let written = 0;
  for (let r = 0; r < entries.length; r++) {
    if (entries[r].row !== null) written++;
    else if ((entries[r].first === "I") === (anomalous[r] === 1)) written++;
  }
  return { rows: written, anomalies };
}

/**
 * The plain set-based UPDATE of keys expected present: parameters as in
 * {@link cloneChunkSql} without `d` and `e`. No RETURNING: the row count
 * tells whether every key was found.
 */
function cloneUpdateSql(shape: RouteShape, keepCols: readonly boolean[]): string {
  const p = new Params();
  const { sid, args, names } = stagedKeys(shape, p, []);
  addValueArrays(shape, p, { flagged: keepCols, args, names });
  const sets = keptSets(shape, keepCols);
  return `UPDATE ${shape.table} t SET ${sets.join(", ")} FROM unnest(${args.join(", ")}) AS s(${
    names.join(", ")
  }) WHERE ${stagedKeyMatch(shape, sid)}`;
}

/**
 * Applies clone entries whose first operation is an UPDATE and whose key ends
 * present, with one plain UPDATE (needs {@link coversKey}: one row per key).
 * When fewer rows than keys were updated, the general statement runs for the
 * same entries: it finds every key present now except the missing ones, which
 * it inserts and reports as update_missing.
 */
export async function applyCloneUpdates(
  tx: Sql,
  shape: RouteShape,
  entries: readonly CloneEntry[],
): Promise<StepResult> {
  const { params, keepCols } = entryParams(shape, entries, false);
  const text = cachedSql(shape, sqlTag("update", keepCols), () => cloneUpdateSql(shape, keepCols));
  const { count } = await run(tx, text, params);
  if (count === entries.length) return { rows: count, anomalies: [] };
  return await applyCloneChunk(tx, shape, entries);
}

/** Savepoint around the plain INSERT of new keys. */
const NEW_KEYS = "kvsz_new_keys";

/**
 * Applies clone entries whose first operation is an INSERT and whose key ends
 * present: one plain multi-row INSERT, the cheapest statement there is. It
 * needs a unique index covering the key (see {@link coversKey}) so that a key
 * the destination already holds fails the INSERT; then the savepoint is
 * rolled back and the entries take the general statement, which converges
 * them and reports insert_existing.
 */
export async function applyCloneNewKeys(
  tx: Sql,
  shape: RouteShape,
  entries: readonly CloneEntry[],
): Promise<StepResult> {
  const rows = entries.map((e) => e.row!);
  const params = insertRowsParams(shape, rows);
  const [savepoint, insert, release] = params.some((p) => p instanceof BinaryParam)
    // A large value goes on the socket from kvsz itself: one statement after another.
    ? await settledInOrder([
      () => run(tx, `SAVEPOINT ${NEW_KEYS}`, []),
      () => run(tx, insertRowsSql(shape, false), params),
      () => run(tx, `RELEASE SAVEPOINT ${NEW_KEYS}`, []),
    ])
    // One round trip: the three statements are sent together, in this order.
    : await Promise.allSettled([
      tx.unsafe(`SAVEPOINT ${NEW_KEYS}`).execute(),
      tx.unsafe(insertRowsSql(shape, false), params as never[], PREPARED).execute(),
      tx.unsafe(`RELEASE SAVEPOINT ${NEW_KEYS}`).execute(),
    ]);
  if (savepoint.status === "rejected") throw savepoint.reason;
  if (insert.status === "fulfilled") {
    if (release.status === "rejected") throw release.reason;
    return { rows: insert.value.count ?? 0, anomalies: [] };
  }
  if (errorCode(insert.reason) !== "23505") throw insert.reason; // not unique_violation
  // The RELEASE failed too (the transaction was aborted): undo the INSERT.
  await tx.unsafe(`ROLLBACK TO SAVEPOINT ${NEW_KEYS}`);
  await tx.unsafe(`RELEASE SAVEPOINT ${NEW_KEYS}`);
  return await applyCloneChunk(tx, shape, entries);
}

/** Runs `steps` one after another, each whatever the last one did, and says how each ended. */
async function settledInOrder<T>(
  steps: (() => Promise<T>)[],
): Promise<PromiseSettledResult<T>[]> {
  const results: PromiseSettledResult<T>[] = [];
  for (const step of steps) {
    results.push(
      await step().then(
        (value) => ({ status: "fulfilled", value }) as const,
        (reason) => ({ status: "rejected", reason }) as const,
      ),
    );
  }
  return results;
}

/**
 * True when one of the target's unique indexes has only key columns (and
 * sid): then inserting a key the target already holds is an error.
 */
export function coversKey(shape: RouteShape): boolean {
  const keyCols = new Set(shape.key.map((k) => k.name));
  if (shape.route.target.hasSid) keyCols.add("sid");
  return shape.key.length > 0 &&
    shape.route.target.uniqueKeys.some((cols) => cols.every((c) => keyCols.has(c)));
}

/**
 * Applies an UPDATE that changed the key: a row already holding the new key is
 * removed (insert_existing), then the old key's row is updated in place (so
 * unchanged TOAST values stay) or, when missing, the new row is inserted
 * (update_missing).
 */
export async function applyCloneKeyChange(
  tx: Sql,
  shape: RouteShape,
  { oldKey, newKey, row }: KeyChange,
): Promise<StepResult> {
  const T = shape.table;
  const cleared = await clearNewKey(tx, shape, {
    newKey,
    write: (_, match) => `DELETE FROM ${T} t WHERE ${match}`,
  });
  const p = new Params();
  const sid = sidParam(shape, p);
  const newK = shape.key.map((k, j) => `${p.text(newKey[j])}::${k.type}`);
  const oldMatch = and(sidMatch(shape, sid), ...keyEquals(shape, p, oldKey));
  const newV = newValues(p, shape.values, row);
  const sets = [
    ...shape.key.map((k, j) => `${q(k.name)} = ${newK[j]}`),
    ...shape.values.flatMap((c, j) => newV[j] === null ? [] : [`${q(c.name)} = ${newV[j]}`]),
  ];
  const insCols = insertColumns(sid, shape.keyThenValues);
  const insVals = [...sidValue(shape, sid), ...newK, ...newV.map((v) => v ?? "NULL")];
  const text = `WITH u AS (UPDATE ${T} t SET ${sets.join(", ")} WHERE ${oldMatch} RETURNING 1)
INSERT INTO ${T} (${insCols}) OVERRIDING SYSTEM VALUE SELECT ${
    insVals.join(", ")
  } WHERE NOT EXISTS (SELECT FROM u) RETURNING 1`;
  const { count } = await run(tx, text, p.values);
  if (count > 0) cleared.anomalies.push({ kind: "update_missing", key: oldKey });
  return { rows: cleared.rows + 1, anomalies: cleared.anomalies };
}

/** Applies a TRUNCATE in clone mode: the sid's rows are deleted, or the whole target truncated. */
export async function applyCloneTruncate(tx: Sql, shape: RouteShape): Promise<StepResult> {
  if (!shape.route.target.hasSid) {
    await run(tx, `TRUNCATE ${shape.table}`, []);
    return { rows: 0, anomalies: [] };
  }
  const p = new Params();
  const sid = p.text(shape.route.sid);
  const { count } = await run(
    tx,
    `DELETE FROM ${shape.table} t WHERE ${sidMatch(shape, sid)}`,
    p.values,
  );
  return { rows: count, anomalies: [] };
}
