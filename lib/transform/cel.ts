/**
 * CEL for kvsz (npm:@marcbachmann/cel-js, see docs/design-notes.md for the
 * choice): the functions expressions may call, syntax checks for the config,
 * and expressions compiled once against a table's variables and run per row.
 *
 * An expression is type-checked against the columns' CEL types. CEL has no
 * nullable scalars, so a row whose referenced column is NULL is run again by
 * the same expression compiled with every variable `dyn`: there `x == null`
 * is true and `x > 1` an evaluation error, as CEL's JSON values behave.
 */
import { Environment } from "@marcbachmann/cel-js";
import { TIMESTAMP } from "./pg_values.ts";

/** A syntax or type error in an expression, with its 1-based position in the expression text. */
export class ExpressionError extends Error {
  constructor(readonly summary: string, readonly line: number, readonly column: number) {
    super(`${summary} (line ${line}, column ${column} of the expression)`);
  }
}

/** The environment every table's starts from: CEL's standard library and kuvasz's extras. */
const BASE = baseEnvironment();

function baseEnvironment(): Environment {
  const env = new Environment({ homogeneousAggregateLiterals: false });
  // Comparisons with null for the types a NULL column is declared with.
  for (const t of ["int", "double", "string", "bool", "bytes", TIMESTAMP]) {
    env.registerOperator(`${t} == null`, (a: unknown, b: unknown) => a === b);
  }
  // cel-go's strings extension (kuvasz loads it) beyond what the library has.
  env.registerFunction(
    "string.replace(string, string): string",
    (s: string, from: string, to: string) => s.replaceAll(from, to),
  );
  env.registerFunction(
    "string.replace(string, string, int): string",
    (s: string, from: string, to: string, n: bigint) => replaceN(s, from, to, Number(n)),
  );
  env.registerFunction("string.charAt(int): string", (s: string, i: bigint) => s.charAt(Number(i)));
  env.registerFunction("string.reverse(): string", (s: string) => [...s].reverse().join(""));
  // kuvasz's own: bytes.sliceBytes(start, end).
  env.registerFunction("bytes.sliceBytes(int, int): bytes", sliceBytes);
  return env;
}

function replaceN(s: string, from: string, to: string, n: number): string {
  if (n < 0) return s.replaceAll(from, to);
  let out = s;
  let at = 0;
  for (let i = 0; i < n; i++) {
    const found = out.indexOf(from, at);
    if (found < 0) break;
    out = out.slice(0, found) + to + out.slice(found + from.length);
    at = found + to.length;
  }
  return out;
}

function sliceBytes(b: Uint8Array, start: bigint, end: bigint): Uint8Array {
  if (start < 0n || end > BigInt(b.length) || start > end) {
    throw new Error(`sliceBytes(${start}, ${end}) out of range for ${b.length} bytes`);
  }
  return b.slice(Number(start), Number(end));
}

/** Line and column (1-based) of character `offset` of `text`. */
function position(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset).split("\n");
  return { line: before.length, column: before[before.length - 1].length + 1 };
}

// deno-lint-ignore no-explicit-any
function asExpressionError(text: string, error: any): ExpressionError {
  const summary = String(error?.summary ?? error?.message ?? error).split("\n")[0];
  const { line, column } = position(text, error?.range?.start ?? 0);
  return new ExpressionError(summary, line, column);
}

/** The syntax error of `text`, or null when it parses. */
export function syntaxError(text: string): ExpressionError | null {
  try {
    BASE.clone().parse(text);
    return null;
  } catch (error) {
    return asExpressionError(text, error);
  }
}

/** Variables of one table's expressions: name -> CEL type. */
export type Declarations = ReadonlyMap<string, string>;

/** The typed and the all-`dyn` environment of one set of declarations (made once per table). */
export class Scope {
  readonly #typed: Environment;
  readonly #dynamic: Environment;

  constructor(readonly declarations: Declarations) {
    this.#typed = BASE.clone();
    this.#dynamic = BASE.clone();
    for (const [name, type] of declarations) {
      this.#typed.registerVariable(name, type);
      this.#dynamic.registerVariable(name, "dyn");
    }
  }

  /** Compiles `text`; throws {@link ExpressionError} on a syntax or type error. */
  compile(text: string): CompiledExpression {
    const checked = this.#typed.check(text);
    if (!checked.valid) throw asExpressionError(text, checked.error);
    const refs = [...this.declarations.keys()].filter((name) =>
      new RegExp(`(^|[^A-Za-z0-9_.])${name}($|[^A-Za-z0-9_])`).test(text)
    );
    return new CompiledExpression(text, {
      type: String(checked.type),
      refs,
      typed: this.#typed.parse(text),
      dynamic: () => this.#dynamic.parse(text),
    });
  }
}

type Program = (context: Record<string, unknown>) => unknown;

/** Parts of a {@link CompiledExpression}. */
interface CompiledParts {
  type: string;
  refs: string[];
  typed: Program;
  dynamic: () => Program;
}

/** An expression checked against a table's variables, ready to run per row. */
export class CompiledExpression {
  /** The result's CEL type, e.g. `bool`, `int`, `dyn`. */
  readonly type: string;
  /** The declared variables it names (a superset: a name inside a string literal counts). */
  readonly refs: readonly string[];
  readonly #typed: Program;
  #dynamic: Program | null = null;
  readonly #makeDynamic: () => Program;

  constructor(readonly text: string, parts: CompiledParts) {
    this.type = parts.type;
    this.refs = parts.refs;
    this.#typed = parts.typed;
    this.#makeDynamic = parts.dynamic;
  }

  /** Runs on `context` (every variable of {@link refs} set); throws when evaluation fails. */
  run(context: Record<string, unknown>): unknown {
    try {
      return this.#typed(context);
    } catch (error) {
      if (!this.refs.some((name) => holdsNull(context[name]))) throw error;
      this.#dynamic ??= this.#makeDynamic();
      return this.#dynamic(context);
    }
  }
}

/** True for null and for a list holding one (an array with NULL elements). */
function holdsNull(value: unknown): boolean {
  return value === null || (Array.isArray(value) && value.includes(null));
}

/** The one-line reason of an evaluation error. */
export function evaluationMessage(error: unknown): string {
  // deno-lint-ignore no-explicit-any
  const e = error as any;
  return String(e?.summary ?? e?.message ?? e).split("\n")[0];
}
