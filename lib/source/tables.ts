/**
 * Resolves the configured tables of a source into what is published (what
 * Relation messages will name) and what the initial sync copies.
 */
import type { TableMapping } from "../config/types.ts";
import type { Sql } from "../pg/connect.ts";
import {
  matchingTables,
  type QualifiedName,
  readSourceTable,
  type SourceTable,
} from "./catalog.ts";
import { NeedsPersonError } from "../errors.ts";

/** A configured table as found on one source. */
export interface ResolvedTable {
  mapping: TableMapping;
  /** Relations in the publication; their changes go to the mapping's target. */
  published: QualifiedName[];
  /** Relations read in full by the initial sync (a partitioned root covers its leaves). */
  copied: QualifiedName[];
  /**
   * The partitioned table whose leaves `partitions_regex` names (PostgreSQL
   * 13+), in the partitions publication: each leaf's changes arrive under its
   * own name from its ATTACH to its DETACH, and go to the target when the
   * regex matches its name. Null otherwise.
   */
  leavesOf: QualifiedName | null;
}

/** A configured table that the source does not have. */
export class MissingTableError extends NeedsPersonError {}

/** Resolves every mapping; throws {@link MissingTableError} naming all missing tables. */
export async function resolveTables(
  sql: Sql,
  mappings: TableMapping[],
  major: number,
): Promise<ResolvedTable[]> {
  const resolved: ResolvedTable[] = [];
  const missing: string[] = [];
  for (const mapping of mappings) {
    const table = await readSourceTable(sql, mapping.sourceSchema, mapping.sourceName);
    if (mapping.partitionsRegex) {
      const { matches, leavesOf } = await regexMatches(sql, mapping, { table, major });
      if (matches.length === 0) {
        missing.push(`${noMatch(mapping, leavesOf)} (table ${mapping.source})`);
        continue;
      }
      const published = leavesOf ? [] : matches;
      resolved.push({ mapping, published, copied: matches, leavesOf });
      continue;
    }
    if (!table) {
      missing.push(`source table ${mapping.sourceSchema}.${mapping.sourceName} does not exist`);
      continue;
    }
    const self = { schema: table.schema, name: table.name };
    // PostgreSQL 12 cannot publish through the root: publish the leaves.
    const published = table.kind === "partitioned" && major < 13 ? table.leafPartitions : [self];
    resolved.push({ mapping, published, copied: [self], leavesOf: null });
  }
  if (missing.length > 0) throw new MissingTableError(missing.join("; "));
  return resolved;
}

/** Options of {@link regexMatches}. */
export interface RegexMatchOptions {
  /** The mapped table as the source has it; null when it does not exist. */
  table: SourceTable | null;
  /** The source's major version (a partitioned table's leaves are matched on 13+). */
  major: number;
}

/**
 * The tables a mapping's `partitions_regex` names: the leaves of the mapped
 * table when it is partitioned (PostgreSQL 13+; `leavesOf` is that table),
 * else the ordinary tables and leaves of its schema.
 */
export async function regexMatches(
  sql: Sql,
  mapping: TableMapping,
  opts: RegexMatchOptions,
): Promise<{ matches: QualifiedName[]; leavesOf: QualifiedName | null }> {
  const { table, major } = opts;
  if (table?.kind === "partitioned" && major >= 13) {
    const re = partitionsRegex(mapping)!;
    return {
      matches: table.leafPartitions.filter((t) => re.test(t.name)),
      leavesOf: { schema: table.schema, name: table.name },
    };
  }
  const matches = await matchingTables(sql, mapping.sourceSchema, mapping.partitionsRegex!);
  return { matches, leavesOf: null };
}

/** What is wrong when a mapping's `partitions_regex` names no table (see {@link regexMatches}). */
export function noMatch(mapping: TableMapping, leavesOf: QualifiedName | null): string {
  const where = leavesOf
    ? `partition of ${leavesOf.schema}.${leavesOf.name}`
    : `table in schema ${mapping.sourceSchema}`;
  return `no ${where} matches partitions_regex "${mapping.partitionsRegex}"`;
}

/**
 * The mapping of a relation a Relation message names: a published table's by
 * its name, else that of a partitioned table whose `partitions_regex` matches
 * the leaf's name (leaves attached later included).
 */
export function mappingLookup(
  tables: ResolvedTable[],
): (schema: string, name: string) => TableMapping | undefined {
  const byName = new Map<string, TableMapping>();
  for (const t of tables) {
    for (const rel of t.published) byName.set(`${rel.schema}.${rel.name}`, t.mapping);
  }
  const byLeaf = tables.filter((t) => t.leavesOf).map((t) => t.mapping);
  return (schema, name) =>
    byName.get(`${schema}.${name}`) ?? byLeaf.find((m) => partitionsRegex(m)!.test(name));
}

/** A mapping's `partitions_regex`, anchored to match whole table names. */
export function partitionsRegex(mapping: TableMapping): RegExp | null {
  return mapping.partitionsRegex ? new RegExp(`^(?:${mapping.partitionsRegex})$`) : null;
}
