/** Reads source tables from the catalog: columns, replica identity, keys, partitions. */
import type { Sql } from "../pg/connect.ts";
import type { ReplicaIdentity } from "./messages.ts";
import { indexColumns, primaryKeyColumns } from "../pg/catalog.ts";

/** A table name with its schema. */
export interface QualifiedName {
  schema: string;
  name: string;
}

/** A column of a source table. */
export interface SourceColumn {
  name: string;
  /** `format_type(atttypid, atttypmod)`, e.g. `numeric(10,2)`. */
  type: string;
  typeOid: number;
  /** `atttypmod` (-1 when the type has none), e.g. numeric's precision and scale. */
  typeMod: number;
}

/** A source table as read from the catalog. */
export interface SourceTable {
  schema: string;
  name: string;
  oid: number;
  kind: "table" | "partitioned";
  /** `d` default, `n` nothing, `f` full, `i` index. */
  replicaIdentity: ReplicaIdentity;
  /** Columns in table order (no dropped or system columns). */
  columns: SourceColumn[];
  /**
   * The replica identity key: primary key columns for DEFAULT, the index's
   * columns for INDEX, empty for FULL, NOTHING, or DEFAULT without a primary key.
   */
  identityColumns: string[];
  /** Primary key columns in key order (empty when there is none). */
  primaryKey: string[];
  /** For a partitioned table, every leaf partition (recursively), sorted; else empty. */
  leafPartitions: QualifiedName[];
}

/** Reads ordinary or partitioned table `schema.name`, or returns null when there is none. */
export async function readSourceTable(
  sql: Sql,
  schema: string,
  name: string,
): Promise<SourceTable | null> {
  const [rel] = await sql.unsafe(
    `SELECT c.oid::int8 AS oid, c.relkind, c.relreplident
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, name],
  );
  if (!rel) return null;
  const oid = String(rel.oid);
  const columns = (await sql.unsafe(
    `SELECT a.attname AS name,
            pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
            a.atttypid::int8 AS type_oid, a.atttypmod AS type_mod
       FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [oid],
  )).map((r) => ({
    name: String(r.name),
    type: String(r.type),
    typeOid: Number(r.type_oid),
    typeMod: Number(r.type_mod),
  }));
  const replicaIdentity = String(rel.relreplident) as ReplicaIdentity;
  const primaryKey = await primaryKeyColumns(sql, oid);
  const identityColumns = replicaIdentity === "d"
    ? primaryKey
    : replicaIdentity === "i"
    ? await indexColumns(sql, oid, "i.indisreplident")
    : [];
  const kind = rel.relkind === "p" ? "partitioned" : "table";
  const leafPartitions = kind === "partitioned"
    ? (await sql.unsafe(
      `SELECT n.nspname AS schema, c.relname AS name
         FROM pg_catalog.pg_partition_tree($1::int8::oid) t
         JOIN pg_catalog.pg_class c ON c.oid = t.relid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE t.isleaf AND c.relkind = 'r'
        ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"`,
      [oid],
    )).map((r) => ({ schema: String(r.schema), name: String(r.name) }))
    : [];
  return {
    schema,
    name,
    oid: Number(oid),
    kind,
    replicaIdentity,
    columns,
    identityColumns,
    primaryKey,
    leafPartitions,
  };
}

/**
 * Ordinary tables and leaf partitions of `schema` whose whole name matches the
 * JavaScript regular expression `regex` (anchored as `^(?:regex)$`), sorted by name.
 */
export async function matchingTables(
  sql: Sql,
  schema: string,
  regex: string,
): Promise<QualifiedName[]> {
  const re = new RegExp(`^(?:${regex})$`);
  const rows = await sql.unsafe(
    `SELECT c.relname AS name
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r'
      ORDER BY c.relname COLLATE "C"`,
    [schema],
  );
  return rows.map((r) => String(r.name)).filter((n) => re.test(n)).map((name) => ({
    schema,
    name,
  }));
}
