/**
 * Raised when a folded, set-based batch broke a destination constraint that
 * the source kept: a unique value swapped between two rows, a child row
 * written before its parent (its table's statement ran first). The source
 * applied those changes one at a time, in an order that never broke the
 * constraint; the pipeline reconnects at once and the applier applies the
 * source transactions up to `untilLsn` the same way. Nothing is lost: nothing
 * since the last destination commit was acknowledged. Also raised when the
 * destination refused a value of the batch: applied one at a time, the
 * change it belongs to is known, and its error names it.
 */
import { KvszError, type Recovery } from "../errors.ts";
import { pgErrorFields } from "../pg/errors.ts";
export class OneByOneRestart extends KvszError {
  override get recovery(): Recovery {
    return "reconnect";
  }

  /** Source transactions committed at or below this LSN are applied one change at a time. */
  readonly untilLsn: bigint;
  /** A transaction being applied as it streamed (its commit LSN is not known yet): spool it. */
  readonly streamedXid: number | null;
  /** The destination table whose constraint broke (or that refused a value). */
  readonly table: string;

  constructor(
    message: string,
    what: Pick<OneByOneRestart, "untilLsn" | "streamedXid" | "table">,
  ) {
    super(message);
    this.untilLsn = what.untilLsn;
    this.streamedXid = what.streamedXid;
    this.table = what.table;
  }
}

/** SQLSTATEs of constraints that only the order of the changes may break: unique, foreign key, exclusion. */
const ORDER_SENSITIVE = new Set(["23505", "23503", "23P01"]);

/** A server error of a constraint that folding may break: its table, and a description with the row; else null. */
export function orderSensitiveViolation(
  e: unknown,
): { table: string; description: string } | null {
  const err = pgErrorFields(e);
  if (!ORDER_SENSITIVE.has(err.code ?? "")) return null;
  const table = err.table_name ? `${err.schema_name ?? "?"}.${err.table_name}` : "?";
  return {
    table,
    description: `${table}: ${err.message}${err.detail ? ` (${err.detail})` : ""}`,
  };
}
