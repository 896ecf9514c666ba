/** SQL generation of the table writer: array literals and statement shapes (no server). */
import assert from "node:assert/strict";
import { boolArray, intArray, textArray } from "../../lib/apply/text_array.ts";
import { routeShape } from "../../lib/apply/sql_common.ts";
import { cloneChunkSql } from "../../lib/apply/sql_clone.ts";
import { historyChunkSql } from "../../lib/apply/sql_history.ts";
import { insertRowsSql } from "../../lib/apply/sql_keyless.ts";
import type { TableRoute, TargetColumn } from "../../lib/apply/types.ts";

function route(mode: "clone" | "history", hasSid: boolean): TableRoute {
  const columns = new Map<string, TargetColumn>();
  for (const [name, type] of [["sid", "integer"], ["id", "bigint"], ["Doc", "text"]]) {
    if (name === "sid" && !hasSid) continue;
    columns.set(name, { name, type, typeOid: 0, notNull: false, hasDefault: false });
  }
  const mapped = [
    { sourceIndex: 0, name: "id", type: "bigint" },
    { sourceIndex: 2, name: "Doc", type: "text" },
  ];
  return {
    source: "public.t",
    mode,
    sid: "7",
    database: "db",
    target: {
      schema: "public",
      name: "my t",
      columns,
      primaryKey: ["id"],
      hasSid,
      hasHistoryColumns: mode === "history",
      uniqueKeys: [],
      foreignKeys: [],
    },
    columns: mapped,
    key: [mapped[0]],
    keyless: false,
    syncedLsn: 0n,
  };
}

Deno.test("textArray quotes every element and escapes quotes and backslashes only", () => {
  assert.equal(textArray([]), "{}");
  assert.equal(textArray(["a", null, undefined, ""]), '{"a",NULL,NULL,""}');
  assert.equal(
    textArray(['a"b', "c\\d", "e,f", "{g}", "h\ni", "NULL"]),
    '{"a\\"b","c\\\\d","e,f","{g}","h\ni","NULL"}',
  );
  assert.equal(boolArray([true, false]), "{t,f}");
  assert.equal(boolArray([]), "{}");
  assert.equal(intArray([1, 2]), "{1,2}");
});

Deno.test("clone chunk: one statement, unnest arrays, typed sid, keep columns only when asked", () => {
  const shape = routeShape(route("clone", true));
  const sql = cloneChunkSql(shape, [false]);
  assert.equal(sql.match(/unnest\(/g)?.length, 1);
  assert.match(sql, /unnest\(\$2::bool\[\], \$3::bool\[\], \$4::text\[\], \$5::text\[\]\)/);
  assert.match(sql, /t\."sid" = \$1::text::integer AND t\."id" = s\.k0::bigint/);
  assert.match(sql, /INSERT INTO "public"\."my t" \("sid", "id", "Doc"\)/);
  assert.doesNotMatch(sql, /CASE/);
  const keep = cloneChunkSql(shape, [true]);
  assert.match(keep, /"Doc" = CASE WHEN s\.p0 THEN t\."Doc" ELSE s\.c0::text END/);
  assert.match(keep, /\$6::bool\[\]/);
  const noSid = cloneChunkSql(routeShape(route("clone", false)), [false]);
  assert.doesNotMatch(noSid, /sid/);
  assert.match(noSid, /unnest\(\$1::bool\[\]/);
});

Deno.test("history chunk: closes current rows, inserts versions, first-insert rule", () => {
  const sql = historyChunkSql(routeShape(route("history", true)), [true]);
  assert.match(
    sql,
    /closed AS \(UPDATE "public"\."my t" t SET "kvsz_end" = s\.t1::timestamp with time zone/,
  );
  assert.match(sql, /t\."kvsz_end" = '9999-01-01'/);
  assert.match(sql, /CASE WHEN v\.fs AND seen\.i IS NULL THEN '1900-01-01' ELSE v\.st END/);
  assert.match(sql, /CASE WHEN v\.p0 THEN cl\.c0 ELSE v\.c0::text END/);
  assert.match(sql, /DISTINCT ON \(i\)/);
});

Deno.test("keyless inserts: one multi-row INSERT … SELECT FROM unnest", () => {
  const r = route("history", false);
  const sql = insertRowsSql(routeShape({ ...r, key: [], keyless: true }), true);
  assert.equal(
    sql,
    `INSERT INTO "public"."my t" ("id", "Doc", "kvsz_start", "kvsz_end", "kvsz_deleted") OVERRIDING SYSTEM VALUE SELECT s.c0::bigint, s.c1::text, '1900-01-01'::timestamp with time zone, '9999-01-01'::timestamp with time zone, false FROM unnest($1::text[], $2::text[]) AS s(c0, c1)`,
  );
});
