/**
 * Config problems and the error that carries them.
 *
 * Every problem is one line, in the style of compilers and linters:
 *
 *     <file>:<line>: <path>: <message>        when the line is known
 *     <file>: <path>: <message>               when it is not
 *     <file>:<line>:<column>: <message>       YAML syntax errors (no path)
 *
 * `<path>` is where the value sits in the file, e.g. `databases[0].tables.t3.type`
 * (keys joined by dots, list positions in brackets). Example:
 *
 *     kvsz.yaml:12: databases[0].tables.t3.type: must be one of clone, append, history, not "apend" (did you mean "append"?)
 */
import { NeedsPersonError } from "../errors.ts";

/** One thing wrong with a config file. */
export interface Problem {
  /** File the problem is in (the config file or its map file). */
  file: string;
  /** 1-based line of the offending node, when known. */
  line?: number;
  /** 1-based column, given for YAML syntax errors only. */
  column?: number;
  /** Where in the file, e.g. `databases[0].urls[1].sid`; empty for the whole file. */
  path: string;
  /** What is wrong, never containing a password. */
  message: string;
}

/** Renders a problem as one line (see the format at the top of this file). */
export function formatProblem(problem: Problem): string {
  let where = problem.file;
  if (problem.line !== undefined) {
    where += `:${problem.line}`;
    if (problem.column !== undefined) where += `:${problem.column}`;
  }
  const path = problem.path === "" ? "" : `${problem.path}: `;
  return `${where}: ${path}${problem.message}`;
}

/** A config that cannot be used; `problems` lists everything wrong with it, one line each. */
export class ConfigError extends NeedsPersonError {
  /** Every problem, formatted as one line each (the message is these lines joined). */
  readonly problems: string[];
  /** The same problems, structured. */
  readonly details: Problem[];

  constructor(details: Problem[]) {
    const problems = details.map(formatProblem);
    super(problems.join("\n"));
    this.problems = problems;
    this.details = details;
  }
}
