/**
 * One table's `filter` and `set`, compiled once against its source columns
 * and run per row: which rows reach the target, and the target row made of
 * the `set` columns (and the key columns `set` does not compute, passed as
 * they are). The same object serves the stream and the initial copy, so both
 * write the same rows.
 */
import { NeedsPersonError } from "../errors.ts";
import { type CompiledExpression, evaluationMessage, ExpressionError, Scope } from "./cel.ts";
import {
  type CelColumnType,
  celColumnType,
  readValue,
  TIMESTAMP,
  writeValue,
} from "./pg_values.ts";

/** What happens to a row whose expression fails (see README, Filters and transforms). */
export type ExpressionErrorPolicy = "skip" | "pass" | "stop";

/** A table's expressions as configured. */
export interface TransformSpec {
  /** A boolean expression: the rows it is true for reach the target. */
  filter?: string;
  /** Target column -> expression; when present, only these columns (and the key) are written. */
  set?: ReadonlyMap<string, string>;
  /** Default `skip`: the row does not reach the target (a filter hiding data stays shut). */
  onError: ExpressionErrorPolicy;
}

/** A source column as the expressions see it. */
export interface TransformColumn {
  name: string;
  typeOid: number;
  typeMod: number;
}

/** Names of a source table the expressions see as `kvsz_*` variables. */
export interface TransformConstants {
  database: string;
  sid: string;
  /** `schema.name` of the source table. */
  table: string;
}

/** Options of {@link compileTransform}. */
export interface CompileOptions {
  constants: TransformConstants;
  /** The target column's type (`format_type`), undefined when the target lacks it. */
  targetType: (name: string) => string | undefined;
  /** Source key columns: written as they are when `set` does not compute them. */
  keyNames: readonly string[];
}

/** An expression of a table that does not compile: which key (`filter`, `set.col`) and why. */
export class TransformCompileError extends Error {
  constructor(readonly key: string, readonly reason: ExpressionError | Error) {
    super(`${key}: ${reason.message}`);
  }
}

/** A row value: text, null (SQL NULL), undefined (unchanged TOAST), or a large value object. */
export type RowValue = string | null | undefined | { toString(): string };

/** One column of a transformed row: a source column passed through, or a `set` expression. */
export interface TransformOutput {
  name: string;
  /** Index of the source column passed through as it is. */
  source?: number;
  expression?: CompiledExpression;
  /** The target column's type, for writing lists and maps. */
  targetType: string;
}

/** What a row is run for (`kvsz_op`). */
export type RowOperation = "insert" | "update" | "delete" | "copy";

/** The per-row inputs besides the tuple. */
export interface RowContext {
  op: RowOperation;
  /**
   * The source commit (`kvsz_commit_time`; the copy's start for the initial
   * copy), asked for only when an expression names it.
   */
  commitTime: () => Date;
  /** The old row where the source sent one (`kvsz_old`). */
  old?: readonly RowValue[];
}

/** Called for each failed evaluation, before the policy acts; `key` is `filter` or `set.col`. */
export type ErrorSink = (key: string, message: string) => void;

const RESERVED = new Set([
  "as",
  "break",
  "const",
  "continue",
  "else",
  "false",
  "for",
  "function",
  "if",
  "import",
  "in",
  "let",
  "loop",
  "package",
  "namespace",
  "null",
  "return",
  "true",
  "var",
  "void",
  "while",
  "now",
]);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The variable a column is seen as: its name, `type` as `_type` (as kuvasz); null when unusable. */
export function variableName(column: string): string | null {
  if (column === "type") return "_type";
  if (!IDENT.test(column) || RESERVED.has(column) || column.startsWith("kvsz_")) return null;
  return column;
}

