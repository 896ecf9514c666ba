/**
 * Array parameters of the apply path, as text literals (see
 * `lib/pg/array_literal.ts`); an array holding a {@link LargeValue} goes in
 * binary format instead (lib/pg/wire_statement.ts).
 */
import { arrayElement } from "../pg/array_literal.ts";
import { BinaryParam, binaryTextArray } from "../pg/wire_statement.ts";
import { type ColumnValue, LargeValue } from "../source/messages.ts";

/**
 * Encodes strings (NULL for `null`/`undefined`) as a one-dimensional text
 * array literal; values holding a {@link LargeValue} as a binary `text[]`.
 */
export function textArray(values: readonly (string | null | undefined)[]): string;
export function textArray(values: readonly ColumnValue[]): string | BinaryParam;
export function textArray(values: readonly ColumnValue[]): string | BinaryParam {
  const n = values.length;
  if (n === 0) return "{}";
  let out = "{";
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (typeof v === "object" && v !== null) return largeTextArray(values);
    if (i > 0) out += ",";
    out += arrayElement(v);
  }
  return out + "}";
}

/** The values as a binary `text[]`: large ones as the bytes they arrived in. */
function largeTextArray(values: readonly ColumnValue[]): BinaryParam {
  return binaryTextArray(values.map((v) => v instanceof LargeValue ? v.bytes : v ?? null));
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
