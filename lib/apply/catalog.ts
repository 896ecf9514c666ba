/** Reads destination tables from the catalog: columns, types, primary key, `sid`, `kvsz_*`. */
import type { Sql } from "../pg/connect.ts";
import type { ForeignKey, TargetColumn, TargetTable } from "./types.ts";
import { primaryKeyColumns, tableOid, uniqueIndexColumns } from "../pg/catalog.ts";

/** Names of the three history columns a `history` target carries. */
export const HISTORY_COLUMNS = ["kvsz_start", "kvsz_end", "kvsz_deleted"] as const;

/** Name of the source id column. */
export const SID_COLUMN = "sid";

/** Columns kvsz writes itself; never mapped from the source. */
export const KVSZ_COLUMNS: ReadonlySet<string> = new Set([SID_COLUMN, ...HISTORY_COLUMNS]);

interface ColumnRow {
  name: string;
  type: string;
  type_oid: number | string;
  not_null: boolean;
  has_default: boolean;
}

/**
 * Reads table `schema.name` (ordinary or partitioned) from the destination
 * catalog, or returns null when there is none. Dropped, system and generated
 * columns are left out (a generated column cannot be written). Identity columns
 * count as having a default.
 */
export async function readTargetTable(
  sql: Sql,
  schema: string,
  name: string,
): Promise<TargetTable | null> {
  const oid = await tableOid(sql, schema, name);
  if (oid === null) return null;
  const rows = await sql.unsafe(
    `SELECT a.attname AS name,
            pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
            a.atttypid::int8 AS type_oid,
            a.attnotnull AS not_null,
            (a.atthasdef OR a.attidentity <> '') AS has_default
       FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
        AND a.attgenerated = ''
      ORDER BY a.attnum`,
    [oid],
  ) as unknown as ColumnRow[];
  const columns = new Map<string, TargetColumn>();
  for (const r of rows) {
    columns.set(r.name, {
      name: r.name,
      type: r.type,
      typeOid: Number(r.type_oid),
      notNull: r.not_null,
      hasDefault: r.has_default,
    });
  }
  const primaryKey = await primaryKeyColumns(sql, oid);
  const uniqueKeys = await uniqueIndexColumns(sql, oid);
  const foreignKeys = await foreignKeysOf(sql, oid);
  return {
    schema,
    name,
    columns,
    primaryKey,
    uniqueKeys,
    foreignKeys,
    hasSid: columns.has(SID_COLUMN),
    hasHistoryColumns: HISTORY_COLUMNS.every((c) => columns.has(c)),
  };
}

/**
 * Types whose explicit cast cuts a value to the column's length (`char(n)`,
 * `varchar(n)`, `bit(n)`, `varbit(n)` and their arrays), by OID, with the name
 * of the type without its length.
 */
const LENGTH_CUT_BY_CAST = new Map([
  [1042, "bpchar"],
  [1043, "character varying"],
  [1560, '"bit"'],
  [1562, "bit varying"],
  [1014, "bpchar[]"],
  [1015, "character varying[]"],
  [1561, '"bit"[]'],
  [1563, "bit varying[]"],
]);

/**
 * The type a text value is cast to before it is written to `column`: its own,
 * but without the length of the types an explicit cast would silently cut
 * (`'abcdef'::varchar(5)` is `abcde`). Stored into the column, a value too
 * long is then refused (SQLSTATE 22001), as COPY refuses it.
 */
export function castType(column: TargetColumn): string {
  return LENGTH_CUT_BY_CAST.get(column.typeOid) ?? column.type;
}

/** Foreign keys of relation `oid`, with the table each references. */
async function foreignKeysOf(sql: Sql, oid: string): Promise<ForeignKey[]> {
  const rows = await sql.unsafe(
    `SELECT c.conname AS name, n.nspname || '.' || r.relname AS references,
            c.condeferrable AS deferrable
       FROM pg_catalog.pg_constraint c
       JOIN pg_catalog.pg_class r ON r.oid = c.confrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = r.relnamespace
      WHERE c.conrelid = $1::int8::oid AND c.contype = 'f'
      ORDER BY c.conname`,
    [oid],
  );
  return rows.map((r) => ({
    name: String(r.name),
    references: String(r.references),
    deferrable: Boolean(r.deferrable),
  }));
}
