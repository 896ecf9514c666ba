/**
 * The SQL `kvsz verify` runs on either side, so that no row travels: a
 * range's row count and order-independent checksum (sums of 64-bit slices of
 * each row's md5), the key boundaries of chunks, and the keys and row hashes
 * of one range when it differs.
 */
import { quoteIdent, quoteLiteral } from "../pg/identifiers.ts";

/** A key column on one side: its name, type there, and whether it has a collation. */
export interface KeyColumn {
  name: string;
  type: string;
  collatable: boolean;
}

/** One side of a comparison: what its rows are read from, and how. */
export interface RowSide {
  /** Relations whose rows are read (several: their union). */
  relations: { schema: string; name: string }[];
  /** Compared columns, in the same order on both sides. */
  columns: string[];
  /** The key the rows are chunked by (empty: the table is compared as a whole). */
  key: KeyColumn[];
  /** A condition on the rows (e.g. `sid = '7'`), or null. */
  where: string | null;
}

/** The keys that bound a range: after `after` (exclusive) up to `upTo` (inclusive); null: open. */
export interface KeyRange {
  after: string[] | null;
  upTo: string[] | null;
}

/** The whole key space. */
export const WHOLE_RANGE: KeyRange = { after: null, upTo: null };

/** `(SELECT cols FROM a UNION ALL SELECT cols FROM b) AS r`, filtered by the side's `where`. */
function fromClause(side: RowSide): string {
  const cols = side.columns.map(quoteIdent).join(", ");
  const where = side.where ? ` WHERE ${side.where}` : "";
  const selects = side.relations.map((r) =>
    `SELECT ${cols} FROM ${quoteIdent(r.schema)}.${quoteIdent(r.name)}${where}`
  );
  return `(${selects.join(" UNION ALL ")}) AS r`;
}

/** A row's canonical text: a record of its compared columns (NULL and '' told apart). */
function rowText(side: RowSide): string {
  return `ROW(${side.columns.map((c) => `r.${quoteIdent(c)}`).join(", ")})::text`;
}

/** The key as a JSON array of its columns' text, the same on both sides. */
function keyText(side: RowSide): string {
  return `json_build_array(${
    side.key.map((k) => `r.${quoteIdent(k.name)}::text`).join(", ")
  })::text`;
}

function keyExprs(side: RowSide): string[] {
  return side.key.map((k) => `r.${quoteIdent(k.name)}${k.collatable ? ` COLLATE "C"` : ""}`);
}

function keyLiterals(side: RowSide, values: string[]): string[] {
  return side.key.map((k, i) =>
    `${quoteLiteral(values[i])}::${k.type}${k.collatable ? ` COLLATE "C"` : ""}`
  );
}

/** The condition selecting `range`'s rows (`true` for the whole key space). */
function rangeCondition(side: RowSide, range: KeyRange): string {
  const keys = `ROW(${keyExprs(side).join(", ")})`;
  const parts: string[] = [];
  if (range.after) parts.push(`${keys} > ROW(${keyLiterals(side, range.after).join(", ")})`);
  if (range.upTo) parts.push(`${keys} <= ROW(${keyLiterals(side, range.upTo).join(", ")})`);
  return parts.length ? parts.join(" AND ") : "true";
}

/** `rows`, `s1`, `s2` of `range`: its row count and the sums of two 64-bit slices of row md5s. */
export function checksumQuery(side: RowSide, range: KeyRange): string {
  const slice = (from: number) =>
    `coalesce(sum(('x' || substr(h, ${from}, 16))::bit(64)::int8::numeric), 0)::text`;
  return `SELECT count(*)::text AS rows, ${slice(1)} AS s1, ${slice(17)} AS s2
    FROM (SELECT md5(${rowText(side)}) AS h FROM ${fromClause(side)}
           WHERE ${rangeCondition(side, range)}) AS x`;
}

/** `key` (JSON text) of every `chunkRows`-th row of `range` in key order: the upper bounds of chunks. */
export function boundariesQuery(side: RowSide, chunkRows: number, range = WHOLE_RANGE): string {
  return `SELECT key FROM (
      SELECT ${keyText(side)} AS key, row_number() OVER (ORDER BY ${keyExprs(side).join(", ")}) AS n
        FROM ${fromClause(side)} WHERE ${rangeCondition(side, range)}) AS x
     WHERE n % ${Math.max(1, Math.floor(chunkRows))} = 0 ORDER BY n`;
}

/** `key` (JSON text) and `h` (md5 of the row's text) of every row of `range`. */
export function keyHashesQuery(side: RowSide, range: KeyRange): string {
  return `SELECT ${keyText(side)} AS key, md5(${rowText(side)}) AS h
    FROM ${fromClause(side)} WHERE ${rangeCondition(side, range)}`;
}

/** `key` and `hs` (JSON array of each compared column's md5) of the rows with `keys` in `range`. */
export function columnHashesQuery(side: RowSide, range: KeyRange, keys: string[]): string {
  const hashes = side.columns.map((c) => `md5(r.${quoteIdent(c)}::text)`).join(", ");
  return `SELECT key, hs FROM (
      SELECT ${keyText(side)} AS key, json_build_array(${hashes})::text AS hs
        FROM ${fromClause(side)} WHERE ${rangeCondition(side, range)}) AS x
     WHERE key IN (${keys.map(quoteLiteral).join(", ")})`;
}
