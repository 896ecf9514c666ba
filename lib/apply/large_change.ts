/**
 * Changes holding a {@link LargeValue} (a value over 16 MiB, kept as the
 * bytes it arrived in): found, and named in errors by their table, key and
 * size, since such a change is written on its own (see `Applier`).
 */
import { formatLsn } from "../pg/lsn.ts";
import { LargeValue, type Tuple } from "../source/messages.ts";
import { refusedValue } from "../pg/refused_value.ts";
import { MessageTooLarge } from "../pg/wire_statement.ts";
import { changeKeyText, describeRefusedChange, rowOf } from "./refused_change.ts";
import type { Change } from "./types.ts";
import { targetName } from "./write_order.ts";
import { KvszError, type Recovery } from "../errors.ts";
import { overServerLimit } from "../pg/errors.ts";

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
 * source transaction committed at 0/1A2B3C4D, 700.0 MiB in column body`
 * (`commitLsn` 0: a transaction still running at the source).
 */
export function describeLargeChange(change: Change, commitLsn: bigint): string {
  const tuple = rowOf(change);
  const sizes = change.route.columns.flatMap((c) => {
    const v = tuple?.[c.sourceIndex];
    return v instanceof LargeValue ? [`${v.size} in column ${c.name}`] : [];
  });
  const txn = commitLsn === 0n
    ? "source transaction still running"
    : `source transaction committed at ${formatLsn(commitLsn)}`;
  return `${changeKeyText(change)}, ${txn}, ${sizes.join(", ") || "a large old value"}`;
}

/**
 * A change holding large values that the destination cannot take in any form
 * kvsz has: its table stops streaming (see the pipeline), every other table
 * streams on, and kvsz copies the table again at its next start.
 */
export class TableStopped extends KvszError {
  override get recovery(): Recovery {
    return "reconnect";
  }

  constructor(
    /** The source relation, `schema.name`. */
    readonly relation: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The error of a change holding large values that failed on its own, naming
 * its table, key, transaction and sizes: {@link TableStopped} when no retry
 * can succeed (a statement over PostgreSQL's 1 GB message limit, a program
 * limit such as an index's row size, a memory request over 1 GB); otherwise
 * it is retried (for a refused value, the message says the fix).
 */
export function largeChangeError(e: unknown, change: Change, commitLsn: bigint): Error {
  const refused = refusedValue(e);
  const what = describeLargeChange(change, commitLsn);
  if (refused) return new Error(`${describeRefusedChange(refused, change, commitLsn)} (${what})`);
  const message = e instanceof Error ? e.message : String(e);
  const { route } = change;
  const target = targetName(route.target);
  if (!pastLimit(e)) {
    return new Error(`${target}: ${message}; ${what}; kvsz retries it, skipping nothing`);
  }
  return new TableStopped(
    route.source,
    `stopped streaming ${route.source} into ${target}: ${message}; ${what}. ` +
      `Its changes are no longer applied and every other table streams on; kvsz copies it again ` +
      `at its next start: first let ${target} hold the value (an index on a large column cannot), ` +
      `or take the table out of the config`,
  );
}

/** True for an error no retry fixes for the same value. */
function pastLimit(e: unknown): boolean {
  if (e instanceof MessageTooLarge) return true;
  return overServerLimit(e);
}
