/**
 * What a database entry's `all_tables` maps on a source: every table of the
 * user's schemas that logical replication can carry, and what it cannot
 * carry (for `validate` to say what to do about it).
 */
import type { AllTablesConfig, ColumnDriftPolicy, TableMapping } from "../config/types.ts";
import type { Sql } from "../pg/connect.ts";
import type { QualifiedName } from "./catalog.ts";

/** What a source holds, as `all_tables` sees it. */
export interface SourceInventory {
  /** Tables to map (ordinary and partitioned roots; no partition, no extension's table). */
  tables: QualifiedName[];
  /** Objects logical replication does not carry, by kind. */
  notCarried: {
    unlogged: QualifiedName[];
    materializedViews: QualifiedName[];
    foreignTables: QualifiedName[];
    /** Tables created by an extension (its CREATE EXTENSION makes them at the destination). */
    extensionTables: QualifiedName[];
    largeObjects: number;
  };
}

/** Schemas that are never a user's. */
const SYSTEM_SCHEMAS = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'kvsz')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'`;

/** Reads the source's inventory for `all` (its `schemas`; exclusions applied). */
export async function readInventory(sql: Sql, all: AllTablesConfig): Promise<SourceInventory> {
  const rows = await sql.unsafe(
    `SELECT n.nspname AS schema, c.relname AS name, c.relkind AS kind,
            c.relpersistence AS persistence,
            EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                     WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                       AND d.deptype = 'e') AS extension
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p', 'm', 'f') AND NOT c.relispartition AND ${SYSTEM_SCHEMAS}
      ORDER BY 1, 2`,
  );
  const [lo] = await sql.unsafe(
    `SELECT count(*)::int8 AS n FROM pg_catalog.pg_largeobject_metadata`,
  );
  const inScope = (t: QualifiedName) =>
    (all.schemas.length === 0 || all.schemas.includes(t.schema)) && !excluded(t, all.exclude);
  const out: SourceInventory = {
    tables: [],
    notCarried: {
      unlogged: [],
      materializedViews: [],
      foreignTables: [],
      extensionTables: [],
      largeObjects: Number(lo.n),
    },
  };
  for (const r of rows) {
    const t = { schema: String(r.schema), name: String(r.name) };
    if (!inScope(t)) continue;
    if (r.kind === "m") out.notCarried.materializedViews.push(t);
    else if (r.kind === "f") out.notCarried.foreignTables.push(t);
    else if (r.extension) out.notCarried.extensionTables.push(t);
    else if (r.persistence === "u") out.notCarried.unlogged.push(t);
    else out.tables.push(t);
  }
  return out;
}

/** True when `table` matches one of `patterns` (`schema.table` or `table`; `*` any run of characters). */
export function excluded(table: QualifiedName, patterns: readonly string[]): boolean {
  return patterns.some((p) => {
    const re = new RegExp(`^${p.split("*").map(escapeRegex).join(".*")}$`);
    return p.includes(".") ? re.test(`${table.schema}.${table.name}`) : re.test(table.name);
  });
}

/**
 * The mappings `all_tables` adds: each table of `tables` not already in
 * `listed`, to the same schema and name at the destination.
 */
export function allTablesMappings(
  tables: readonly QualifiedName[],
  listed: readonly TableMapping[],
  opts: { mode: AllTablesConfig["mode"]; onColumnDrift: ColumnDriftPolicy },
): TableMapping[] {
  const taken = new Set(listed.map((m) => `${m.sourceSchema}.${m.sourceName}`));
  return tables
    .filter((t) => !taken.has(`${t.schema}.${t.name}`))
    .map((t) => ({
      source: `${t.schema}.${t.name}`,
      sourceSchema: t.schema,
      sourceName: t.name,
      target: t.name,
      targetSchema: t.schema,
      mode: opts.mode,
      onColumnDrift: opts.onColumnDrift,
    }));
}

function escapeRegex(text: string): string {
  return text.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
}
