/**
 * Column drift as kvsz judges it from a source layout, the target's columns
 * and the source columns it knows: renames, drops and additions are named,
 * columns left out or added on purpose are not, and what kvsz knows next
 * keeps a gone column as long as the target has it.
 */
import assert from "node:assert/strict";
import { compareColumns, describeDrift } from "../../lib/apply/drift.ts";

const drift = (source: string[], target: string[], known: string[]) => {
  const r = compareColumns(source, target, known);
  return { drift: r.drift.map((d) => `${d.kind}:${d.column}`), known: [...r.known].sort() };
};

Deno.test("a rename is a target column gone at the source and a new source column", () => {
  assert.deepEqual(drift(["id", "d2"], ["id", "d"], ["id", "d"]), {
    drift: ["missing_at_source:d", "missing_at_target:d2"],
    known: ["d", "id"],
  });
  // The target renamed too: nothing left, and d is forgotten.
  assert.deepEqual(drift(["id", "d2"], ["id", "d2"], ["id", "d"]), {
    drift: [],
    known: ["d2", "id"],
  });
});

Deno.test("columns left out of the target, or only in the target, are not drift", () => {
  // note was at the source when the table was copied; sid, kvsz_* and loaded_at are the target's own.
  const target = ["sid", "id", "a", "loaded_at", "kvsz_start", "kvsz_end", "kvsz_deleted"];
  assert.deepEqual(drift(["id", "a", "note"], target, ["id", "a", "note"]).drift, []);
  // A source column named sid is never mapped, so never drift either, nor when it goes.
  assert.deepEqual(drift(["id", "a", "sid"], ["id", "a"], ["id", "a"]).drift, []);
  assert.deepEqual(drift(["id", "a"], ["sid", "id", "a"], ["id", "a", "sid"]).drift, []);
});

Deno.test("a drop is drift until the target drops (or renames) the column too", () => {
  assert.deepEqual(drift(["id"], ["id", "b"], ["id", "b"]).drift, ["missing_at_source:b"]);
  assert.deepEqual(drift(["id"], ["id", "b_old"], ["id", "b"]), { drift: [], known: ["id"] });
  // A column left out on purpose that the source drops is simply forgotten.
  assert.deepEqual(drift(["id"], ["id"], ["id", "note"]), { drift: [], known: ["id"] });
});

Deno.test("a column added on both sides becomes known; added at the source only, it is drift", () => {
  assert.deepEqual(drift(["id", "c"], ["id", "c"], ["id"]), { drift: [], known: ["c", "id"] });
  assert.deepEqual(drift(["id", "c"], ["id"], ["id"]), {
    drift: ["missing_at_target:c"],
    known: ["id"],
  });
});

Deno.test("the message names table, columns and the fix", () => {
  const place = { source: "public.t", target: "public.t" };
  const both = [
    { column: "d", kind: "missing_at_source" as const },
    { column: "d2", kind: "missing_at_target" as const },
  ];
  assert.match(
    describeDrift(place, both, true),
    /column\(s\) d were filled from public\.t.*table public\.t is stopped.*Fix: if d was renamed to d2: ALTER TABLE public\.t RENAME COLUMN d TO d2/,
  );
  assert.match(
    describeDrift(place, [both[1]], false),
    /public\.t has new column\(s\) d2 that target public\.t lacks.*Fix: add the new column\(s\) to the target/,
  );
});
