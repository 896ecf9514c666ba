/**
 * At start, before anything is copied or streamed: every `filter` and `set`
 * of a source's tables compiles against the source's columns and the target,
 * so that a type error is said as a config error (file, line, key, position)
 * instead of at the first row.
 */
import type { Sql } from "../pg/connect.ts";
import { ConfigError, type Problem } from "../config/errors.ts";
import { targetKey } from "../config/types.ts";
import { readSourceTable } from "../source/catalog.ts";
import type { ResolvedTable } from "../source/tables.ts";
import { compileMappingTransform } from "../apply/transform_route.ts";
import type { TargetTable } from "../apply/types.ts";

/** Options of {@link checkTransforms}. */
export interface TransformCheckOptions {
  database: string;
  sid: string;
}

/** Compiles the transforms of `tables` (targets by `targetKey`); throws one ConfigError listing every failure. */
export async function checkTransforms(
  src: Sql,
  tables: readonly ResolvedTable[],
  targets: ReadonlyMap<string, TargetTable>,
  opts: TransformCheckOptions,
): Promise<void> {
  const problems: Problem[] = [];
  for (const { mapping, copied } of tables) {
    if (!mapping.transform || copied.length === 0) continue;
    const table = await readSourceTable(src, copied[0].schema, copied[0].name);
    if (!table) continue; // resolveTables found it a moment ago; the copy will say
    try {
      compileMappingTransform(mapping, table.columns, targets.get(targetKey(mapping)) ?? null, {
        ...opts,
        keyNames: table.identityColumns,
      });
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.details);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
}
