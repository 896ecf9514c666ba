/** The order in which the tables of one destination job are written. */
import type { TableRoute, TargetTable } from "./types.ts";

/** A target's name as foreign keys reference it: `schema.name`. */
export const targetName = (t: TargetTable) => `${t.schema}.${t.name}`;
const nameOf = (r: TableRoute) => targetName(r.target);

/**
 * `entries` in the order their tables are written: a table referenced by
 * another one's foreign key (not deferrable) before it, otherwise in the given
 * order. A parent's new rows then exist when its children's arrive; a cycle
 * keeps the rest in order (a broken key falls back to one change at a time).
 */
export function parentsFirst<T>(entries: [TableRoute, T][]): [TableRoute, T][] {
  /** True when a table among `pending` (not yet written) is one `e`'s foreign keys reference. */
  const waitsFor = ([r]: [TableRoute, T], pending: Set<string>) =>
    r.target.foreignKeys.some((fk) =>
      !fk.deferrable && fk.references !== nameOf(r) && pending.has(fk.references)
    );
  const all = new Set(entries.map(([r]) => nameOf(r)));
  if (!entries.some((e) => waitsFor(e, all))) return entries;
  const ordered: [TableRoute, T][] = [];
  let rest = entries;
  while (rest.length > 0) {
    const pending = new Set(rest.map(([r]) => nameOf(r)));
    const ready = rest.filter((e) => !waitsFor(e, pending));
    if (ready.length === 0) return [...ordered, ...rest];
    ordered.push(...ready);
    rest = rest.filter((e) => !ready.includes(e));
  }
  return ordered;
}
