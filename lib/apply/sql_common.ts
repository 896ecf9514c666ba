/** Pieces shared by the mode writers: parameters, the target's columns, result rows. */
import type { Sql } from "../pg/connect.ts";
import { qualify, quoteIdent } from "../pg/identifiers.ts";
import { BinaryParam, binaryText, runWire, type WireParam } from "../pg/wire_statement.ts";
import { LargeValue, type Tuple } from "../source/messages.ts";
import { castType } from "./catalog.ts";
import type { MappedColumn, TableRoute } from "./types.ts";

/** `{ prepare: true }`: the plan text is reused, each statement costs one round trip. */
export const PREPARED = { prepare: true } as const;

/**
 * Collects positional parameters (passed as text, a {@link LargeValue} as
 * binary `text`) and names them `$n`.
 */
export class Params {
  readonly values: WireParam[] = [];
  /** Adds a value and returns its placeholder (give it an explicit array type). */
  add(value: WireParam): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  /**
   * Adds a scalar value and returns `$n::text`: the parameter is always typed
   * text, because porsager would re-serialize a string bound to a json, jsonb,
   * bool or bytea parameter (JSON.stringify, 't' only for `true`, UTF-8 hex);
   * cast the placeholder to the destination type after it.
   */
  text(value: string | null | LargeValue): string {
    return `${this.add(value instanceof LargeValue ? binaryText(value.bytes) : value)}::text`;
  }
}

/** What every statement for one route needs: names, types, sid. */
export interface RouteShape {
  route: TableRoute;
  /** Qualified target table name. */
  table: string;
  /** Key columns (empty for keyless routes). */
  key: MappedColumn[];
  /** Mapped columns that are not key columns. */
  values: MappedColumn[];
  /** The key columns, then the value columns. */
  keyThenValues: MappedColumn[];
  /** Source indexes of every mapped column. */
  allIdx: number[];
  /** Source indexes of the non-key mapped columns. */
  valueIdx: number[];
  /** Source indexes of the key columns. */
  keyIdx: number[];
  /** Type of `sid` (when the target has it). */
  sidType: string;
  /** Types of the kvsz_* columns. */
  startType: string;
  endType: string;
}

/** Precomputes the names and types a route's statements use. */
export function routeShape(route: TableRoute): RouteShape {
  const keyNames = new Set(route.key.map((k) => k.name));
  const t = route.target;
  const typeOf = (name: string, fallback: string) => {
    const column = t.columns.get(name);
    return column ? castType(column) : fallback;
  };
  const values = route.columns.filter((c) => !keyNames.has(c.name));
  return {
    route,
    table: qualify(t.schema, t.name),
    key: route.key,
    values,
    keyThenValues: [...route.key, ...values],
    allIdx: route.columns.map((c) => c.sourceIndex),
    valueIdx: values.map((c) => c.sourceIndex),
    keyIdx: route.key.map((c) => c.sourceIndex),
    sidType: typeOf("sid", "text"),
    startType: typeOf("kvsz_start", "timestamp with time zone"),
    endType: typeOf("kvsz_end", "timestamp with time zone"),
  };
}

/** `"name"` quoted. */
export const q = quoteIdent;

/** The history columns, quoted. */
export const START = q("kvsz_start");
export const END = q("kvsz_end");
export const DELETED = q("kvsz_deleted");

/**
 * The column list of an INSERT into a route's target: `sid` (when `sidParam`
 * is set), then `cols`, then `extra` (already quoted).
 */
export function insertColumns(
  sidParam: string | null,
  cols: readonly MappedColumn[],
  extra: readonly string[] = [],
): string {
  return [...(sidParam ? [q("sid")] : []), ...cols.map((c) => q(c.name)), ...extra].join(", ");
}

/**
 * Runs a prepared statement and returns its rows; one with a binary
 * parameter (a large value) is sent by kvsz itself ({@link runWire}).
 */
export async function run(
  tx: Sql,
  text: string,
  params: readonly WireParam[],
): Promise<{ rows: Record<string, unknown>[]; count: number }> {
  for (const p of params) if (p instanceof BinaryParam) return await runWire(tx, text, params);
  const res = await tx.unsafe(text, params as never[], PREPARED);
  return { rows: res as unknown as Record<string, unknown>[], count: res.count ?? 0 };
}

/** The sid condition `t.sid = $n::text::type` (empty when the target has no sid). */
export function sidMatch(shape: RouteShape, sidParam: string | null, alias = "t"): string {
  return sidParam ? `${alias}.${q("sid")} = ${sidParam}::${shape.sidType}` : "";
}

/** `t.sid = … AND t.k1 = s.k0::type …`: a target row matched against the staged key columns. */
export function stagedKeyMatch(shape: RouteShape, sidParam: string | null): string {
  return and(
    sidMatch(shape, sidParam),
    ...shape.key.map((k, j) => `t.${q(k.name)} = s.k${j}::${k.type}`),
  );
}

