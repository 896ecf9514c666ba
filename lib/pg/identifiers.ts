/** SQL identifiers and literals. */

/** Quotes an identifier: `my "t"` -> `"my ""t"""`. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Quotes `schema.name` as a qualified identifier. */
export function qualify(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** Quotes a string literal: `it's` -> `'it''s'`. */
export function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** The kvsz name of a source's publication and slot: `kvsz_<database>_<sid>`, lower-case, `[a-z0-9_]`. */
export function kvszObjectName(database: string, sid: string): string {
  return `kvsz_${database}_${sid}`.toLowerCase().replace(/[^a-z0-9_]/g, "_").slice(0, 63);
}
