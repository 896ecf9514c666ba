/**
 * A `discover` block's pattern and sid template: which database names are
 * tenants, and the sid each one gets. Checked when the config loads, used
 * again each time the server's databases are listed.
 */

/** A pattern and sid template that cannot work; `key` is the block's key at fault. */
export class DiscoverError extends Error {
  constructor(readonly key: "pattern" | "sid", message: string) {
    super(message);
  }
}

/** A compiled `discover` pattern and sid template (see {@link tenantMatcher}). */
export interface TenantMatcher {
  /** The sid of database `name`; null when the whole name does not match. */
  sidOf(name: string): string | null;
}

/** One piece of a sid template: literal text or a capture group (by number or name). */
type Piece = { text: string } | { group: number | string };

/**
 * Compiles `pattern` (matched against the whole database name) and
 * `sidTemplate` (as JavaScript's `replace` reads one: `$0` or `$&` the whole
 * name, `$1` a capture group, `$<name>` a named group, `$$` a `$`; also
 * `${1}` and `${name}`, which the config file spells `$${1}`, its `${…}`
 * being environment variables; anything else as written). Throws
 * {@link DiscoverError} for a bad regular expression or a template naming a
 * group the pattern does not have.
 */
export function tenantMatcher(pattern: string, sidTemplate: string): TenantMatcher {
  let whole: RegExp;
  let groups: number;
  let names: string[];
  try {
    new RegExp(pattern); // alone first: wrapped, `a)|(b` would pass
    whole = new RegExp(`^(?:${pattern})$`);
    const empty = new RegExp(`(?:${pattern})|`).exec("")!;
    groups = empty.length - 1;
    names = Object.keys(empty.groups ?? {});
  } catch (error) {
    throw new DiscoverError("pattern", (error as Error).message);
  }
  const pieces = parseTemplate(sidTemplate);
  for (const piece of pieces) {
    if (!("group" in piece)) continue;
    const { group } = piece;
    const has = typeof group === "number" ? group <= groups : names.includes(group);
    if (has) continue;
    const what = typeof group === "number" ? `group ${group}` : `the group named ${group}`;
    const offers = groups === 0
      ? "none (only $0, the whole name)"
      : [`${groups} numbered`, ...(names.length ? [`named ${names.join(", ")}`] : [])].join(", ");
    throw new DiscoverError(
      "sid",
      `${JSON.stringify(sidTemplate)} uses ${what}, but the pattern ${
        JSON.stringify(pattern)
      } has ${offers}: add the group to the pattern or name one it has`,
    );
  }
  return {
    sidOf(name) {
      const match = whole.exec(name);
      if (match === null) return null;
      return pieces.map((piece) => {
        if ("text" in piece) return piece.text;
        const value = typeof piece.group === "number"
          ? match[piece.group]
          : match.groups?.[piece.group];
        return value ?? "";
      }).join("");
    },
  };
}

/** The pieces of a sid template; throws {@link DiscoverError} on a `$` it cannot read. */
function parseTemplate(template: string): Piece[] {
  const pieces: Piece[] = [];
  const reference = /\$(?:(\$)|(&)|([0-9]+)|\{([0-9]+)\}|[{<]([A-Za-z_$][A-Za-z0-9_$]*)[}>])/y;
  let text = "";
  for (let i = 0; i < template.length;) {
    if (template[i] !== "$") {
      text += template[i++];
      continue;
    }
    reference.lastIndex = i;
    const m = reference.exec(template);
    if (m === null) {
      throw new DiscoverError(
        "sid",
        `${JSON.stringify(template)}: "$" at position ${i + 1} starts no reference: ` +
          "write $0 for the whole name, $1 for a group, $<name> for a named group",
      );
    }
    i = reference.lastIndex;
    if (m[1] !== undefined) {
      text += "$";
      continue;
    }
    if (text) pieces.push({ text });
    text = "";
    pieces.push({ group: m[5] ?? Number(m[2] ? 0 : m[3] ?? m[4]) });
  }
  if (text) pieces.push({ text });
  return pieces;
}
