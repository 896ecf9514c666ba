/**
 * Row counts of a switchover: each mapped table's rows at the (fenced)
 * source against its target's at the destination (those of the source's sid
 * when the target has a `sid` column).
 */
import type { Sql } from "../pg/connect.ts";
import { type Config, type TableMapping, targetSchemaOf } from "../config/types.ts";
import { qualify } from "../pg/identifiers.ts";
import { resolveTables } from "../source/tables.ts";

/** What {@link compareCounts} found. */
export interface CountComparison {
  /** Targets whose counts were compared. */
  compared: number;
  /** Targets whose counts differ, as `target: source N, destination M`. */
  different: string[];
  /** Targets not compared, with why (append and history targets keep more rows than the source). */
  skipped: string[];
}

/** Which source's tables are compared, and where they go. */
export interface CountScope {
  config: Config;
  /** The source's mapped tables (`mappedTables`). */
  mappings: TableMapping[];
  /** The source's sid (restricts targets with a `sid` column). */
  sid: string;
  /** The source's major version (for `resolveTables`). */
  major: number;
}

/** Compares the row counts of every mapped table (summed per target). */
export async function compareCounts(
  src: Sql,
  dst: Sql,
  scope: CountScope,
): Promise<CountComparison> {
  const resolved = await resolveTables(src, scope.mappings, scope.major);
  const byTarget = new Map<string, { source: bigint; skipped: string | null }>();
  for (const t of resolved) {
    const target = qualify(
      targetSchemaOf(t.mapping, scope.config.destination.schema),
      t.mapping.target,
    );
    const entry = byTarget.get(target) ?? { source: 0n, skipped: null };
    if (t.mapping.mode !== "clone") entry.skipped = `mode ${t.mapping.mode}`;
    else {
      for (const rel of t.copied) {
        const [row] = await src.unsafe(
          `SELECT count(*)::text AS n FROM ${qualify(rel.schema, rel.name)}`,
        );
        entry.source += BigInt(row.n);
      }
    }
    byTarget.set(target, entry);
  }
  const result: CountComparison = { compared: 0, different: [], skipped: [] };
  for (const [target, entry] of byTarget) {
    if (entry.skipped) {
      result.skipped.push(`${target} (${entry.skipped})`);
      continue;
    }
    const [shape] = await dst.unsafe(
      `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                       WHERE attrelid = $1::regclass AND attname = 'sid' AND NOT attisdropped) AS sid`,
      [target],
    );
    const [row] = shape.sid
      ? await dst.unsafe(`SELECT count(*)::text AS n FROM ${target} WHERE sid::text = $1`, [
        scope.sid,
      ])
      : await dst.unsafe(`SELECT count(*)::text AS n FROM ${target}`);
    result.compared++;
    const destination = BigInt(row.n);
    if (destination !== entry.source) {
      result.different.push(`${target}: source ${entry.source}, destination ${destination}`);
    }
  }
  return result;
}
