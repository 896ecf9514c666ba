/**
 * Helpers of the set-based table writer's tests (tests/e2e/apply_*_test.ts):
 * routes as the catalog builds them, changes built by hand, a flush inside
 * BEGIN/COMMIT that counts its statements, and the destination rows as text.
 */
import assertModule from "node:assert/strict";
import type { TestCluster } from "./cluster.ts";
import { connect, type Sql } from "../../lib/pg/connect.ts";
import { type FlushResult, TableBatch } from "../../lib/apply/table_batch.ts";
import type { Change, TableRoute, TargetColumn } from "../../lib/apply/types.ts";
import type { TableMode } from "../../lib/config/types.ts";
import type { Tuple } from "../../lib/source/messages.ts";

/** Deep strict equality (node:assert). */
export const assertEquals: (actual: unknown, expected: unknown, message?: string) => void =
  assertModule.deepStrictEqual;
/** Truthiness (node:assert). */
export const assert: (value: unknown, message?: string) => void = assertModule.ok;

/** Commit times of source transactions, in order. */
export const T1 = "2024-01-01T10:00:00.000001Z";
export const T2 = "2024-02-01T10:00:00.000002Z";
export const T3 = "2024-03-01T10:00:00.000003Z";
export const T4 = "2024-04-01T10:00:00.000004Z";
/** How the server prints the times above (TimeZone UTC). */
export const ts = (iso: string) => iso.replace("T", " ").replace("Z", "+00");
/** kvsz_start of a key's first version, as the server prints it. */
export const FIRST = "1900-01-01 00:00:00+00";
/** kvsz_end of a current version, as the server prints it. */
export const OPEN = "9999-01-01 00:00:00+00";

/** What a test says of a route; the rest is filled in as the catalog would. */
export interface RouteSpec {
  table: string;
  cols: [string, string][];
  key?: string[];
  mode?: TableMode;
  sid?: string;
  hasSid?: boolean;
  keyless?: boolean;
  /** Unique indexes of the target as the catalog reports them (none by default). */
  uniqueKeys?: string[][];
}

/** A route as the catalog would build it: source columns in `cols` order, all mapped. */
export function route(spec: RouteSpec): TableRoute {
  const mode = spec.mode ?? "clone";
  const hasSid = spec.hasSid ?? true;
  const columns = new Map<string, TargetColumn>();
  const col = (name: string, type: string) =>
    columns.set(name, { name, type, typeOid: 0, notNull: false, hasDefault: false });
  if (hasSid) col("sid", "text");
  for (const [name, type] of spec.cols) col(name, type);
  if (mode === "history") {
    col("kvsz_start", "timestamp with time zone");
    col("kvsz_end", "timestamp with time zone");
    col("kvsz_deleted", "boolean");
  }
  const mapped = spec.cols.map(([name, type], sourceIndex) => ({ sourceIndex, name, type }));
  const key = (spec.key ?? []).map((k) => mapped.find((c) => c.name === k)!);
  return {
    source: `public.${spec.table}`,
    mode,
    sid: spec.sid ?? "1",
    database: "src",
    target: {
      schema: "public",
      name: spec.table,
      columns,
      primaryKey: spec.key ?? [],
      hasSid,
      hasHistoryColumns: mode === "history",
      uniqueKeys: spec.uniqueKeys ?? [],
      foreignKeys: [],
    },
    columns: mapped,
    key,
    keyless: spec.keyless ?? false,
    syncedLsn: 0n,
  };
}

/** An INSERT of `v`. */
export const ins = (r: TableRoute, ...v: Tuple): Change => ({
  kind: "insert",
  route: r,
  newTuple: v,
});
/** An UPDATE to `v`, with the old key or old row the source sent. */
export const upd = (r: TableRoute, v: Tuple, o: { key?: Tuple; old?: Tuple } = {}): Change => ({
  kind: "update",
  route: r,
  newTuple: v,
  keyTuple: o.key,
  oldTuple: o.old,
});
/** A DELETE of the old key or old row. */
export const del = (r: TableRoute, o: { key?: Tuple; old?: Tuple }): Change => ({
  kind: "delete",
  route: r,
  keyTuple: o.key,
  oldTuple: o.old,
});
/** A TRUNCATE. */
export const trunc = (r: TableRoute): Change => ({ kind: "truncate", route: r });

/** A change and the commit time of its source transaction. */
export type At = [Change, string];

/** Counts the statements a flush sends. */
export function counting(tx: Sql): { tx: Sql; count: () => number } {
  let n = 0;
  const wrapped = {
    unsafe: (...args: Parameters<Sql["unsafe"]>) => {
      n++;
      return tx.unsafe(...args);
    },
  };
  return { tx: wrapped as unknown as Sql, count: () => n };
}

/** Adds the changes (default time T1), flushes once inside BEGIN/COMMIT. */
export async function apply(
  dst: Sql,
  batch: TableBatch,
  changes: (Change | At)[],
): Promise<FlushResult & { statements: number }> {
  for (const c of changes) {
    if (Array.isArray(c)) batch.add(c[0], c[1]);
    else batch.add(c, T1);
  }
  const conn = await dst.reserve();
  try {
    await conn.unsafe("BEGIN");
    const { tx, count } = counting(conn as unknown as Sql);
    const result = await batch.flush(tx);
    await conn.unsafe("COMMIT");
    assertEquals(batch.size, 0);
    return { ...result, statements: count() };
  } catch (e) {
    await conn.unsafe("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    conn.release();
  }
}

/** Rows of a query as arrays of text (NULL as null). */
export async function rows(dst: Sql, query: string): Promise<(string | null)[][]> {
  const res = await dst.unsafe(query).values();
  return res.map((r) => (r as unknown[]).map((v) => (v === null ? null : String(v))));
}

/** Anomalies as `kind:key,key` strings, sorted. */
export function anomalies(r: FlushResult): string[] {
  return r.anomalies.map((a) => `${a.kind}:${a.key.join(",")}`).sort();
}

/** A fresh database with a kvsz-style client (session settings, text values). */
export async function fresh(c: TestCluster, ddl: string): Promise<Sql> {
  const dst = connect(c.url(await c.createDatabase("apply")), { max: 2 });
  await dst.unsafe(ddl);
  return dst;
}

/** The history columns of a destination table, as DDL. */
export const HIST_COLS = "kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean";

/** A seeded generator of integers in [0, n) (mulberry32). */
export function random(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
}
