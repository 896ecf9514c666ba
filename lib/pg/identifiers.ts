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

const RESERVED = new Set(
  ("all analyse analyze and any array as asc asymmetric authorization binary both case cast check " +
    "collate collation column concurrently constraint create cross current_catalog current_date " +
    "current_role current_schema current_time current_timestamp current_user default deferrable " +
    "desc distinct do else end except false fetch for foreign freeze from full grant group having " +
    "ilike in initially inner intersect into is isnull join lateral leading left like limit " +
    "localtime localtimestamp natural not notnull null offset on only or order outer overlaps " +
    "placing primary references returning right select session_user similar some symmetric " +
    "system_user table tablesample then to trailing true union unique user using variadic verbose " +
    "when where window with").split(" "),
);

/** `schema.name` as a person would write it (see {@link sqlName}). */
export function sqlQualified(schema: string, name: string): string {
  return `${sqlName(schema)}.${sqlName(name)}`;
}

/** An identifier as a person would write it: bare when that is safe, quoted otherwise. */
export function sqlName(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) && !RESERVED.has(name) ? name : quoteIdent(name);
}
