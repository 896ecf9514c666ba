/**
 * PostgreSQL array literals built by hand. The destination client runs with
 * `fetch_types: false`, so porsager sends a JS array parameter as `'' + array`
 * (`a,b,c`), which the server rejects; kvsz passes array parameters as their
 * text literal instead and lets `$n::text[]` parse it.
 */

const NEEDS_ESCAPE = /["\\]/;
const ESCAPE = /["\\]/g;

/** Quotes one array element: `a"b` -> `"a\"b"`, SQL NULL -> `NULL`. */
export function arrayElement(value: string | null | undefined): string {
  if (value === null || value === undefined) return "NULL";
  return NEEDS_ESCAPE.test(value) ? `"${value.replace(ESCAPE, "\\$&")}"` : `"${value}"`;
}

/** Encodes strings (NULL for `null`/`undefined`) as a one-dimensional text array literal. */
export function textArray(values: readonly (string | null | undefined)[]): string {
  const n = values.length;
  if (n === 0) return "{}";
  let out = "{";
  for (let i = 0; i < n; i++) {
    if (i > 0) out += ",";
    out += arrayElement(values[i]);
  }
  return out + "}";
}

/** Encodes booleans as a `bool[]` literal: `{t,f}`. */
export function boolArray(values: readonly boolean[]): string {
  const n = values.length;
  if (n === 0) return "{}";
  let out = "{";
  for (let i = 0; i < n; i++) out += i === 0 ? (values[i] ? "t" : "f") : (values[i] ? ",t" : ",f");
  return out + "}";
}

/** Encodes integers as an `int4[]`/`int8[]` literal: `{1,2,3}`. */
export function intArray(values: readonly number[]): string {
  return `{${values.join(",")}}`;
}
