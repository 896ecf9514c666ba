/**
 * `filter` and `set` in the initial copy: each row of `COPY … TO STDOUT`
 * (text format, one CopyData message per row) is read, run through the
 * table's transform, and written again for `COPY … FROM STDIN`, so the first
 * copy holds the rows the stream would have written. Only the columns an
 * expression reads are unescaped; passed-through columns keep their bytes.
 */
import type { ErrorSink, RowContext, RowValue, TableTransform } from "./table_transform.ts";

/** Options of {@link copyRowMapper}. */
export interface CopyRowOptions {
  /** Number of source columns at the start of each row (the extras the SELECT adds follow). */
  sourceCount: number;
  /** Without `set`: the source columns written, in order (with `set`: the transform's outputs). */
  keep: readonly number[];
  context: RowContext;
  /** Called for each failed evaluation, with the row's source key. */
  sink: (key: string, message: string, rowKey: string[]) => void;
}

/** A function from one COPY text row to the row written, or null when it is filtered out. */
export function copyRowMapper(
  t: TableTransform,
  opts: CopyRowOptions,
): (row: Uint8Array) => Uint8Array | null {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const n = opts.sourceCount;
  const read = new Array<boolean>(n).fill(false);
  for (const i of t.inputs) read[i] = true;
  return (row) => {
    let text = decoder.decode(row);
    if (text.endsWith("\n")) text = text.slice(0, -1);
    const fields = text.split("\t");
    const tuple: RowValue[] = new Array(n);
    for (let i = 0; i < n; i++) tuple[i] = read[i] ? unescapeCopy(fields[i]) : fields[i];
    const sink: ErrorSink = (key, message) => opts.sink(key, message, t.keyOf(tuple));
    const out = t.row(tuple, opts.context, sink);
    if (out === null) return null;
    const parts: string[] = [];
    const outputs = t.outputs;
    if (outputs === null) {
      for (const i of opts.keep) parts.push(fields[i]);
    } else {
      for (let j = 0; j < outputs.length; j++) {
        const o = outputs[j];
        if (o.expression) parts.push(escapeCopy(out[j] as string | null));
        else parts.push(o.source !== undefined && o.source >= 0 ? fields[o.source] : "\\N");
      }
    }
    for (let i = n; i < fields.length; i++) parts.push(fields[i]);
    return encoder.encode(parts.join("\t") + "\n");
  };
}

const ESCAPES: Record<string, string> = {
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
};

/** A COPY text field as its value (`\N` is NULL). */
export function unescapeCopy(field: string): string | null {
  if (field === "\\N") return null;
  if (!field.includes("\\")) return field;
  return field.replace(/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/g, (_, e: string) => {
    if (e[0] === "x") return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return ESCAPES[e] ?? e;
  });
}

/** A value as a COPY text field (NULL as `\N`). */
export function escapeCopy(value: string | null): string {
  if (value === null) return "\\N";
  return value.replace(
    /[\\\n\r\t]/g,
    (c) => c === "\\" ? "\\\\" : c === "\n" ? "\\n" : c === "\r" ? "\\r" : "\\t",
  );
}
