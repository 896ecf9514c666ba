/**
 * Changes holding a {@link LargeValue} (a value over 16 MiB, kept as the
 * bytes it arrived in): found, and named in errors by their table, key and
 * size, since such a change is written on its own (see `Applier`).
 */
import { formatLsn } from "../pg/lsn.ts";
import { LargeValue, type Tuple } from "../source/messages.ts";
import { refusedValue } from "../pg/refused_value.ts";
import { changeKeyText, describeRefusedChange } from "./refused_change.ts";
import type { Change } from "./types.ts";
import { targetName } from "./write_order.ts";

/** True when one of the change's tuples holds a {@link LargeValue}. */
export function holdsLargeValue(change: Change): boolean {
  switch (change.kind) {
    case "insert":
      return hasLarge(change.newTuple);
    case "update":
      return hasLarge(change.newTuple) || hasLarge(change.keyTuple) || hasLarge(change.oldTuple);
    case "delete":
      return hasLarge(change.keyTuple) || hasLarge(change.oldTuple);
    default:
      return false;
  }
}

function hasLarge(tuple: Tuple | undefined): boolean {
  return tuple !== undefined && tuple.some((v) => v instanceof LargeValue);
}

/**
 * What a change holding large values is, for an error: `key (id)=(7),
 * source transaction committed at 0/1A2B3C4D, 700.0 MiB in column body`.
 */
export function describeLargeChange(change: Change, commitLsn: bigint): string {
  const tuple = change.kind === "insert" || change.kind === "update"
    ? change.newTuple
    : change.kind === "delete"
    ? change.keyTuple ?? change.oldTuple
    : undefined;
  const sizes = change.route.columns.flatMap((c) => {
    const v = tuple?.[c.sourceIndex];
    return v instanceof LargeValue ? [`${v.size} in column ${c.name}`] : [];
  });
  return `${changeKeyText(change)}, source transaction committed at ${formatLsn(commitLsn)}, ${
    sizes.join(", ") || "a large old value"
  }`;
}

/**
 * The error of a change holding large values that failed on its own, naming
 * its table, key, transaction and sizes (and, for a refused value, the fix).
 */
export function largeChangeError(e: unknown, change: Change, commitLsn: bigint): Error {
  const refused = refusedValue(e);
  const what = describeLargeChange(change, commitLsn);
  if (refused) return new Error(`${describeRefusedChange(refused, change, commitLsn)} (${what})`);
  const message = e instanceof Error ? e.message : String(e);
  return new Error(
    `${targetName(change.route.target)}: ${message}; ${what}; kvsz retries it, skipping nothing`,
  );
}
