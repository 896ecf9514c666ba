/**
 * `filter`, `set` and `on_error`: their config errors (file, line, key path,
 * position in the expression), the CEL types of PostgreSQL's, and what a row
 * becomes under each error policy. End to end on servers: tests/e2e/transform_test.ts.
 */
import assert from "node:assert/strict";
import { ConfigError } from "../../lib/config/errors.ts";
import { parseConfig } from "../../lib/config/load.ts";
import type { TableMapping } from "../../lib/config/types.ts";
import { compileMappingTransform } from "../../lib/apply/transform_route.ts";
import { celColumnType, readValue, writeValue } from "../../lib/transform/pg_values.ts";
import type { ExpressionErrorPolicy } from "../../lib/transform/table_transform.ts";
import { MappedFrames } from "../../lib/source/copy_rows_relay.ts";

const CONFIG = `destination:
  url: postgres://kvsz@127.0.0.1:5432/warehouse
databases:
  - database: db1
    urls:
      - url: postgres://kvsz@10.0.0.1:5432/db1
        sid: 1
    tables:
      t1:
`;

function mappingOf(options: string): TableMapping {
  return parseConfig(CONFIG + options, "kvsz.yaml", {}).databases[0].tables[0];
}

function problemsOf(options: string): string[] {
  try {
    parseConfig(CONFIG + options, "kvsz.yaml", {});
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems;
  }
  assert.fail("expected a ConfigError");
}

// int4 id (key), text type, numeric(10,2) amount, timestamptz at, text[] tags, jsonb doc, bytea raw
const COLUMNS = [
  { name: "id", typeOid: 23, typeMod: -1 },
  { name: "type", typeOid: 25, typeMod: -1 },
  { name: "amount", typeOid: 1700, typeMod: ((10 << 16) | 2) + 4 },
  { name: "at", typeOid: 1184, typeMod: -1 },
  { name: "tags", typeOid: 1009, typeMod: -1 },
  { name: "doc", typeOid: 3802, typeMod: -1 },
  { name: "raw", typeOid: 17, typeMod: -1 },
];

function compiled(options: string) {
  return compileMappingTransform(mappingOf(options), COLUMNS, null, {
    database: "db1",
    sid: "1",
    keyNames: ["id"],
  })!;
}

Deno.test("a CEL syntax error is a config error with line, key path and position", () => {
  assert.deepEqual(problemsOf("        filter: id >\n"), [
    "kvsz.yaml:10: databases[0].tables.t1.filter: CEL syntax error: Unexpected token: EOF " +
    "(line 1, column 5 of the expression)",
  ]);
  assert.match(
    problemsOf("        set:\n          label: '\"a\" +'\n")[0],
    /^kvsz\.yaml:11: databases\[0\]\.tables\.t1\.set\.label: CEL syntax error/,
  );
  assert.match(
    problemsOf("        filter: id > 1\n        on_error: ignore\n")[0],
    /skip, pass, stop/,
  );
  assert.match(problemsOf("        on_error: pass\n")[0], /on_error: needs a filter or a set/);
  assert.match(problemsOf("        set: [a]\n")[0], /set: must map target columns/);
});

Deno.test("a CEL type error found against the source's columns names file, line, key and position", () => {
  const mapping = mappingOf("        set:\n          label: _type + 1\n");
  assert.equal(mapping.transform?.onError, "skip");
  assert.throws(
    () =>
      compileMappingTransform(mapping, COLUMNS, null, { database: "d", sid: "1", keyNames: [] }),
    (e: ConfigError) => {
      assert.deepEqual(e.problems, [
        "kvsz.yaml:11: databases[0].tables.t1.set.label: no such overload: string + int " +
        "(line 1, column 1 of the expression)",
      ]);
      return true;
    },
  );
  assert.throws(() => compiled("        filter: id + 1\n"), /must be a boolean expression/);
  assert.throws(() => compiled("        filter: nope > 1\n"), /Unknown variable: nope/);
});

Deno.test("columns have the CEL type of their PostgreSQL type; values round-trip as text", () => {
  const cel = (oid: number, mod = -1) => celColumnType(oid, mod).cel;
  assert.equal(cel(20), "int");
  assert.equal(cel(701), "double");
  assert.equal(cel(1700, ((10 << 16) | 2) + 4), "double");
  assert.equal(cel(1700), "string"); // unconstrained numeric: exact text
  assert.equal(cel(1700, ((20 << 16) | 2) + 4), "string");
  assert.equal(cel(16), "bool");
  assert.equal(cel(17), "bytes");
  assert.equal(cel(1184), "google.protobuf.Timestamp");
  assert.equal(cel(1082), "google.protobuf.Timestamp");
  assert.equal(cel(3802), "dyn");
  assert.equal(cel(1016), "list<int>");
  assert.equal(cel(2950), "string"); // uuid
  const big = readValue("9007199254740993", celColumnType(20));
  assert.equal(big, 9007199254740993n);
  assert.equal(writeValue(big, "bigint"), "9007199254740993");
  const at = readValue("2024-02-29 23:59:59.123456+00", celColumnType(1184));
  assert.equal((at as Date).toISOString(), "2024-02-29T23:59:59.123Z");
  assert.equal(writeValue(at, "timestamptz"), "2024-02-29 23:59:59.123456+00"); // microseconds kept
  assert.equal(
    (readValue("2024-01-01 10:00:00+05:30", celColumnType(1184)) as Date).toISOString(),
    "2024-01-01T04:30:00.000Z",
  );
  assert.deepEqual(readValue('{a,"b,c",NULL}', celColumnType(1009)), ["a", "b,c", null]);
  assert.equal(writeValue(["x", 'y"'], "text[]"), '{"x","y\\""}');
  assert.equal(writeValue(new Map([["k", 1n]]), "jsonb"), '{"k":1}');
  assert.equal(writeValue(readValue("\\x00ff", celColumnType(17)), "bytea"), "\\x00ff");
  assert.equal(writeValue(true, "boolean"), "true");
  assert.equal(writeValue(null, "text"), null);
});

