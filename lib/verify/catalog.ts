/**
 * What `kvsz verify` reads of one table on either side: its columns (type,
 * nullability, collation), indexes, constraints and owned sequences.
 */
import type { Sql } from "../pg/connect.ts";
import { tableOid } from "../pg/catalog.ts";

/** A column as `verify` compares it. */
export interface VerifyColumn {
  name: string;
  /** `format_type(atttypid, atttypmod)`. */
  type: string;
  notNull: boolean;
  /** The type has a collation: ranges over it are compared with `COLLATE "C"`. */
  collatable: boolean;
}

/** An index not backing a constraint, its name left out so that two sides compare by what it indexes. */
export interface VerifyIndex {
  name: string;
  /** `UNIQUE USING btree (a, b)`: `pg_get_indexdef` from `USING` on, with `UNIQUE` when unique. */
  definition: string;
  /** The index's key columns (empty for expressions). */
  columns: string[];
}

/** A constraint (`NOT NULL` ones aside: nullability is a column's). */
export interface VerifyConstraint {
  name: string;
  /** `pg_get_constraintdef`, e.g. `PRIMARY KEY (id)`. */
  definition: string;
}

/** One table as read for `verify`. */
export interface VerifyTable {
  schema: string;
  name: string;
  columns: VerifyColumn[];
  indexes: VerifyIndex[];
  constraints: VerifyConstraint[];
  /** Columns that own a sequence (serial or identity). */
  sequenceColumns: string[];
}

/** Reads table `schema.name` (ordinary or partitioned), or null when there is none. */
export async function readVerifyTable(
  sql: Sql,
  schema: string,
  name: string,
): Promise<VerifyTable | null> {
  const oid = await tableOid(sql, schema, name);
  if (oid === null) return null;
  const columns = (await sql.unsafe(
    `SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
            a.attnotnull AS not_null, a.attcollation <> 0 AS collatable
       FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = $1::int8::oid AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [oid],
  )).map((r) => ({
    name: String(r.name),
    type: String(r.type),
    notNull: r.not_null === true,
    collatable: r.collatable === true,
  }));
  const indexes = (await sql.unsafe(
    `SELECT c.relname AS name,
            CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END ||
              regexp_replace(pg_catalog.pg_get_indexdef(i.indexrelid), '^.*? USING ', 'USING ')
              AS definition,
            array_to_json(ARRAY(
              SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               ORDER BY k.ord))::text AS columns
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = $1::int8::oid
        AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                         WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid)
      ORDER BY 2, 1`,
    [oid],
  )).map((r) => ({
    name: String(r.name),
    definition: String(r.definition),
    columns: JSON.parse(String(r.columns)) as string[],
  }));
  const constraints = (await sql.unsafe(
    `SELECT conname AS name, pg_catalog.pg_get_constraintdef(oid) AS definition
       FROM pg_catalog.pg_constraint
      WHERE conrelid = $1::int8::oid AND contype <> 'n'
      ORDER BY 2, 1`,
    [oid],
  )).map((r) => ({ name: String(r.name), definition: String(r.definition) }));
  const sequenceColumns = (await sql.unsafe(
    `SELECT a.attname AS name
       FROM pg_catalog.pg_depend d
       JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.refobjid = $1::int8::oid
        AND d.deptype IN ('a', 'i')
      ORDER BY 1`,
    [oid],
  )).map((r) => String(r.name));
  return { schema, name, columns, indexes, constraints, sequenceColumns };
}
