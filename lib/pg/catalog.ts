/** Catalog reads every layer shares: a table's oid, a relation's key and index columns. */
import type { Sql } from "./connect.ts";

/** The oid (as text) of ordinary or partitioned table `schema.name`, or null when there is none. */
export async function tableOid(sql: Sql, schema: string, name: string): Promise<string | null> {
  const [rel] = await sql.unsafe(
    `SELECT c.oid::int8::text AS oid
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [schema, name],
  );
  return rel ? String(rel.oid) : null;
}

/** Primary key columns of relation `oid` in key order (empty when there is none). */
export async function primaryKeyColumns(sql: Sql, oid: string | number): Promise<string[]> {
  return await indexColumns(sql, oid, "i.indisprimary");
}

/**
 * Column sets of the unique indexes of relation `oid` that reject every
 * duplicate at once: valid, not deferrable, no predicate, no expression.
 */
export async function uniqueIndexColumns(sql: Sql, oid: string | number): Promise<string[][]> {
  const rows = await sql.unsafe(
    `SELECT i.indexrelid::int8 AS idx, a.attname AS name
       FROM pg_catalog.pg_index i
       CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1::int8::oid AND i.indisunique AND i.indimmediate AND i.indisvalid
        AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
      ORDER BY i.indexrelid, k.ord`,
    [String(oid)],
  );
  const byIndex = new Map<string, string[]>();
  for (const r of rows) {
    const idx = String(r.idx);
    byIndex.set(idx, [...(byIndex.get(idx) ?? []), String(r.name)]);
  }
  return [...byIndex.values()];
}

/** Columns of the first index of relation `oid` matching `where`, in key order. */
export async function indexColumns(
  sql: Sql,
  oid: string | number,
  where: "i.indisprimary" | "i.indisreplident",
): Promise<string[]> {
  const rows = await sql.unsafe(
    `SELECT a.attname AS name
       FROM (SELECT i.indrelid, i.indkey, i.indnkeyatts
               FROM pg_catalog.pg_index i
              WHERE i.indrelid = $1::int8::oid AND ${where}
              LIMIT 1) i
       CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE k.ord <= i.indnkeyatts
      ORDER BY k.ord`,
    [String(oid)],
  );
  return rows.map((r) => String(r.name));
}
