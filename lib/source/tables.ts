/**
 * Resolves the configured tables of a source into what is published (what
 * Relation messages will name) and what the initial sync copies.
 */
import type { TableMapping } from "../config/types.ts";
import type { Sql } from "../pg/connect.ts";
import { matchingTables, type QualifiedName, readSourceTable } from "./catalog.ts";

/** A configured table as found on one source. */
export interface ResolvedTable {
  mapping: TableMapping;
  /** Relations in the publication; their changes go to the mapping's target. */
  published: QualifiedName[];
  /** Relations read in full by the initial sync (a partitioned root covers its leaves). */
  copied: QualifiedName[];
}

/** A configured table that the source does not have. */
export class MissingTableError extends Error {}

/** Resolves every mapping; throws {@link MissingTableError} naming all missing tables. */
export async function resolveTables(
  sql: Sql,
  mappings: TableMapping[],
  major: number,
): Promise<ResolvedTable[]> {
  const resolved: ResolvedTable[] = [];
  const missing: string[] = [];
  for (const mapping of mappings) {
    if (mapping.partitionsRegex) {
      const matches = await matchingTables(sql, mapping.sourceSchema, mapping.partitionsRegex);
      if (matches.length === 0) {
        missing.push(
          `no table in schema ${mapping.sourceSchema} matches partitions_regex "${mapping.partitionsRegex}" (table ${mapping.source})`,
        );
        continue;
      }
      resolved.push({ mapping, published: matches, copied: matches });
      continue;
    }
    const table = await readSourceTable(sql, mapping.sourceSchema, mapping.sourceName);
    if (!table) {
      missing.push(`source table ${mapping.sourceSchema}.${mapping.sourceName} does not exist`);
      continue;
    }
    const self = { schema: table.schema, name: table.name };
    if (table.kind === "partitioned" && major < 13) {
      // PostgreSQL 12 cannot publish through the root: publish the leaves.
      resolved.push({ mapping, published: table.leafPartitions, copied: [self] });
    } else {
      resolved.push({ mapping, published: [self], copied: [self] });
    }
  }
  if (missing.length > 0) throw new MissingTableError(missing.join("; "));
  return resolved;
}

/** Mapping by published relation `schema.name`. */
export function mappingsByRelation(tables: ResolvedTable[]): Map<string, TableMapping> {
  const out = new Map<string, TableMapping>();
  for (const t of tables) {
    for (const rel of t.published) out.set(`${rel.schema}.${rel.name}`, t.mapping);
  }
  return out;
}
