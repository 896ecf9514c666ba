/**
 * A change of a table with `filter` or `set` (route.transform), turned into
 * what its target must see so that it stays "the source, filtered and
 * transformed": an INSERT the filter rejects is dropped; an UPDATE whose new
 * row the filter rejects deletes the key (the row moved out; history closes
 * it), one it accepts is written as an UPDATE (a row moving in is inserted
 * where the key is missing); a DELETE deletes the key. Keys and rows are in
 * the transform's layout, so a key column computed by `set` finds its row.
 * The target may legitimately lack the key of such an UPDATE or DELETE: the
 * applier does not count those as anomalies on a filtered table.
 */
import type { Tuple } from "../source/messages.ts";
import type { ErrorSink, RowContext } from "../transform/table_transform.ts";
import type { Change } from "./types.ts";

/** The change the target sees, or null when it sees nothing. */
export function transformChange(
  change: Change,
  commitTime: () => Date,
  sink: ErrorSink,
): Change | null {
  const t = change.route.transform;
  if (!t || change.kind === "truncate") return change;
  const context = (op: RowContext["op"], old?: Tuple): RowContext => ({ op, commitTime, old });
  // An old row ('O') is whole; a key ('K', or a new row standing for it) has only its key computed.
  const oldRow = (tuple: Tuple | undefined, op: RowContext["op"]) =>
    tuple === undefined ? undefined : t.project(tuple, context(op), sink) as Tuple | null;
  const keyRow = (tuple: Tuple | undefined, op: RowContext["op"]) =>
    tuple === undefined ? undefined : t.project(tuple, context(op), sink, true) as Tuple | null;
  switch (change.kind) {
    case "insert": {
      const row = t.row(change.newTuple, context("insert"), sink) as Tuple | null;
      return row === null ? null : { ...change, newTuple: row };
    }
    case "update": {
      const before = change.oldTuple ?? change.keyTuple;
      const row = t.row(change.newTuple, context("update", before), sink) as Tuple | null;
      const oldTuple = oldRow(change.oldTuple, "update");
      const keyTuple = keyRow(change.keyTuple, "update");
      if (oldTuple === null || keyTuple === null) return null; // its key cannot be computed (skip)
      if (row !== null) return { ...change, newTuple: row, oldTuple, keyTuple };
      // Out of the filter: its key leaves the target (the old key when the key changed).
      if (oldTuple || keyTuple) return { kind: "delete", route: change.route, oldTuple, keyTuple };
      const key = keyRow(change.newTuple, "update");
      return key ? { kind: "delete", route: change.route, keyTuple: key } : null;
    }
    case "delete": {
      const oldTuple = oldRow(change.oldTuple, "delete");
      const keyTuple = keyRow(change.keyTuple, "delete");
      if (oldTuple === null || keyTuple === null) return null;
      return { ...change, oldTuple, keyTuple };
    }
  }
}