/**
 * The start of a set-based statement's parameters: a placeholder for the sid
 * (when the target has it), then an unnest argument for each `lead` column
 * (`[name, array type]`) and a `text[]` for each key column (named k0…).
 */
export function stagedKeys(
  shape: RouteShape,
  p: Params,
  lead: readonly [string, string][],
): { sid: string | null; args: string[]; names: string[] } {
  const sid = shape.route.target.hasSid ? p.text(null) : null;
  const args = lead.map(([, type]) => `${p.add(null)}::${type}`);
  const names = lead.map(([name]) => name);
  shape.key.forEach((_, j) => {
    args.push(`${p.add(null)}::text[]`);
    names.push(`k${j}`);
  });
  return { sid, args, names };
}

/** An unnest argument list being built: the arguments and the column names they get. */
export interface UnnestList {
  args: string[];
  names: string[];
}

/**
 * Adds one `text[]` parameter per value column (named c0…) and one `bool[]`
 * per column `flagged` true (named p0…) to an unnest argument list.
 */
export function addValueArrays(
  shape: RouteShape,
  p: Params,
  { flagged, args, names }: UnnestList & { flagged: readonly boolean[] },
): void {
  shape.values.forEach((_, j) => {
    args.push(`${p.add(null)}::text[]`);
    names.push(`c${j}`);
  });
  shape.values.forEach((_, j) => {
    if (!flagged[j]) return;
    args.push(`${p.add(null)}::bool[]`);
    names.push(`p${j}`);
  });
}

/** `t.sid = $n AND t.k1 = $m::type …`: the target row of one key, with its values as parameters. */
export function keyMatch(
  shape: RouteShape,
  p: Params,
  key: readonly (string | null)[],
): string {
  return and(sidMatch(shape, sidParam(shape, p)), ...keyEquals(shape, p, key));
}

/** `t.k1 = $m::type`, one per key column: the key's values as parameters. */
export function keyEquals(
  shape: RouteShape,
  p: Params,
  key: readonly (string | null)[],
): string[] {
  return shape.key.map((k, j) => `t.${q(k.name)} = ${p.text(key[j])}::${k.type}`);
}

/** The route's sid as a parameter (`$n::text`), or null when the target has no sid. */
export function sidParam(shape: RouteShape, p: Params): string | null {
  return shape.route.target.hasSid ? p.text(shape.route.sid) : null;
}

/** The sid's value in an INSERT's select list (none when `sid` is null). */
export function sidValue(shape: RouteShape, sid: string | null): string[] {
  return sid ? [`${sid}::${shape.sidType}`] : [];
}

/** Each column's value in `row` as a parameter cast to its type; null for an unchanged TOAST value. */
export function newValues(
  p: Params,
  cols: readonly MappedColumn[],
  row: Tuple,
): (string | null)[] {
  return cols.map((c) => {
    const v = row[c.sourceIndex];
    return v === undefined ? null : `${p.text(v)}::${c.type}`;
  });
}

/**
 * The values of a new history version: each column's value in `row` as a
 * parameter, or for an unchanged TOAST value `<from>.c<j>`, which the closing
 * UPDATE returns from the closed row (`carried`, its RETURNING list).
 */
export function carriedValues(
  p: Params,
  cols: readonly MappedColumn[],
  opts: { row: Tuple; from: string },
): { values: string[]; carried: string[] } {
  const carried = ["1 AS one"];
  const values = cols.map((c, j) => {
    const v = opts.row[c.sourceIndex];
    if (v !== undefined) return `${p.text(v)}::${c.type}`;
    carried.push(`t.${q(c.name)} AS c${j}`);
    return `${opts.from}.c${j}`;
  });
  return { values, carried };
}

/** Joins non-empty SQL conditions with AND (TRUE when there are none). */
export function and(...conds: string[]): string {
  const parts = conds.filter((c) => c !== "");
  return parts.length ? parts.join(" AND ") : "TRUE";
}

/** The value `'9999-01-01'` that marks a current history row. */
export const OPEN_END = "9999-01-01";
/** kvsz_start of a key's first version. */
export const FIRST_START = "1900-01-01";
/** The condition that the target row `t` is a current history row. */
export const CURRENT = `t.${END} = '${OPEN_END}'`;

/** The history columns an INSERT of a version names after the mapped ones. */
export const VERSION_COLUMNS: readonly string[] = [START, END, DELETED];

/** The values of {@link VERSION_COLUMNS} for a current version from `start` (SQL text). */
export function openVersion(shape: RouteShape, start: string): string[] {
  return [`${start}::${shape.startType}`, `'${OPEN_END}'::${shape.endType}`, "false"];
}
