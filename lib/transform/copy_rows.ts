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
  const n = opts.sourceCount;
  const read = new Array<boolean>(n).fill(false);
  for (const i of t.inputs) read[i] = true;
  const outputs = t.outputs;
  let bounds = new Int32Array(2 * (n + 8));
  // One tuple for every row (the transform keeps none): the columns read are set, the others "?".
  const tuple: RowValue[] = new Array(n).fill("?");
  let current: Uint8Array = new Uint8Array(0);
  const sink: ErrorSink = (key, message) => {
    // Only for a failed row: its other fields read too, so that its key is named.
    const whole = tuple.slice();
    for (let i = 0; i < n; i++) {
      if (!read[i]) whole[i] = unescapeCopy(fieldText(current, bounds[2 * i], bounds[2 * i + 1]));
    }
    opts.sink(key, message, t.keyOf(whole));
  };
  const out8 = new RowWriter();
  return (row) => {
    current = row;
    // Field boundaries, found on the bytes (tabs are escaped inside values).
    let end = row.length;
    if (end > 0 && row[end - 1] === 10) end--;
    let fields = 0;
    let start = 0;
    for (let k = 0; k <= end; k++) {
      if (k < end && row[k] !== 9) continue;
      if (2 * fields + 2 > bounds.length) bounds = grow(bounds);
      bounds[2 * fields] = start;
      bounds[2 * fields + 1] = k;
      fields++;
      start = k + 1;
    }
    for (let i = 0; i < n; i++) {
      if (read[i]) tuple[i] = unescapeCopy(fieldText(row, bounds[2 * i], bounds[2 * i + 1]));
    }
    const out = t.row(tuple, opts.context, sink);
    if (out === null) return null;
    // The row written: source fields copied as bytes, computed values encoded.
    out8.reset();
    if (outputs === null) {
      for (const i of opts.keep) out8.bytes(row, bounds[2 * i], bounds[2 * i + 1]);
    } else {
      for (let j = 0; j < outputs.length; j++) {
        const o = outputs[j];
        if (o.expression) out8.text(escapeCopy(out[j] as string | null));
        else if (o.source !== undefined && o.source >= 0) {
          out8.bytes(row, bounds[2 * o.source], bounds[2 * o.source + 1]);
        } else out8.text("\\N");
      }
    }
    for (let i = n; i < fields; i++) out8.bytes(row, bounds[2 * i], bounds[2 * i + 1]);
    return out8.row();
  };
}

/** A reused buffer a row is written into, field by field (tab-separated, newline-ended). */
class RowWriter {
  #buf = new Uint8Array(1 << 16);
  #at = 0;

  reset(): void {
    this.#at = 0;
  }

  /** Appends bytes `[start, end)` of `src` as a field. */
  bytes(src: Uint8Array, start: number, end: number): void {
    this.#room(end - start + 1);
    const buf = this.#buf;
    let at = this.#at;
    if (end - start > 32) {
      buf.set(src.subarray(start, end), at);
      at += end - start;
    } else {
      for (let k = start; k < end; k++) buf[at++] = src[k];
    }
    buf[at++] = 9;
    this.#at = at;
  }

  /** Appends `text` (UTF-8) as a field. */
  text(text: string): void {
    this.#room(3 * text.length + 1);
    const buf = this.#buf;
    let at = this.#at;
    for (let k = 0; k < text.length; k++) {
      const c = text.charCodeAt(k);
      if (c > 127) {
        at += encoder.encodeInto(text.slice(k), buf.subarray(at)).written;
        break;
      }
      buf[at++] = c;
    }
    buf[at++] = 9;
    this.#at = at;
  }

  /**
   * The row written (its last tab made the newline): a view of the reused
   * buffer, valid until the next row, when short enough for the rechunker to
   * copy at once (copy_pipe.ts), else a copy.
   */
  row(): Uint8Array {
    this.#buf[this.#at - 1] = 10;
    return this.#at < 1 << 15 ? this.#buf.subarray(0, this.#at) : this.#buf.slice(0, this.#at);
  }

  #room(bytes: number): void {
    if (this.#at + bytes <= this.#buf.length) return;
    const bigger = new Uint8Array(2 * (this.#at + bytes));
    bigger.set(this.#buf.subarray(0, this.#at));
    this.#buf = bigger;
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function grow(bounds: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const bigger = new Int32Array(bounds.length * 2);
  bigger.set(bounds);
  return bigger;
}

/** The text of bytes `[start, end)`: short ASCII without a call into the runtime. */
function fieldText(row: Uint8Array, start: number, end: number): string {
  if (end - start > 64) return decoder.decode(row.subarray(start, end));
  let text = "";
  for (let k = start; k < end; k++) {
    const c = row[k];
    if (c > 127) return decoder.decode(row.subarray(start, end));
    text += String.fromCharCode(c);
  }
  return text;
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
