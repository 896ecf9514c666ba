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
  /** The source's mapped tables (`all_tables` expanded). */
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
  const byTarget = new Map<string, { relations: string[]; skipped: string | null }>();
  for (const t of resolved) {
    const target = qualify(
      targetSchemaOf(t.mapping, scope.config.destination.schema),
      t.mapping.target,
    );
    const entry = byTarget.get(target) ?? { relations: [], skipped: null };
    if (t.mapping.mode !== "clone") entry.skipped = `mode ${t.mapping.mode}`;
    else entry.relations.push(...t.copied.map((rel) => qualify(rel.schema, rel.name)));
    byTarget.set(target, entry);
  }
  const compared = [...byTarget].filter(([, e]) => !e.skipped);
  // Both servers count at once (each pipelines its queries on its one session).
  const [sourceCounts, destinationCounts] = await Promise.all([
    Promise.all(compared.map(async ([, e]) => {
      const rows = await Promise.all(
        e.relations.map((rel) => src.unsafe(`SELECT count(*)::text AS n FROM ${rel}`)),
      );
      return rows.reduce((sum, [row]) => sum + BigInt(row.n), 0n);
    })),
    Promise.all(compared.map(([target]) => countTarget(dst, target, scope.sid))),
  ]);
  const result: CountComparison = { compared: compared.length, different: [], skipped: [] };
  for (const [target, entry] of byTarget) {
    if (entry.skipped) result.skipped.push(`${target} (${entry.skipped})`);
  }
  compared.forEach(([target], i) => {
    if (destinationCounts[i] !== sourceCounts[i]) {
      result.different.push(
        `${target}: source ${sourceCounts[i]}, destination ${destinationCounts[i]}`,
      );
    }
  });
  return result;
}

/** Rows of a target: those of `sid` when it has a `sid` column. */
async function countTarget(dst: Sql, target: string, sid: string): Promise<bigint> {
  const [shape] = await dst.unsafe(
    `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
                     WHERE attrelid = $1::regclass AND attname = 'sid' AND NOT attisdropped) AS sid`,
    [target],
  );
  const [row] = shape.sid
    ? await dst.unsafe(`SELECT count(*)::text AS n FROM ${target} WHERE sid::text = $1`, [sid])
    : await dst.unsafe(`SELECT count(*)::text AS n FROM ${target}`);
  return BigInt(row.n);
}