/** Compiles a table's expressions; throws {@link TransformCompileError} naming the first bad one. */
export function compileTransform(
  spec: TransformSpec,
  columns: readonly TransformColumn[],
  opts: CompileOptions,
): TableTransform {
  const declarations = new Map<string, string>([
    ["now", TIMESTAMP],
    ["kvsz_op", "string"],
    ["kvsz_commit_time", TIMESTAMP],
    ["kvsz_sid", "string"],
    ["kvsz_database", "string"],
    ["kvsz_table", "string"],
    ["kvsz_old", "map<string, dyn>"],
  ]);
  const types: (CelColumnType | null)[] = columns.map((c) => {
    const name = variableName(c.name);
    if (name === null) return null;
    const type = celColumnType(c.typeOid, c.typeMod);
    declarations.set(name, type.cel);
    return type;
  });
  const scope = new Scope(declarations);
  const compile = (key: string, text: string) => {
    try {
      return scope.compile(text);
    } catch (error) {
      if (error instanceof ExpressionError) throw new TransformCompileError(key, error);
      throw error;
    }
  };
  let filter: CompiledExpression | null = null;
  if (spec.filter !== undefined) {
    filter = compile("filter", spec.filter);
    if (filter.type !== "bool" && filter.type !== "dyn") {
      throw new TransformCompileError(
        "filter",
        new Error(`must be a boolean expression, not one of type ${filter.type}`),
      );
    }
  }
  let outputs: TransformOutput[] | null = null;
  if (spec.set !== undefined) {
    outputs = [];
    for (const [name, text] of spec.set) {
      const targetType = opts.targetType(name);
      if (targetType === undefined) {
        throw new TransformCompileError(
          `set.${name}`,
          new Error(`the target has no column ${name}; add it to the target or remove it from set`),
        );
      }
      outputs.push({ name, expression: compile(`set.${name}`, text), targetType });
    }
    for (const key of opts.keyNames) {
      if (spec.set.has(key)) continue;
      const source = columns.findIndex((c) => c.name === key);
      outputs.push({ name: key, source, targetType: opts.targetType(key) ?? "text" });
    }
  }
  return new TableTransform({
    columns,
    types,
    filter,
    outputs,
    spec,
    constants: opts.constants,
    keyNames: opts.keyNames,
  });
}

/** Parts of a {@link TableTransform}. */
interface TransformParts {
  columns: readonly TransformColumn[];
  types: readonly (CelColumnType | null)[];
  filter: CompiledExpression | null;
  outputs: TransformOutput[] | null;
  spec: TransformSpec;
  constants: TransformConstants;
  keyNames: readonly string[];
}

/** A table's compiled `filter` and `set`. */
export class TableTransform {
  /** The filter, when there is one. */
  readonly filter: CompiledExpression | null;
  /** The target row's columns, or null when rows keep the source layout (no `set`). */
  readonly outputs: readonly TransformOutput[] | null;
  /** Source column indexes read by some expression (to be parsed from their text). */
  readonly inputs: readonly number[];
  readonly #columns: readonly TransformColumn[];
  readonly #types: readonly (CelColumnType | null)[];
  readonly #policy: ExpressionErrorPolicy;
  readonly #constants: TransformConstants;
  readonly #refs: ReadonlySet<string>;
  readonly #keyIdx: readonly number[];
  readonly #keyNames: ReadonlySet<string>;
  /** The variable name of each of {@link inputs}. */
  readonly #inputNames: readonly string[];
  /** Whether an expression names one of the variables besides the columns. */
  readonly #usesContext: boolean;

  constructor(parts: TransformParts) {
    this.#keyNames = new Set(parts.keyNames);
    this.filter = parts.filter;
    this.outputs = parts.outputs;
    this.#columns = parts.columns;
    this.#types = parts.types;
    this.#policy = parts.spec.onError;
    this.#constants = parts.constants;
    const refs = new Set<string>(parts.filter?.refs ?? []);
    for (const o of parts.outputs ?? []) for (const r of o.expression?.refs ?? []) refs.add(r);
    this.#refs = refs;
    this.#keyIdx = parts.keyNames.map((k) => parts.columns.findIndex((c) => c.name === k));
    this.inputs = parts.columns
      .map((c, i) => refs.has(variableName(c.name) ?? "") ? i : -1)
      .filter((i) => i >= 0);
    this.#inputNames = this.inputs.map((i) => variableName(parts.columns[i].name)!);
    this.#usesContext = [...refs].some((r) => r === "now" || r.startsWith("kvsz_"));
  }

  /** The source key of a source row, as text (for logs). */
  keyOf(tuple: readonly RowValue[]): string[] {
    return this.#keyIdx.map((i) => i < 0 ? "?" : String(tuple[i] ?? "NULL"));
  }

  /** The policy for a failed evaluation. */
  get policy(): ExpressionErrorPolicy {
    return this.#policy;
  }