const ROW = [
  "7",
  "public",
  "12.50",
  "2024-01-01 00:00:00+00",
  "{a,b}",
  '{"k": {"n": 2}}',
  "\\x0102",
];
const CONTEXT = { op: "insert" as const, commitTime: () => new Date(0) };

Deno.test("filter and set over a row: kuvasz's names, typed values, computed columns", () => {
  const t = compiled(
    `        filter: _type != "private" && amount > 10.0 && "b" in tags && doc.k.n == 2.0
        set:
          label: _type.upperAscii() + "-" + string(id)
          big: amount * 2.0
          first: raw.sliceBytes(0, 1)
          op: kvsz_op + "@" + kvsz_database + "/" + kvsz_sid + "/" + kvsz_table
          at: kvsz_commit_time
`,
  );
  const errors: string[] = [];
  const sink = (key: string, message: string) => errors.push(`${key}: ${message}`);
  // set columns, then the key passed through
  assert.deepEqual(t.row(ROW, CONTEXT, sink), [
    "PUBLIC-7",
    "25",
    "\\x01",
    "insert@db1/1/public.t1",
    "1970-01-01T00:00:00.000Z",
    "7",
  ]);
  assert.equal(t.row(["8", "private", ...ROW.slice(2)], CONTEXT, sink), null);
  assert.equal(t.row(["9", "public", "9.99", ...ROW.slice(3)], CONTEXT, sink), null);
  assert.deepEqual(errors, []);
});

Deno.test("NULL is null: compared with null, and an error where a value is needed", () => {
  const t = compiled("        filter: _type == null || _type.startsWith('p')\n");
  const sink = () => {};
  assert.ok(t.row(["1", null, ...ROW.slice(2)], CONTEXT, sink));
  assert.ok(t.row(["2", "public", ...ROW.slice(2)], CONTEXT, sink));
  assert.equal(t.row(["3", "x", ...ROW.slice(2)], CONTEXT, sink), null);
});

Deno.test("on_error: skip drops the row, pass lets it through (NULL for a failed set), stop stops", () => {
  const run = (policy: ExpressionErrorPolicy) => {
    const t = compiled(
      `        filter: int(_type) > 0\n        set:\n          label: string(int(_type))\n        on_error: ${policy}\n`,
    );
    const errors: string[] = [];
    const out = t.row(ROW, CONTEXT, (key, message) => errors.push(`${key}: ${message}`));
    return { out, errors };
  };
  const skip = run("skip");
  assert.equal(skip.out, null);
  assert.equal(skip.errors.length, 1);
  assert.match(skip.errors[0], /^filter: /);
  const pass = run("pass");
  assert.deepEqual(pass.out, [null, "7"]);
  assert.deepEqual(pass.errors.map((e) => e.split(":")[0]), ["filter", "set.label"]);
  assert.throws(() => run("stop"), /public\.t1: filter failed .* on_error is stop/);
});

Deno.test("the relay's mapped frames: rows cut anywhere across reads are mapped and framed again", () => {
  const encoder = new TextEncoder();
  const frame = (text: string) => {
    const row = encoder.encode(text);
    const out = new Uint8Array(5 + row.length);
    out[0] = 0x64;
    new DataView(out.buffer).setUint32(1, row.length + 4);
    out.set(row, 5);
    return out;
  };
  const rows = Array.from({ length: 300 }, (_, i) => `${i}\tname ${i}\n`);
  const stream = new Uint8Array(rows.reduce((n, r) => n + frame(r).length, 0));
  let at = 0;
  for (const r of rows) {
    stream.set(frame(r), at);
    at += frame(r).length;
  }
  const decoder = new TextDecoder();
  for (const step of [1, 3, 7, 64, 5000]) {
    const written: Uint8Array[] = [];
    const mapped = new MappedFrames((row) => {
      const text = decoder.decode(row);
      return text.startsWith("1") ? null : encoder.encode(text.toUpperCase());
    }, (bytes) => written.push(bytes));
    for (let i = 0; i < stream.length; i += step) mapped.push(stream.subarray(i, i + step));
    mapped.flush();
    const all = new Uint8Array(written.reduce((n, b) => n + b.length, 0));
    written.reduce((n, b) => (all.set(b, n), n + b.length), 0);
    const want = rows.filter((r) => !r.startsWith("1")).map((r) => frame(r.toUpperCase()));
    assert.deepEqual(all, new Uint8Array(want.flatMap((f) => [...f])), `reads of ${step} bytes`);
  }
});
