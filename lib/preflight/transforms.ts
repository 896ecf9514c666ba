/** `kvsz validate`'s check of each table's `filter` and `set` against the source's columns. */
import type { TableMapping } from "../config/types.ts";
import { ConfigError } from "../config/errors.ts";
import type { SourceTable } from "../source/catalog.ts";
import { compileMappingTransform } from "../apply/transform_route.ts";
import type { Check } from "./check.ts";

/** Options of {@link transformCheck}. */
export interface TransformCheckInput {
  mapping: TableMapping;
  /** The source table the expressions see (null: not found, said by another check). */
  table: SourceTable | null;
  database: string;
  sid: string;
}

/** The check of one table's expressions, or null when it has none (or no table to check against). */
export function transformCheck(label: string, input: TransformCheckInput): Check | null {
  const { mapping, table } = input;
  if (!mapping.transform || !table) return null;
  const check = `${label} table ${mapping.sourceSchema}.${mapping.sourceName} filter/set`;
  try {
    compileMappingTransform(mapping, table.columns, null, {
      database: input.database,
      sid: input.sid,
      keyNames: table.identityColumns,
    });
    return { status: "ok", check };
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return {
      status: "FAIL",
      check,
      problem: error.problems.join("; "),
      fix: "correct the expression (columns are declared with the CEL type of their PostgreSQL " +
        "type; see README, Filters and transforms)",
    };
  }
}
