/** Printing helpers for subcommands: aligned tables, byte sizes, JSON, check lines. */
import { type Check } from "../preflight/check.ts";
import { kvszObjectName } from "../pg/identifiers.ts";

/** Formats rows as a left-aligned text table under `headers`, columns two spaces apart. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => i === cells.length - 1 ? c : c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n");
}

/** Prints `value` as indented JSON on stdout (bigints as numbers when safe, else strings). */
export function printJson(value: unknown): void {
  console.log(JSON.stringify(
    value,
    (_k, v) =>
      typeof v === "bigint" ? (Number.isSafeInteger(Number(v)) ? Number(v) : String(v)) : v,
    2,
  ));
}

/** Formats a check as `ok   what`, `WARN what: problem — fix: how` or `FAIL what: problem — fix: how`. */
export function formatCheck(c: Check): string {
  const tag = c.status.padEnd(4);
  if (c.status === "ok" && !c.problem) return `${tag} ${c.check}`;
  return `${tag} ${c.check}${c.problem ? `: ${c.problem}` : ""}${c.fix ? ` — fix: ${c.fix}` : ""}`;
}

/** The same result on at least this many sources of one server is printed once. */
export const GROUP_MIN = 3;

/** How many of a group's sources its line names. */
const GROUP_NAMED = 3;

/**
 * Formats checks one per line with {@link formatCheck}, except that the same
 * result (status, check, problem and fix, each source's slot and database
 * name aside) on {@link GROUP_MIN} or more sources of one server is one line,
 * where the first of them was: `FAIL wal_level on 412 sources of
 * 10.0.0.5:5432 (db sid 1, db sid 2, db sid 3, …): <problem> — fix: <how>`.
 */
export function formatChecks(checks: Check[]): string[] {
  const keys = checks.map((c) => (c.source ? groupKey(c) : null));
  const groups = new Map<string, Check[]>();
  keys.forEach((k, i) => {
    if (k) groups.set(k, groups.get(k) ?? []).get(k)!.push(checks[i]);
  });
  const lines: string[] = [];
  const printed = new Set<string>();
  checks.forEach((c, i) => {
    const key = keys[i];
    const group = key ? groups.get(key)! : [];
    if (!key || group.length < GROUP_MIN) return lines.push(formatCheck(c));
    if (printed.has(key)) return;
    printed.add(key);
    const g = generic(c);
    const names = group.slice(0, GROUP_NAMED).map((m) =>
      `${m.source!.database} sid ${m.source!.sid}`
    );
    const more = group.length > GROUP_NAMED ? `, … ${group.length - GROUP_NAMED} more` : "";
    lines.push(formatCheck({
      ...g,
      check: `${g.check} on ${group.length} sources of ${c.source!.server} (${
        names.join(", ")
      }${more})`,
    }));
  });
  return lines;
}

/** A source's check without its label, its slot name as `<slot>`, its database as `<database>`. */
function generic(c: Check): Check {
  const s = c.source!;
  const label = `source ${s.database} sid ${s.sid} (${s.endpoint}) `;
  const slot = kvszObjectName(s.database, s.sid);
  const dbname = s.endpoint.slice(s.endpoint.lastIndexOf("/") + 1);
  const database = new RegExp(`\\b(database) ${escapeRegExp(dbname)}(?![\\w$])`, "gi");
  const clean = (text: string | undefined) =>
    text?.replaceAll(slot, "<slot>").replace(database, "$1 <database>");
  const check = c.check.startsWith(label) ? c.check.slice(label.length) : c.check;
  return { status: c.status, check: clean(check)!, problem: clean(c.problem), fix: clean(c.fix) };
}

function groupKey(c: Check): string {
  const g = generic(c);
  return [c.status, c.source!.server, g.check, g.problem ?? "", g.fix ?? ""].join("\u0000");
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
