/**
 * A table's `filter`, `set` and `on_error` (kuvasz-streamer's CEL keys): their
 * shape and syntax are checked here, with the position of a syntax error in
 * the expression; their types need the source's columns and are checked at
 * start and by `kvsz validate` (see lib/transform/).
 */
import { syntaxError } from "../transform/cel.ts";
import type { ExpressionErrorPolicy } from "../transform/table_transform.ts";
import { formatPath, lineOf, type Path, type SourceDocument } from "./document.ts";
import type { Problem } from "./errors.ts";
import type { TransformConfig } from "./types.ts";

/** What {@link expressions} needs of validate.ts's checker. */
interface Checker {
  readonly document: SourceDocument;
  report(path: Path, message: string): void;
  choice<T extends string>(
    map: Map<string, unknown>,
    key: string,
    parent: Path,
    options: { allowed: readonly T[] },
  ): T | undefined;
}

/** Accepted `on_error` values (default `skip`). */
export const EXPRESSION_ERROR_POLICIES: readonly ExpressionErrorPolicy[] = ["skip", "pass", "stop"];

/** The transform of table options `map` at `path`; undefined when it has no filter and no set. */
export function expressions(
  check: Checker,
  map: Map<string, unknown>,
  path: Path,
): TransformConfig | undefined {
  const places = new Map<string, Omit<Problem, "message">>();
  const place = (key: string, at: Path) =>
    places.set(key, {
      file: check.document.file,
      line: lineOf(check.document, at),
      path: formatPath(at),
    });
  const expression = (value: unknown, at: Path): string | undefined => {
    if (typeof value === "number" || typeof value === "boolean") value = String(value);
    if (typeof value !== "string" || value.trim() === "") {
      check.report(at, `must be a CEL expression (a string), not ${shown(value)}`);
      return undefined;
    }
    const error = syntaxError(value);
    if (error) {
      check.report(at, `CEL syntax error: ${error.message}`);
      return undefined;
    }
    return value;
  };
  let filter: string | undefined;
  if (map.get("filter") !== undefined && map.get("filter") !== null) {
    filter = expression(map.get("filter"), [...path, "filter"]);
    place("filter", [...path, "filter"]);
  }
  let set: Map<string, string> | undefined;
  const setValue = map.get("set");
  if (setValue !== undefined && setValue !== null) {
    if (!(setValue instanceof Map) || setValue.size === 0) {
      check.report(
        [...path, "set"],
        `must map target columns to CEL expressions, not ${shown(setValue)}`,
      );
    } else {
      set = new Map();
      for (const [column, text] of setValue as Map<string, unknown>) {
        const at = [...path, "set", column];
        const checked = expression(text, at);
        if (checked !== undefined) set.set(column, checked);
        place(`set.${column}`, at);
      }
    }
  }
  const onError = check.choice(map, "on_error", path, { allowed: EXPRESSION_ERROR_POLICIES });
  if (filter === undefined && set === undefined) {
    if (onError !== undefined) check.report([...path, "on_error"], "needs a filter or a set");
    return undefined;
  }
  return {
    ...(filter !== undefined ? { filter } : {}),
    ...(set !== undefined ? { set } : {}),
    onError: onError ?? "skip",
    places,
  };
}

function shown(value: unknown): string {
  if (value === undefined || value === null || value === "") return "empty";
  if (Array.isArray(value)) return "a list";
  if (value instanceof Map) return "a mapping";
  return JSON.stringify(value);
}
