/**
 * `${VAR}` expansion in config strings.
 *
 * - `${VAR}` is the value of the environment variable VAR; unset is a problem.
 * - `${VAR:-default}` is VAR, or `default` when VAR is unset or empty.
 * - `$$` is one literal `$`. A `$` followed by anything else is kept as is.
 *
 * Defaults are literal text (no nested `${...}`) and cannot contain `}`.
 */

/** Environment variables as `Deno.env.toObject()` gives them. */
export type Env = Record<string, string | undefined>;

/** The expanded text and what went wrong while expanding it. */
export interface Expansion {
  value: string;
  /** Problem messages (without a path), e.g. `environment variable X is not set ...`. */
  problems: string[];
}

const REFERENCE = /^([A-Za-z_][A-Za-z0-9_]*)(:-([^]*))?$/;

/** Expands `${VAR}`, `${VAR:-default}` and `$$` in `text` from `env`. */
export function interpolate(text: string, env: Env): Expansion {
  let value = "";
  const problems: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text.startsWith("$$", i)) {
      value += "$";
      i += 2;
    } else if (text.startsWith("${", i)) {
      const close = text.indexOf("}", i + 2);
      if (close < 0) {
        problems.push(`"\${" without a closing "}" (write "$$" for a literal "$")`);
        value += text.slice(i);
        break;
      }
      value += expandReference(text.slice(i + 2, close), env, problems);
      i = close + 1;
    } else {
      value += text[i];
      i += 1;
    }
  }
  return { value, problems };
}

/** Whether `text` contains a `${...}` reference (so its meaning depends on the environment). */
export function hasReference(text: string): boolean {
  return text.replaceAll("$$", "").includes("${");
}

function expandReference(inner: string, env: Env, problems: string[]): string {
  const match = REFERENCE.exec(inner);
  if (match === null) {
    problems.push(
      `"\${${inner}}" is not a valid reference (use \${NAME} or \${NAME:-default}; "$$" for a literal "$")`,
    );
    return "";
  }
  const [, name, withDefault, fallback] = match;
  const found = env[name];
  if (withDefault !== undefined) return found === undefined || found === "" ? fallback : found;
  if (found === undefined) {
    problems.push(
      `environment variable ${name} is not set (write \${${name}:-default} to give a default)`,
    );
    return "";
  }
  return found;
}
