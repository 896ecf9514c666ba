/**
 * The message of a change the destination refused a value of (see
 * `lib/pg/refused_value.ts`): the destination table, the column, the row's
 * key, the source transaction's commit LSN, and the fix. Found while the
 * change is applied on its own (one change at a time, in source order).
 */
import { quoteIdent } from "../pg/identifiers.ts";
import { formatLsn } from "../pg/lsn.ts";
import { type RefusedValueError, refusedValueFix } from "../pg/refused_value.ts";
import type { Tuple } from "../source/messages.ts";
import type { Change, MappedColumn, TableRoute } from "./types.ts";
import { targetName } from "./write_order.ts";

/** Longest value shown in a message (longer ones are cut, with `…`). */
const SHOWN = 60;

/** The message for `change`, of a transaction committed at `commitLsn`, refused with `error`. */
export function describeRefusedChange(
  error: RefusedValueError,
  change: Change,
  commitLsn: bigint,
): string {
  const { route } = change;
  const table = targetName(route.target);
  const row = rowOf(change);
  const columns = row ? refusingColumns(error, route, row) : [];
  const where = error.code === "23514"
    ? `check constraint ${quoteIdent(error.constraint_name ?? "?")}`
    : columns.length > 0
    ? `column ${columns.join(" or ")}`
    : "column unknown";
  const detail = error.detail && error.detail.length <= 200 ? ` (${error.detail})` : "";
  const key = changeKeyText(change);
  const fix = refusedValueFix(error, table, columns);
  return `${table}: ${error.message}${detail}; ${where}, ${key}, ` +
    `source transaction committed at ${
      formatLsn(commitLsn)
    }: ${fix}; kvsz retries it, skipping nothing`;
}

/** `key (id)=(2)` of the change's row (`no row` for a TRUNCATE). */
export function changeKeyText(change: Change): string {
  const row = rowOf(change);
  return row ? keyText(change.route, row) : "no row";
}

/** The row a change writes (or, for a DELETE, the key it looks for). */
export function rowOf(change: Change): Tuple | undefined {
  switch (change.kind) {
    case "insert":
    case "update":
      return change.newTuple;
    case "delete":
      return change.keyTuple ?? change.oldTuple;
    default:
      return undefined;
  }
}

/** `key (id)=(2)` (the whole row for a table without key), values cut to {@link SHOWN}. */
function keyText(route: TableRoute, row: Tuple): string {
  const cols = route.key.length > 0 ? route.key : route.columns;
  const values = cols.map((c) => {
    const v = row[c.sourceIndex];
    if (v === null) return "null";
    if (v === undefined) return "unchanged";
    if (typeof v !== "string") return String(v);
    return v.length > SHOWN ? `${v.slice(0, SHOWN)}…` : v;
  });
  const what = route.key.length > 0 ? "key" : "row";
  return `${what} (${cols.map((c) => c.name).join(", ")})=(${values.join(", ")})`;
}

/**
 * The mapped column(s) that refused the value: the one the server names, else
 * those of the type the message names (`for type integer`, or `numeric(5,2)`
 * from an overflow's detail) and whose value it quotes. Empty when unknown.
 */
function refusingColumns(error: RefusedValueError, route: TableRoute, row: Tuple): string[] {
  if (error.column_name) return [error.column_name];
  if (error.code === "23514") return [];
  let found: MappedColumn[] = route.columns;
  const type = typeInMessage(error);
  if (type !== null) {
    const ofType = found.filter((c) => {
      const t = route.target.columns.get(c.name)?.type;
      return t === type || t === `${type}[]`;
    });
    if (ofType.length > 0) found = ofType;
  }
  const quoted = found.filter((c) => {
    const v = row[c.sourceIndex];
    return typeof v === "string" && error.message.includes(`"${v}"`);
  });
  if (quoted.length > 0) found = quoted;
  return found === route.columns ? [] : found.map((c) => c.name);
}

/** The destination type a data exception names, e.g. `integer` or `character varying(5)`. */
function typeInMessage(error: RefusedValueError): string | null {
  const named = /for type (.+?)(?:: "|$)/.exec(error.message);
  if (named) return named[1];
  const numeric = /precision (\d+), scale (\d+)/.exec(error.detail ?? "");
  return numeric ? `numeric(${numeric[1]},${numeric[2]})` : null;
}