  /**
   * The target row of a source row that passes the filter, else null (also
   * when an expression fails under `skip`). With no `set`, the row itself.
   */
  row(tuple: readonly RowValue[], context: RowContext, sink: ErrorSink): RowValue[] | null {
    const vars = this.#variables(tuple, context, sink);
    if (vars === null) return null;
    if (this.filter !== null) {
      let keep: unknown;
      try {
        keep = this.filter.run(vars);
        if (typeof keep !== "boolean") {
          throw new Error(`filter returned ${typeof keep}, not a bool`);
        }
      } catch (error) {
        if (!this.#failed("filter", error, sink)) return null;
        keep = true; // pass: let it through, as kuvasz does
      }
      if (!keep) return null;
    }
    return this.#project(tuple, vars, sink);
  }

  /**
   * The target layout of a source row (no filter): for the old row of an
   * UPDATE or DELETE, or (`keyOnly`) its key, where only the key columns
   * are computed (the server sent no others).
   */
  project(
    tuple: readonly RowValue[],
    context: RowContext,
    sink: ErrorSink,
    keyOnly = false,
  ): RowValue[] | null {
    if (this.outputs === null) return tuple.slice();
    const vars = this.#variables(tuple, context, sink);
    return vars === null ? null : this.#project(tuple, vars, sink, keyOnly);
  }

  #project(
    tuple: readonly RowValue[],
    vars: Record<string, unknown>,
    sink: ErrorSink,
    keyOnly = false,
  ): RowValue[] | null {
    const outputs = this.outputs;
    if (outputs === null) return tuple as RowValue[];
    const out: RowValue[] = new Array(outputs.length);
    for (let i = 0; i < outputs.length; i++) {
      const o = outputs[i];
      if (keyOnly && !this.#keyNames.has(o.name)) {
        out[i] = null;
        continue;
      }
      if (o.expression === undefined) {
        out[i] = o.source !== undefined && o.source >= 0 ? tuple[o.source] : null;
        continue;
      }
      try {
        out[i] = writeValue(o.expression.run(vars), o.targetType);
      } catch (error) {
        if (!this.#failed(`set.${o.name}`, error, sink)) return null;
        out[i] = null; // pass: NULL, as kuvasz writes
      }
    }
    return out;
  }

  /** The expressions' variables for one row; null when a referenced value cannot be read (skip). */
  #variables(
    tuple: readonly RowValue[],
    context: RowContext,
    sink: ErrorSink,
  ): Record<string, unknown> | null {
    const vars: Record<string, unknown> = {};
    const names = this.#inputNames;
    const inputs = this.inputs;
    for (let k = 0; k < inputs.length; k++) {
      const i = inputs[k];
      try {
        vars[names[k]] = this.#read(tuple[i], i);
      } catch (error) {
        // A value the expressions cannot see fails them all alike.
        if (!this.#failed(this.filter ? "filter" : "set", error, sink)) return null;
        vars[names[k]] = null;
      }
    }
    if (this.#usesContext) this.#addContext(vars, context);
    return vars;
  }

  /** The variables besides the columns, those the expressions name. */
  #addContext(vars: Record<string, unknown>, context: RowContext): void {
    const refs = this.#refs;
    if (refs.has("now")) vars.now = new Date();
    if (refs.has("kvsz_op")) vars.kvsz_op = context.op;
    if (refs.has("kvsz_commit_time")) vars.kvsz_commit_time = context.commitTime();
    if (refs.has("kvsz_sid")) vars.kvsz_sid = this.#constants.sid;
    if (refs.has("kvsz_database")) vars.kvsz_database = this.#constants.database;
    if (refs.has("kvsz_table")) vars.kvsz_table = this.#constants.table;
    if (refs.has("kvsz_old")) vars.kvsz_old = this.#oldRow(context.old);
  }

  #read(value: RowValue, index: number): unknown {
    if (value === null) return null;
    const name = this.#columns[index].name;
    if (value === undefined) {
      throw new Error(`column ${name} was not sent (an unchanged TOASTed value)`);
    }
    if (typeof value !== "string") throw new Error(`column ${name} is too large for expressions`);
    try {
      return readValue(value, this.#types[index]!);
    } catch (error) {
      throw new Error(`column ${name}: ${(error as Error).message}`);
    }
  }

  /** The old row as a map of the columns it carries (none: an empty map). */
  #oldRow(old: readonly RowValue[] | undefined): Map<string, unknown> {
    const out = new Map<string, unknown>();
    if (!old) return out;
    this.#columns.forEach((c, i) => {
      const v = old[i];
      if (v === undefined || this.#types[i] === null) return;
      try {
        out.set(c.name, this.#read(v, i));
      } catch {
        // unreadable values are left out of kvsz_old
      }
    });
    return out;
  }

  /** Reports a failure; true when the policy is `pass`, false for `skip`; throws for `stop`. */
  #failed(key: string, error: unknown, sink: ErrorSink): boolean {
    const message = evaluationMessage(error);
    sink(key, message);
    if (this.#policy === "stop") {
      throw new NeedsPersonError(
        `${this.#constants.table}: ${key} failed (${message}) and on_error is stop: ` +
          `fix the expression (or the row), or choose on_error: skip or pass, then restart`,
      );
    }
    return this.#policy === "pass";
  }
}
