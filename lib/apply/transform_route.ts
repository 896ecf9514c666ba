/**
 * A table's `filter` and `set` compiled for one source layout and target:
 * for the stream's routes (routes.ts), the initial copy and the check at
 * start. A type error is a config error naming the file, line and key.
 */
import type { TableMapping } from "../config/types.ts";
import { ConfigError } from "../config/errors.ts";
import {
  compileTransform,
  type TableTransform,
  type TransformColumn,
  TransformCompileError,
} from "../transform/table_transform.ts";
import type { TargetTable } from "./types.ts";

/** Options of {@link compileMappingTransform}. */
export interface MappingTransformOptions {
  database: string;
  sid: string;
  /** The source's key columns, written as they are when `set` does not compute them. */
  keyNames: readonly string[];
}

/**
 * Compiles `mapping`'s transform against source `columns` and `target` (null:
 * the target is not known, as in `kvsz validate`'s source checks); undefined
 * when the table has none. Throws `ConfigError` for an expression that does not compile.
 */
export function compileMappingTransform(
  mapping: TableMapping,
  columns: readonly TransformColumn[],
  target: TargetTable | null,
  opts: MappingTransformOptions,
): TableTransform | undefined {
  const config = mapping.transform;
  if (!config) return undefined;
  try {
    return compileTransform(config, columns, {
      constants: {
        database: opts.database,
        sid: opts.sid,
        table: `${mapping.sourceSchema}.${mapping.sourceName}`,
      },
      targetType: (name) => target ? target.columns.get(name)?.type : "text",
      keyNames: opts.keyNames,
    });
  } catch (error) {
    if (!(error instanceof TransformCompileError)) throw error;
    const place = config.places.get(error.key) ??
      { file: "", path: `tables.${mapping.source}.${error.key}` };
    throw new ConfigError([{ ...place, message: error.reason.message }]);
  }
}
