/**
 * What a failed destination job is reported as: a folded batch that broke a
 * constraint or had a value refused restarts the pipeline one change at a
 * time ({@link OneByOneRestart}); a change applied on its own is named (its
 * table, key, transaction); a change holding a large value is named with its
 * sizes, or stops its table.
 */
import { formatLsn } from "../pg/lsn.ts";
import { refusedValue } from "../pg/refused_value.ts";
import { holdsLargeValue, largeChangeError } from "./large_change.ts";
import { OneByOneRestart, orderSensitiveViolation } from "./one_by_one_restart.ts";
import { describeRefusedChange } from "./refused_change.ts";
import type { Change, TableRoute } from "./types.ts";
import { targetName } from "./write_order.ts";

/** What a job's failure is read against. */
export interface JobScope {
  /** The job writes folded changes (not applied one change at a time). */
  folded: boolean;
  /** The transaction applied as it streamed whose changes the job's destination transaction holds. */
  streamedXid: number | null;
  /** The one change the job writes, applied on its own, and its transaction's commit LSN. */
  one?: { change: Change; commitLsn: bigint };
  /** The route whose changes are being written (set as the job writes). */
  writing?: TableRoute;
}

/**
 * A constraint that a folded batch broke may hold in source order (a unique
 * value swapped between rows, a child written before its parent): then the
 * pipeline restarts and the source transactions read so far (committed at or
 * below `readUpTo`) are applied one change at a time. Broken one change at a
 * time, the destination holds a row the source does not, and the error says
 * so. A value the destination refuses (out of range, too long, NULL, a CHECK)
 * goes the same way, so that the error names the change it belongs to: its
 * table, column, key and LSN. Any other failure is reported as it is.
 */
export function explainJobFailure(e: unknown, scope: JobScope, readUpTo: bigint): unknown {
  if (scope.one && holdsLargeValue(scope.one.change)) {
    return largeChangeError(e, scope.one.change, scope.one.commitLsn);
  }
  const violation = orderSensitiveViolation(e);
  const refused = violation ? null : refusedValue(e);
  if (violation) {
    if (scope.folded) return restart(scope, violation, readUpTo);
    return new Error(
      `${violation.description} even one change at a time, in source order: the destination holds ` +
        `a row the source does not, or an index the source's changes cannot satisfy (kvsz validate ` +
        `checks targets); fix it, kvsz retries`,
    );
  }
  if (refused === null) return e;
  if (scope.folded) {
    const table = scope.writing ? targetName(scope.writing.target) : "?";
    return restart(scope, { table, description: `${table}: ${refused.message}` }, readUpTo);
  }
  const one = scope.one;
  return one ? new Error(describeRefusedChange(refused, one.change, one.commitLsn)) : e;
}

function restart(
  scope: JobScope,
  broken: { table: string; description: string },
  until: bigint,
): OneByOneRestart {
  return new OneByOneRestart(
    `${broken.description}; applying the source transactions up to ${
      formatLsn(until)
    } one change at a time, in source order`,
    { untilLsn: until, streamedXid: scope.streamedXid, table: broken.table },
  );
}
