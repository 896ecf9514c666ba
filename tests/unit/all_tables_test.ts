/** all_tables' exclusion patterns (lib/source/all_tables.ts). */
import assert from "node:assert/strict";
import { excluded } from "../../lib/source/all_tables.ts";

Deno.test("all_tables: a pattern with a schema matches schema.table, one without the name in any schema", () => {
  assert.equal(excluded({ schema: "app", name: "audit_log" }, ["audit_*"]), true);
  assert.equal(excluded({ schema: "app", name: "audit_log" }, ["public.audit_*"]), false);
  assert.equal(excluded({ schema: "app", name: "orders" }, ["app.*"]), true);
  assert.equal(excluded({ schema: "app", name: "orders" }, ["ord"]), false);
  assert.equal(
    excluded({ schema: "a", name: "x+y" }, ["x+y"]),
    true,
    "regex characters are literal",
  );
});
