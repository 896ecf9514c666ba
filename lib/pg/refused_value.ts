/**
 * A value the destination refuses: a data exception (SQLSTATE class 22: out
 * of range, too long, not valid input for the type, a date that does not
 * exist), NULL into a NOT NULL column, a failed CHECK. Changing the row at
 * the source does not help (the refused change stays in the WAL, ahead of the
 * correction): the destination must take it. This says how.
 */
import { quoteIdent } from "./identifiers.ts";
import { errorCode, pgErrorFields } from "./errors.ts";

/** The fields of a server error that say what was refused and where (npm:postgres's names). */
export interface RefusedValueError {
  code: string;
  message: string;
  detail?: string;
  /** CONTEXT, e.g. `COPY t, line 2, column n: "5000000000"`. */
  where?: string;
  column_name?: string;
  constraint_name?: string;
}

/** The server error `e` when it refuses a value, else null. */
export function refusedValue(e: unknown): RefusedValueError | null {
  const err = pgErrorFields(e);
  const code = errorCode(e);
  if (code === undefined || typeof err.message !== "string") return null;
  const refused = code.startsWith("22") || code === "23502" || code === "23514";
  return refused ? err as RefusedValueError : null;
}

/**
 * What to change in the destination so that it takes the value: `table` is
 * qualified, `columns` are the refusing column(s) when known.
 */
export function refusedValueFix(
  error: RefusedValueError,
  table: string,
  columns: readonly string[],
): string {
  const column = columns.length === 1 ? `${table}.${columns[0]}` : `the column`;
  const alter = (action: string) =>
    `ALTER TABLE ${table} ALTER COLUMN ${
      columns.length === 1 ? quoteIdent(columns[0]) : "…"
    } ${action}`;
  switch (error.code) {
    case "22001":
      return `lengthen ${column} (${alter("TYPE …")}) to take it`;
    case "22003":
      return `widen ${column} (${alter("TYPE …")}) to take it`;
    case "23502":
      return `let ${column} be NULL (${alter("DROP NOT NULL")})`;
    case "23514":
      return `relax or drop check constraint ${
        quoteIdent(error.constraint_name ?? "?")
      } of ${table}`;
    default:
      return `give ${column} the source column's type (${alter("TYPE …")})`;
  }
}
