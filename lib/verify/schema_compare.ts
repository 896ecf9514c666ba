/**
 * Compares a source table's schema with its target's: columns (type,
 * nullability), indexes and constraints by definition, owned sequences. The
 * columns kvsz writes itself (`sid`, `kvsz_*`) are left out, and `sid` is
 * taken out of the target's keys.
 */
import { KVSZ_COLUMNS } from "../apply/catalog.ts";
import type { VerifyTable } from "./catalog.ts";

/** Options of {@link compareSchema}. */
export interface SchemaCompareOptions {
  /** The target holds several sources' rows in a `sid` column. */
  hasSid: boolean;
}

/** One line per difference between `source` and `target` (empty: the same). */
export function compareSchema(
  source: VerifyTable,
  target: VerifyTable,
  opts: SchemaCompareOptions,
): string[] {
  const out: string[] = [];
  const own = (name: string) => KVSZ_COLUMNS.has(name);
  const targetColumns = new Map(target.columns.map((c) => [c.name, c]));
  const sourceNames = new Set(source.columns.map((c) => c.name));
  for (const s of source.columns.filter((c) => !own(c.name))) {
    const t = targetColumns.get(s.name);
    if (!t) {
      out.push(`column ${s.name}: missing at destination`);
      continue;
    }
    if (s.type !== t.type) {
      out.push(`column ${s.name}: type ${s.type} at source, ${t.type} at destination`);
    }
    if (s.notNull !== t.notNull) {
      out.push(
        `column ${s.name}: ${nullability(s.notNull)} at source, ${
          nullability(t.notNull)
        } at destination`,
      );
    }
  }
  for (const t of target.columns) {
    if (!own(t.name) && !sourceNames.has(t.name)) {
      out.push(`column ${t.name}: at destination only`);
    }
  }
  const targetKey = (definition: string) => opts.hasSid ? withoutSid(definition) : definition;
  const targetIndexes = target.indexes.filter((i) =>
    !i.columns.every((c) => own(c)) || i.columns.length === 0
  );
  out.push(
    ...multisetDiff(
      "index",
      source.indexes.map((i) => ({ name: i.name, definition: i.definition })),
      targetIndexes.map((i) => ({ name: i.name, definition: targetKey(i.definition) })),
    ),
  );
  // A foreign key's deferrability is not compared: create_tables makes the targets'
  // DEFERRABLE INITIALLY DEFERRED on purpose (kvsz applies a batch in any table order).
  const constraint = (c: { name: string; definition: string }) => ({
    name: c.name,
    definition: withoutDeferrability(c.definition),
  });
  out.push(
    ...multisetDiff(
      "constraint",
      source.constraints.map(constraint),
      target.constraints.map((c) => constraint({ ...c, definition: targetKey(c.definition) })),
    ),
  );
  const targetSequences = new Set(target.sequenceColumns);
  for (const c of source.sequenceColumns) {
    if (!targetSequences.has(c)) {
      out.push(`column ${c}: owns a sequence at source, none at destination`);
    }
  }
  return out;
}

function nullability(notNull: boolean): string {
  return notNull ? "NOT NULL" : "nullable";
}

/** A constraint definition without its DEFERRABLE / INITIALLY clauses. */
export function withoutDeferrability(definition: string): string {
  return definition.replace(/ (NOT )?DEFERRABLE( INITIALLY (DEFERRED|IMMEDIATE))?/g, "");
}

/** A key or index definition without the `sid` column in its column lists. */
export function withoutSid(definition: string): string {
  return definition.replace(/\(sid, /g, "(").replace(/, sid\)/g, ")").replace(/, sid, /g, ", ");
}

/** Lines for the definitions one side has more of than the other. */
function multisetDiff(
  what: string,
  source: { name: string; definition: string }[],
  target: { name: string; definition: string }[],
): string[] {
  const out: string[] = [];
  const left = [...target];
  for (const s of source) {
    const i = left.findIndex((t) => t.definition === s.definition);
    if (i >= 0) left.splice(i, 1);
    else out.push(`${what} ${s.name} (${s.definition}): missing at destination`);
  }
  for (const t of left) out.push(`${what} ${t.name} (${t.definition}): at destination only`);
  return out;
}
