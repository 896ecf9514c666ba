/**
 * PostgreSQL array literals built by hand. kvsz's clients run with
 * `fetch_types: false`, so porsager sends a JS array parameter as `'' + array`
 * (`a,b,c`), which the server rejects; array parameters go as their text
 * literal instead, parsed by `$n::text[]`.
 */

const NEEDS_ESCAPE = /["\\]/;
const ESCAPE = /["\\]/g;

/** Quotes one array element: `a"b` -> `"a\"b"`, SQL NULL -> `NULL`. */
export function arrayElement(value: string | null | undefined): string {
  if (value === null || value === undefined) return "NULL";
  return NEEDS_ESCAPE.test(value) ? `"${value.replace(ESCAPE, "\\$&")}"` : `"${value}"`;
}

/** Encodes strings (NULL for `null`/`undefined`) as a one-dimensional text array literal. */
export function textArrayLiteral(values: readonly (string | null | undefined)[]): string {
  return `{${values.map(arrayElement).join(",")}}`;
}
