/** Reads YAML text into plain values, remembering the line of every path and expanding `${VAR}`. */

import YAML, {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Scalar,
} from "yaml";
import type { Problem } from "./errors.ts";
import { type Env, hasReference, interpolate } from "./interpolate.ts";

/** One step of a path: a mapping key or a list index. */
export type PathSegment = string | number;

/** Where a value sits in a document, e.g. `["databases", 0, "tables", "t3"]`. */
export type Path = readonly PathSegment[];

/**
 * A parsed YAML file. Mappings are `Map<string, unknown>` (key order kept),
 * lists are arrays, scalars are strings, numbers, booleans or null.
 */
export interface SourceDocument {
  /** File name used in messages. */
  file: string;
  /** The document's root value. */
  value: unknown;
  /** Line of each path (of the key for mapping entries, of the item for list items). */
  lines: Map<string, number>;
  /** Source text of numeric scalars, e.g. `012` for a value read as 12. */
  numberText: Map<string, string>;
  /** Paths whose `${VAR}` could not be expanded (already reported; other checks skip them). */
  unresolved: Set<string>;
}

/** A parsed document and the problems found while reading it. */
export interface ReadResult {
  /** Missing when the text is not valid YAML (then `problems` holds the syntax errors). */
  document?: SourceDocument;
  problems: Problem[];
}

/** Renders a path for messages: keys joined by dots, list positions in brackets. */
export function formatPath(path: Path): string {
  let out = "";
  for (const segment of path) {
    if (typeof segment === "number") out += `[${segment}]`;
    else out += out === "" ? segment : `.${segment}`;
  }
  return out;
}

/** Line of `path`, or of its nearest ancestor that has one. */
export function lineOf(document: SourceDocument, path: Path): number | undefined {
  for (let length = path.length; length > 0; length--) {
    const line = document.lines.get(formatPath(path.slice(0, length)));
    if (line !== undefined) return line;
  }
  return undefined;
}

/** A problem at `path` of `document`, with the line filled in when known. */
export function problemAt(document: SourceDocument, path: Path, message: string): Problem {
  return { file: document.file, line: lineOf(document, path), path: formatPath(path), message };
}

/**
 * Parses `text` (named `file` in messages) and expands `${VAR}` references in
 * every string value (not in keys) from `env`. An unquoted value that is only
 * digits after expansion is read as a number, as YAML would have read it.
 */
export function readDocument(text: string, file: string, env: Env): ReadResult {
  const lineCounter = new LineCounter();
  const doc = YAML.parseDocument(text, { lineCounter });
  if (doc.errors.length > 0) {
    // Only the first syntax error: the ones after it are mostly its echoes.
    const first = doc.errors.reduce((a, b) => (b.pos[0] < a.pos[0] ? b : a));
    const { line, col } = lineCounter.linePos(first.pos[0]);
    const message = `YAML syntax error: ${brief(first.message)}`;
    return { problems: [{ file, line, column: col, path: "", message }] };
  }
  const reader = new Reader(doc, lineCounter, { file, env });
  const value = reader.walk(doc.contents, []);
  const document: SourceDocument = {
    file,
    value,
    lines: reader.lines,
    numberText: reader.numberText,
    unresolved: reader.unresolved,
  };
  return { document, problems: reader.problems };
}

/** First line of a yaml library message, without its position and with URL passwords hidden. */
function brief(message: string): string {
  const first = message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
  return first.replace(/(\/\/[^\s:/@]*:)[^\s@]*@/g, "$1***@");
}

/** Options of {@link Reader}. */
interface ReaderOptions {
  /** The file's name in messages. */
  file: string;
  /** Where `${VAR}` references are expanded from. */
  env: Env;
}

class Reader {
  readonly lines = new Map<string, number>();
  readonly numberText = new Map<string, string>();
  readonly unresolved = new Set<string>();
  readonly problems: Problem[] = [];
  /** Collections being read, to stop at an alias that points at its own ancestor. */
  readonly #open = new Set<unknown>();

  readonly file: string;
  readonly env: Env;

  constructor(readonly doc: Document, readonly lineCounter: LineCounter, opts: ReaderOptions) {
    this.file = opts.file;
    this.env = opts.env;
  }

  walk(node: unknown, path: PathSegment[]): unknown {
    if (isAlias(node)) node = node.resolve(this.doc);
    if (this.#open.has(node)) return null;
    if (isMap(node)) {
      this.#open.add(node);
      const out = new Map<string, unknown>();
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value ?? "") : JSON.stringify(pair.key);
        const at = [...path, key];
        this.mark(at, pair.key);
        out.set(key, this.walk(pair.value, at));
      }
      this.#open.delete(node);
      return out;
    }
    if (isSeq(node)) {
      this.#open.add(node);
      const out = node.items.map((item, index) => {
        const at = [...path, index];
        this.mark(at, item);
        return this.walk(item, at);
      });
      this.#open.delete(node);
      return out;
    }
    if (isScalar(node)) return this.scalar(node, path);
    return null;
  }

  scalar(node: Scalar, path: PathSegment[]): unknown {
    const key = formatPath(path);
    if (typeof node.value === "number" && node.source !== undefined) {
      this.numberText.set(key, node.source);
    }
    if (typeof node.value !== "string") return node.value;
    const { value, problems } = interpolate(node.value, this.env);
    if (problems.length > 0) {
      this.unresolved.add(key);
      for (const message of problems) {
        this.problems.push({ file: this.file, line: this.lines.get(key), path: key, message });
      }
      return value;
    }
    if (node.type === "PLAIN" && hasReference(node.value) && /^[0-9]+$/.test(value)) {
      this.numberText.set(key, value);
      return Number(value);
    }
    return value;
  }

  mark(path: Path, node: unknown): void {
    const key = formatPath(path);
    const range = (node as { range?: [number, number, number] } | null)?.range;
    if (range && !this.lines.has(key)) this.lines.set(key, this.lineCounter.linePos(range[0]).line);
  }
}
