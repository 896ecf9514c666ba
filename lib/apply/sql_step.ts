/**
 * What the mode writers share about one step of a flush: what it did
 * ({@link StepResult}), the cache of the set-based statements' text, reading
 * back the anomalies such a statement returns, and the first step of a key
 * change.
 */
import type { Sql } from "../pg/connect.ts";
import type { Tuple } from "../source/messages.ts";
import { type FirstOp, firstOpAnomaly, type FoldAnomaly, type KeyValues } from "./fold.ts";
import { keyMatch, Params, type RouteShape, run } from "./sql_common.ts";

/** A keyed UPDATE that changed the key, committed at `at` (read by history). */
export interface KeyChange {
  oldKey: KeyValues;
  newKey: KeyValues;
  row: Tuple;
  at: string;
}

/** What applying part of a batch did. */
export interface StepResult {
  /** Destination rows inserted, updated or deleted. */
  rows: number;
  anomalies: FoldAnomaly[];
}

const sqlCache = new WeakMap<RouteShape, Map<string, string>>();

/** The text of a route's statement `tag` (see {@link sqlTag}), built by `build` once per route and tag. */
export function cachedSql(shape: RouteShape, tag: string, build: () => string): string {
  let m = sqlCache.get(shape);
  if (!m) sqlCache.set(shape, m = new Map());
  let text = m.get(tag);
  if (text === undefined) m.set(tag, text = build());
  return text;
}

/** The cache tag of the statement `kind` for the columns `flags` marks (kept or carried values). */
export function sqlTag(kind: string, flags: readonly boolean[]): string {
  let tag = `${kind}:`;
  for (const f of flags) tag += f ? "1" : "0";
  return tag;
}

/**
 * Reads the rows of a set-based statement that returns `i`, the 1-based
 * positions of the entries whose first operation found the destination in
 * the unexpected state: those anomalies, and a flag per entry.
 */
export function readAnomalies(
  rows: readonly Record<string, unknown>[],
  entries: readonly { first: FirstOp; key: KeyValues }[],
): { anomalous: Uint8Array; anomalies: FoldAnomaly[] } {
  const anomalous = new Uint8Array(entries.length);
  const anomalies: FoldAnomaly[] = [];
  for (const row of rows) {
    const i = (row.i as number) - 1;
    anomalous[i] = 1;
    anomalies.push({ kind: firstOpAnomaly(entries[i].first), key: entries[i].key });
  }
  return { anomalous, anomalies };
}

/**
 * The first step of a key change: a row already holding the new key is
 * deleted or closed by the statement `write` builds from the match of that
 * key (`t` is the target), and reported as insert_existing.
 */
export async function clearNewKey(
  tx: Sql,
  shape: RouteShape,
  opts: { newKey: KeyValues; write: (p: Params, match: string) => string },
): Promise<StepResult> {
  const p = new Params();
  const match = keyMatch(shape, p, opts.newKey);
  const { count } = await run(tx, opts.write(p, match), p.values);
  return count > 0
    ? { rows: count, anomalies: [{ kind: "insert_existing", key: opts.newKey }] }
    : { rows: 0, anomalies: [] };
}
