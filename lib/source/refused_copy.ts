/**
 * The message of an initial copy the destination refused a value of (see
 * `lib/pg/refused_value.ts`): the source table, the destination table, the
 * server's message with its COPY context (line and column), and the fix.
 */
import { refusedValue, refusedValueFix } from "../pg/refused_value.ts";

/** An error naming the tables of a copy that failed on a refused value; null for other errors. */
export function refusedCopy(e: unknown, source: string, target: string): Error | null {
  const error = refusedValue(e);
  if (error === null) return null;
  const where = error.where?.split("\n").find((line) => line.startsWith("COPY "));
  const column = error.column_name ?? columnOf(where);
  return new Error(
    `copying ${source} into ${target}: ${error.message}${where ? ` (${where})` : ""}: ${
      refusedValueFix(error, target, column ? [column] : [])
    }; kvsz copies the table again when it retries`,
  );
}

/** The column a COPY context names: `COPY t, line 2, column n: "…"` → `n`. */
function columnOf(where: string | undefined): string | undefined {
  return where ? /^COPY .*?, line \d+, column (.+?)(?:: "|$)/.exec(where)?.[1] : undefined;
}
