/**
 * The set-based table writer on a real server: changes built by hand, flushed
 * inside BEGIN/COMMIT, and the destination rows checked exactly, for clone,
 * append and history, anomalies, unchanged TOAST, keyless tables, key changes
 * and large batches.
 */
import assertModule from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { connect, type Sql } from "../../lib/pg/connect.ts";
import { type FlushResult, TableBatch } from "../../lib/apply/table_batch.ts";
import type { Change, TableRoute, TargetColumn } from "../../lib/apply/types.ts";
import type { TableMode } from "../../lib/config/types.ts";
import type { Tuple } from "../../lib/source/messages.ts";
import { textArray } from "../../lib/apply/text_array.ts";

const assertEquals: (actual: unknown, expected: unknown, message?: string) => void =
  assertModule.deepStrictEqual;
const assert: (value: unknown, message?: string) => void = assertModule.ok;

const T1 = "2024-01-01T10:00:00.000001Z";
const T2 = "2024-02-01T10:00:00.000002Z";
const T3 = "2024-03-01T10:00:00.000003Z";
const T4 = "2024-04-01T10:00:00.000004Z";
/** How the server prints the times above (TimeZone UTC). */
const ts = (iso: string) => iso.replace("T", " ").replace("Z", "+00");
const FIRST = "1900-01-01 00:00:00+00";
const OPEN = "9999-01-01 00:00:00+00";

interface RouteSpec {
  table: string;
  cols: [string, string][];
  key?: string[];
  mode?: TableMode;
  sid?: string;
  hasSid?: boolean;
  keyless?: boolean;
  /** Unique indexes of the target as the catalog reports them (none by default). */
  uniqueKeys?: string[][];
}

/** A route as the catalog would build it: source columns in `cols` order, all mapped. */
function route(spec: RouteSpec): TableRoute {
  const mode = spec.mode ?? "clone";
  const hasSid = spec.hasSid ?? true;
  const columns = new Map<string, TargetColumn>();
  const col = (name: string, type: string) =>
    columns.set(name, { name, type, typeOid: 0, notNull: false, hasDefault: false });
  if (hasSid) col("sid", "text");
  for (const [name, type] of spec.cols) col(name, type);
  if (mode === "history") {
    col("kvsz_start", "timestamp with time zone");
    col("kvsz_end", "timestamp with time zone");
    col("kvsz_deleted", "boolean");
  }
  const mapped = spec.cols.map(([name, type], sourceIndex) => ({ sourceIndex, name, type }));
  const key = (spec.key ?? []).map((k) => mapped.find((c) => c.name === k)!);
  return {
    source: `public.${spec.table}`,
    mode,
    sid: spec.sid ?? "1",
    database: "src",
    target: {
      schema: "public",
      name: spec.table,
      columns,
      primaryKey: spec.key ?? [],
      hasSid,
      hasHistoryColumns: mode === "history",
      uniqueKeys: spec.uniqueKeys ?? [],
      foreignKeys: [],
    },
    columns: mapped,
    key,
    keyless: spec.keyless ?? false,
    syncedLsn: 0n,
  };
}

const ins = (r: TableRoute, ...v: Tuple): Change => ({ kind: "insert", route: r, newTuple: v });
const upd = (r: TableRoute, v: Tuple, o: { key?: Tuple; old?: Tuple } = {}): Change => ({
  kind: "update",
  route: r,
  newTuple: v,
  keyTuple: o.key,
  oldTuple: o.old,
});
const del = (r: TableRoute, o: { key?: Tuple; old?: Tuple }): Change => ({
  kind: "delete",
  route: r,
  keyTuple: o.key,
  oldTuple: o.old,
});
const trunc = (r: TableRoute): Change => ({ kind: "truncate", route: r });

/** A change and the commit time of its source transaction. */
type At = [Change, string];

/** Counts the statements a flush sends. */
function counting(tx: Sql): { tx: Sql; count: () => number } {
  let n = 0;
  const wrapped = {
    unsafe: (...args: Parameters<Sql["unsafe"]>) => {
      n++;
      return tx.unsafe(...args);
    },
  };
  return { tx: wrapped as unknown as Sql, count: () => n };
}

/** Adds the changes (default time T1), flushes once inside BEGIN/COMMIT. */
async function apply(
  dst: Sql,
  batch: TableBatch,
  changes: (Change | At)[],
): Promise<FlushResult & { statements: number }> {
  for (const c of changes) {
    if (Array.isArray(c)) batch.add(c[0], c[1]);
    else batch.add(c, T1);
  }
  const conn = await dst.reserve();
  try {
    await conn.unsafe("BEGIN");
    const { tx, count } = counting(conn as unknown as Sql);
    const result = await batch.flush(tx);
    await conn.unsafe("COMMIT");
    assertEquals(batch.size, 0);
    return { ...result, statements: count() };
  } catch (e) {
    await conn.unsafe("ROLLBACK").catch(() => {});
    throw e;
  } finally {
    conn.release();
  }
}

/** Rows of a query as arrays of text (NULL as null). */
async function rows(dst: Sql, query: string): Promise<(string | null)[][]> {
  const res = await dst.unsafe(query).values();
  return res.map((r) => (r as unknown[]).map((v) => (v === null ? null : String(v))));
}

/** Anomalies as `kind:key,key` strings, sorted. */
function anomalies(r: FlushResult): string[] {
  return r.anomalies.map((a) => `${a.kind}:${a.key.join(",")}`).sort();
}

/** A fresh database with a kvsz-style client (session settings, text values). */
async function fresh(c: TestCluster, ddl: string): Promise<Sql> {
  const dst = connect(c.url(await c.createDatabase("apply")), { max: 2 });
  await dst.unsafe(ddl);
  return dst;
}

const HIST_COLS = "kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean";

clusterSuite("set-based table writer", {
  "clone with sid: insert, update, delete, truncate; two sids stay apart": async (c) => {
    const dst = await fresh(
      c,
      `CREATE TABLE t (sid text, id int, name text, v numeric(10,2), PRIMARY KEY (sid, id))`,
    );
    const spec = {
      table: "t",
      cols: [["id", "integer"], ["name", "text"], ["v", "numeric(10,2)"]] as [string, string][],
      key: ["id"],
    };
    const a = route({ ...spec, sid: "a" });
    const b = route({ ...spec, sid: "b" });
    const ba = new TableBatch(a);
    const bb = new TableBatch(b);
    let r = await apply(dst, ba, [
      ins(a, "1", "one", "1.5"),
      ins(a, "2", "two", "2"),
      ins(a, "3", "three", "3"),
    ]);
    assertEquals(r.rowsWritten, 3);
    assertEquals(r.ops, { insert: 3, update: 0, delete: 0, truncate: 0 });
    await apply(dst, bb, [ins(b, "1", "b-one", "10"), ins(b, "2", "b-two", "20")]);
    r = await apply(dst, ba, [
      upd(a, ["1", "ONE", "1.25"]),
      del(a, { key: ["2", null, null] }),
      upd(a, ["3", "x", "3"]),
      upd(a, ["3", "THREE", "33.333"]),
      ins(a, "4", null, null),
    ]);
    assertEquals(anomalies(r), []);
    assertEquals(r.ops, { insert: 1, update: 3, delete: 1, truncate: 0 });
    assertEquals(await rows(dst, `SELECT sid, id, name, v FROM t ORDER BY sid, id`), [
      ["a", "1", "ONE", "1.25"],
      ["a", "3", "THREE", "33.33"],
      ["a", "4", null, null],
      ["b", "1", "b-one", "10.00"],
      ["b", "2", "b-two", "20.00"],
    ]);
    // TRUNCATE of source a deletes a's rows only; later changes of the batch apply after it.
    r = await apply(dst, ba, [upd(a, ["1", "gone", "0"]), trunc(a), ins(a, "9", "nine", "9")]);
    assertEquals(anomalies(r), []);
    assertEquals(await rows(dst, `SELECT sid, id, name FROM t ORDER BY sid, id`), [
      ["a", "9", "nine"],
      ["b", "1", "b-one"],
      ["b", "2", "b-two"],
    ]);
    await dst.end();
  },

  "clone without sid, unique index or writable identity; TRUNCATE empties the target": async (
    c,
  ) => {
    const dst = await fresh(
      c,
      `CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY, body text)`,
    );
    const r0 = route({
      table: "t",
      cols: [["id", "bigint"], ["body", "text"]],
      key: ["id"],
      hasSid: false,
    });
    const b = new TableBatch(r0);
    await apply(dst, b, [
      ins(r0, "1", "a"),
      ins(r0, "2", "b"),
      upd(r0, ["2", "B"]),
      ins(r0, "3", "c"),
    ]);
    assertEquals(await rows(dst, `SELECT id, body FROM t ORDER BY id`), [["1", "a"], ["2", "B"], [
      "3",
      "c",
    ]]);
    const r = await apply(dst, b, [del(r0, { key: ["1", null] }), trunc(r0), ins(r0, "5", "e")]);
    assertEquals(r.ops.truncate, 1);
    assertEquals(await rows(dst, `SELECT id, body FROM t ORDER BY id`), [["5", "e"]]);
    await dst.end();
  },

  "append: DELETE and TRUNCATE are ignored": async (c) => {
    const dst = await fresh(c, `CREATE TABLE ev (id bigint PRIMARY KEY, body text)`);
    const r0 = route({
      table: "ev",
      cols: [["id", "bigint"], ["body", "text"]],
      key: ["id"],
      mode: "append",
      hasSid: false,
    });
    const b = new TableBatch(r0);
    await apply(dst, b, [ins(r0, "1", "a"), ins(r0, "2", "b")]);
    const r = await apply(dst, b, [
      upd(r0, ["2", "B"]),
      del(r0, { key: ["1", null] }),
      trunc(r0),
      ins(r0, "3", "c"),
    ]);
    assertEquals(r.ops, { insert: 1, update: 1, delete: 0, truncate: 0 });
    assertEquals(anomalies(r), []);
    assertEquals(await rows(dst, `SELECT id, body FROM ev ORDER BY id`), [["1", "a"], ["2", "B"], [
      "3",
      "c",
    ]]);
    await dst.end();
  },

  "history: every version kept with exact start, end and deleted": async (c) => {
    // A unique index on the current rows proves closes run before inserts.
    const dst = await fresh(
      c,
      `CREATE TABLE h (sid text, id int, salary int, ${HIST_COLS});
       CREATE UNIQUE INDEX h_current ON h (sid, id) WHERE kvsz_end = '9999-01-01'`,
    );
    const r0 = route({
      table: "h",
      cols: [["id", "integer"], ["salary", "integer"]],
      key: ["id"],
      mode: "history",
    });
    const b = new TableBatch(r0);
    let r = await apply(dst, b, [[ins(r0, "1", "1000"), T1], [ins(r0, "2", "50"), T1]]);
    assertEquals(r.rowsWritten, 2);
    r = await apply(dst, b, [
      [upd(r0, ["1", "1200"]), T2],
      [upd(r0, ["1", "2000"]), T3],
      [del(r0, { key: ["2", null] }), T2],
      [ins(r0, "2", "60"), T3],
      [upd(r0, ["2", "70"]), T3],
    ]);
    assertEquals(anomalies(r), []);
    r = await apply(dst, b, [[del(r0, { key: ["1", null] }), T4]]);
    assertEquals(r.rowsWritten, 1);
    const q =
      `SELECT id, salary, kvsz_start, kvsz_end, kvsz_deleted FROM h ORDER BY id, kvsz_start, kvsz_end`;
    assertEquals(await rows(dst, q), [
      ["1", "1000", FIRST, ts(T2), "false"],
      ["1", "1200", ts(T2), ts(T3), "false"],
      ["1", "2000", ts(T3), ts(T4), "true"],
      ["2", "50", FIRST, ts(T2), "true"],
      ["2", "60", ts(T3), ts(T3), "false"],
      ["2", "70", ts(T3), OPEN, "false"],
    ]);
    // A key re-inserted after a delete in an earlier batch starts at its commit time.
    r = await apply(dst, b, [[ins(r0, "1", "3000"), T4], [ins(r0, "3", "1"), T4]]);
    assertEquals(anomalies(r), []);
    assertEquals(
      await rows(
        dst,
        `SELECT id, salary, kvsz_start, kvsz_end FROM h WHERE kvsz_end = '9999-01-01' ORDER BY id`,
      ),
      [["1", "3000", ts(T4), OPEN], ["2", "70", ts(T3), OPEN], ["3", "1", FIRST, OPEN]],
    );
    // TRUNCATE closes every current row of the sid as deleted.
    await dst.unsafe(`INSERT INTO h VALUES ('other', 1, 5, '1900-01-01', '9999-01-01', false)`);
    r = await apply(dst, b, [[trunc(r0), T4]]);
    assertEquals(r.rowsWritten, 3);
    assertEquals(
      await rows(dst, `SELECT sid, id FROM h WHERE kvsz_end = '9999-01-01' ORDER BY id`),
      [["other", "1"]],
    );
    // Closed at T4 as deleted: the three current rows and the version deleted before.
    assertEquals(
      (await rows(dst, `SELECT count(*) FROM h WHERE kvsz_end = '${T4}' AND kvsz_deleted`))[0],
      ["4"],
    );
    await dst.end();
  },

  "a unique value freed by a DELETE is taken by an INSERT or UPDATE of the same batch": async (
    c,
  ) => {
    const dst = await fresh(
      c,
      `CREATE TABLE u (id int PRIMARY KEY, email text UNIQUE)`,
    );
    const r0 = route({
      table: "u",
      cols: [["id", "integer"], ["email", "text"]],
      key: ["id"],
      hasSid: false,
    });
    const b = new TableBatch(r0);
    for (let i = 0; i < 3; i++) {
      await dst.unsafe(`TRUNCATE u; INSERT INTO u VALUES (1, 'x'), (2, 'y'), (4, 'w')`);
      const r = await apply(dst, b, [
        del(r0, { key: ["1", null] }),
        ins(r0, "3", "x"), // takes the email of deleted row 1
        del(r0, { key: ["2", null] }),
        upd(r0, ["4", "y"]), // takes the email of deleted row 2
      ]);
      assertEquals(anomalies(r), []);
      assertEquals(await rows(dst, `SELECT id, email FROM u ORDER BY id`), [["3", "x"], [
        "4",
        "y",
      ]]);
    }
    await dst.end();
  },

  "clone anomalies converge and are reported with their key": async (c) => {
    const dst = await fresh(
      c,
      `CREATE TABLE t (sid text, a int, b text, v text, PRIMARY KEY (sid, a, b))`,
    );
    const r0 = route({
      table: "t",
      cols: [["a", "integer"], ["b", "text"], ["v", "text"]],
      key: ["a", "b"],
    });
    await dst.unsafe(`INSERT INTO t VALUES ('1', 1, 'x', 'old'), ('1', 5, 'x', 'old5')`);
    const b = new TableBatch(r0);
    const r = await apply(dst, b, [
      ins(r0, "1", "x", "new"), // exists: updated
      upd(r0, ["2", "y", "upd"]), // missing: inserted
      del(r0, { key: ["3", "z", null] }), // missing: nothing
      ins(r0, "4", "w", "ok"), // fine
      ins(r0, "5", "x", "tmp"), // exists, then deleted in the same batch
      del(r0, { key: ["5", "x", null] }),
      upd(r0, ["6", "q", "u1"]), // missing, then deleted: nothing left
      del(r0, { key: ["6", "q", null] }),
    ]);
    assertEquals(anomalies(r), [
      "delete_missing:3,z",
      "insert_existing:1,x",
      "insert_existing:5,x",
      "update_missing:2,y",
      "update_missing:6,q",
    ]);
    assert(r.anomalies.every((a) => a.route === r0));
    assertEquals(await rows(dst, `SELECT a, b, v FROM t ORDER BY a`), [
      ["1", "x", "new"],
      ["2", "y", "upd"],
      ["4", "w", "ok"],
    ]);
    await dst.end();
  },

  "history anomalies converge and are reported": async (c) => {
    const dst = await fresh(c, `CREATE TABLE h (id int, v text, ${HIST_COLS})`);
    const r0 = route({
      table: "h",
      cols: [["id", "integer"], ["v", "text"]],
      key: ["id"],
      mode: "history",
      hasSid: false,
    });
    await dst.unsafe(`INSERT INTO h VALUES (1, 'old', '1900-01-01', '9999-01-01', false)`);
    const b = new TableBatch(r0);
    const r = await apply(dst, b, [
      [ins(r0, "1", "new"), T2], // current exists: closed at T2, version from T2
      [upd(r0, ["2", "u"]), T2], // missing: version from T2
      [del(r0, { key: ["3", null] }), T2], // missing: nothing
    ]);
    assertEquals(anomalies(r), ["delete_missing:3", "insert_existing:1", "update_missing:2"]);
    assertEquals(
      await rows(
        dst,
        `SELECT id, v, kvsz_start, kvsz_end, kvsz_deleted FROM h ORDER BY id, kvsz_start`,
      ),
      [
        ["1", "old", FIRST, ts(T2), "false"],
        ["1", "new", ts(T2), OPEN, "false"],
        ["2", "u", ts(T2), OPEN, "false"],
      ],
    );
    await dst.end();
  },

  "unchanged TOAST: clone keeps the destination value, history carries it": async (c) => {
    const big = "x".repeat(20_000) + "end";
    const big2 = "y".repeat(20_000);
    const dst = await fresh(
      c,
      `CREATE TABLE t (id int PRIMARY KEY, n int, doc text, j jsonb);
       CREATE TABLE h (id int, n int, doc text, ${HIST_COLS})`,
    );
    const rc = route({
      table: "t",
      cols: [["id", "integer"], ["n", "integer"], ["doc", "text"], ["j", "jsonb"]],
      key: ["id"],
      hasSid: false,
    });
    const bc = new TableBatch(rc);
    await apply(dst, bc, [
      ins(rc, "1", "0", big, `{"a": "${big2}"}`),
      ins(rc, "2", "0", big2, null),
    ]);
    let r = await apply(dst, bc, [
      upd(rc, ["1", "1", undefined, undefined]),
      upd(rc, ["1", "2", undefined, undefined]),
      upd(rc, ["2", "1", undefined, `{"b": 1}`]),
      upd(rc, ["3", "1", undefined, undefined]), // missing: inserted with NULL doc
      ins(rc, "4", "0", "fresh", null),
      upd(rc, ["4", "1", undefined, undefined]), // inserted in this batch: keeps "fresh"
    ]);
    assertEquals(anomalies(r), ["update_missing:3"]);
    assertEquals(
      await rows(
        dst,
        `SELECT id, n, doc = '${big}', doc = '${big2}', doc, j->>'b' FROM t WHERE id <> 1 ORDER BY id`,
      ),
      [["2", "1", "false", "true", big2, "1"], ["3", "1", null, null, null, null], [
        "4",
        "1",
        "false",
        "false",
        "fresh",
        null,
      ]],
    );
    assertEquals(
      await rows(dst, `SELECT n, doc = '${big}', j->>'a' = '${big2}' FROM t WHERE id = 1`),
      [["2", "true", "true"]],
    );

    const rh = route({
      table: "h",
      cols: [["id", "integer"], ["n", "integer"], ["doc", "text"]],
      key: ["id"],
      mode: "history",
      hasSid: false,
    });
    const bh = new TableBatch(rh);
    await apply(dst, bh, [[ins(rh, "1", "0", big), T1]]);
    r = await apply(dst, bh, [
      [upd(rh, ["1", "1", undefined]), T2], // carried from the closed destination row
      [upd(rh, ["1", "2", undefined]), T3], // carried from the previous version in the batch
    ]);
    assertEquals(anomalies(r), []);
    // Key change carries the value from the closed row as well.
    r = await apply(dst, bh, [[upd(rh, ["9", "3", undefined], { key: ["1", null, null] }), T4]]);
    assertEquals(anomalies(r), []);
    assertEquals(
      await rows(
        dst,
        `SELECT id, n, doc = '${big}', kvsz_start, kvsz_end FROM h ORDER BY kvsz_start, id`,
      ),
      [
        ["1", "0", "true", FIRST, ts(T2)],
        ["1", "1", "true", ts(T2), ts(T3)],
        ["1", "2", "true", ts(T3), ts(T4)],
        ["9", "3", "true", ts(T4), OPEN],
      ],
    );
    await dst.end();
  },

  "keyless FULL: duplicates, each UPDATE/DELETE touches exactly one row": async (c) => {
    const dst = await fresh(c, `CREATE TABLE k (sid text, a int, b text)`);
    const r0 = route({ table: "k", cols: [["a", "integer"], ["b", "text"]], keyless: true });
    const b = new TableBatch(r0);
    let r = await apply(dst, b, [
      ins(r0, "1", "x"),
      ins(r0, "1", "x"),
      ins(r0, "1", "x"),
      ins(r0, "2", null),
    ]);
    assertEquals(r.statements, 1);
    r = await apply(dst, b, [
      upd(r0, ["1", "y"], { old: ["1", "x"] }),
      del(r0, { old: ["1", "x"] }),
      upd(r0, ["2", "z"], { old: ["2", null] }), // NULL compares equal
      ins(r0, "3", "w"),
      del(r0, { old: ["3", "w"] }), // inserted just before: order kept
      del(r0, { old: ["8", "nope"] }),
      upd(r0, ["7", "new"], { old: ["7", "gone"] }),
    ]);
    assertEquals(anomalies(r), ["delete_missing:8,nope", "update_missing:7,gone"]);
    assertEquals(await rows(dst, `SELECT a, b FROM k ORDER BY a, b`), [
      ["1", "x"],
      ["1", "y"],
      ["2", "z"],
      ["7", "new"],
    ]);
    await dst.end();
  },

  "keyless compare works for json, xml, point, box, polygon, jsonb, bool, bytea": async (c) => {
    const dst = await fresh(
      c,
      `CREATE TABLE g (j json, x xml, p point, bx box, pg polygon, f float8, jb jsonb, ok bool,
                       by bytea, doc text)`,
    );
    const cols: [string, string][] = [
      ["j", "json"],
      ["x", "xml"],
      ["p", "point"],
      ["bx", "box"],
      ["pg", "polygon"],
      ["f", "double precision"],
      ["jb", "jsonb"],
      ["ok", "boolean"],
      ["by", "bytea"],
      ["doc", "text"],
    ];
    const r0 = route({ table: "g", cols, keyless: true, hasSid: false });
    const b = new TableBatch(r0);
    const row1 = [`{"a": [1, 2]}`, "<r>1</r>", "(1,2)", "(2,2),(0,0)", "((0,0),(1,1),(1,0))"];
    row1.push("0.1", `{"k": "v"}`, "t", "\\x00ff", "d");
    const row2 = [`{"a": [3]}`, "<r>2</r>", "(3,4)", "(5,5),(1,1)", "((0,0),(2,2),(2,0))"];
    row2.push("1e+100", `{"k": [1]}`, "f", "\\x", "e");
    await apply(dst, b, [ins(r0, ...row1), ins(r0, ...row2), ins(r0, ...row2)]);
    const r = await apply(dst, b, [
      // Unchanged TOAST in the old row is skipped in the compare and kept in the row.
      upd(r0, [...row1.slice(0, 9), undefined], { old: [...row1.slice(0, 9), undefined] }),
      upd(r0, [...row2.slice(0, 5), "2.5", `{"k": 2}`, "t", "\\x01", undefined], { old: row2 }),
      del(r0, { old: row2 }),
    ]);
    assertEquals(anomalies(r), []);
    assertEquals(
      await rows(
        dst,
        `SELECT j::text, p::text, f::text, jb::text, ok, by::text, doc FROM g ORDER BY f`,
      ),
      [
        [`{"a": [1, 2]}`, "(1,2)", "0.1", `{"k": "v"}`, "true", "\\x00ff", "d"],
        [`{"a": [3]}`, "(3,4)", "2.5", `{"k": 2}`, "true", "\\x01", "e"],
      ],
    );
    await dst.end();
  },

  "keyless history: one current row closed per UPDATE/DELETE, TOAST carried": async (c) => {
    const dst = await fresh(c, `CREATE TABLE kh (sid text, a int, doc text, ${HIST_COLS})`);
    const r0 = route({
      table: "kh",
      cols: [["a", "integer"], ["doc", "text"]],
      keyless: true,
      mode: "history",
    });
    const b = new TableBatch(r0);
    await apply(dst, b, [[ins(r0, "1", "big"), T1], [ins(r0, "1", "big"), T1]]);
    const r = await apply(dst, b, [
      [upd(r0, ["2", undefined], { old: ["1", undefined] }), T2],
      [del(r0, { old: ["1", "big"] }), T3],
      [del(r0, { old: ["1", "big"] }), T3], // none left
    ]);
    assertEquals(anomalies(r), ["delete_missing:1,big"]);
    assertEquals(
      await rows(
        dst,
        `SELECT a, doc, kvsz_start, kvsz_end, kvsz_deleted FROM kh ORDER BY kvsz_start, kvsz_end`,
      ),
      [
        ["1", "big", FIRST, ts(T2), "false"],
        ["1", "big", FIRST, ts(T3), "true"],
        ["2", "big", ts(T2), OPEN, "false"],
      ],
    );
    await dst.end();
  },

  "key change in history: old key closed, new version from T, clash and missing converge": async (
    c,
  ) => {
    const dst = await fresh(
      c,
      `CREATE TABLE h (sid text, id int, v jsonb, ${HIST_COLS});
       CREATE UNIQUE INDEX h_current ON h (sid, id) WHERE kvsz_end = '9999-01-01'`,
    );
    const r0 = route({
      table: "h",
      cols: [["id", "integer"], ["v", "jsonb"]],
      key: ["id"],
      mode: "history",
    });
    const b = new TableBatch(r0);
    await apply(dst, b, [[ins(r0, "1", `{"n": 1}`), T1], [ins(r0, "5", `{"n": 5}`), T1]]);
    const r = await apply(dst, b, [
      [upd(r0, ["2", `{"n": 2}`], { key: ["1", null] }), T2],
      [upd(r0, ["5", `{"n": 55}`], { key: ["2", null] }), T3], // 5 is current: closed first
      [upd(r0, ["7", `{"n": 7}`], { key: ["6", null] }), T3], // 6 missing
    ]);
    assertEquals(anomalies(r), ["insert_existing:5", "update_missing:6"]);
    assertEquals(
      await rows(
        dst,
        `SELECT id, v::text, kvsz_start, kvsz_end, kvsz_deleted FROM h ORDER BY id, kvsz_start`,
      ),
      [
        ["1", `{"n": 1}`, FIRST, ts(T2), "false"],
        ["2", `{"n": 2}`, ts(T2), ts(T3), "false"],
        ["5", `{"n": 5}`, FIRST, ts(T3), "false"],
        ["5", `{"n": 55}`, ts(T3), OPEN, "false"],
        ["7", `{"n": 7}`, ts(T3), OPEN, "false"],
      ],
    );
    await dst.end();
  },

  "new keys take one plain INSERT under a unique key; a key already there falls back and converges":
    async (c) => {
      const dst = await fresh(
        c,
        `CREATE TABLE t (sid text, id int, v text, PRIMARY KEY (sid, id));
         INSERT INTO t VALUES ('1', 5, 'old'), ('1', 7, 'seven')`,
      );
      const r0 = route({
        table: "t",
        cols: [["id", "integer"], ["v", "text"]],
        key: ["id"],
        uniqueKeys: [["sid", "id"]],
      });
      const b = new TableBatch(r0);
      // Key 7 takes the general statement (an update); 1 and 2 the plain INSERT, in a savepoint.
      let r = await apply(dst, b, [
        ins(r0, "1", "one"),
        upd(r0, ["7", "SEVEN"]),
        ins(r0, "2", "two"),
      ]);
      assertEquals(anomalies(r), []);
      assertEquals(r.rowsWritten, 3);
      const [{ n }] = await dst.unsafe(
        `SELECT count(DISTINCT xmin::text)::int AS n FROM t WHERE id IN (1, 7)`,
      );
      assertEquals(n, 2, "new keys are written by their own (sub)transaction");
      // 5 exists: the INSERT fails, the savepoint is rolled back, the general statement converges.
      r = await apply(dst, b, [
        upd(r0, ["8", "eight"]), // missing: the plain UPDATE finds 0 of 1, the fallback inserts it
        ins(r0, "3", "three"),
        ins(r0, "5", "five"),
        ins(r0, "6", "six"),
        del(r0, { key: ["6", null] }),
      ]);
      assertEquals(anomalies(r), ["insert_existing:5", "update_missing:8"]);
      assertEquals(await rows(dst, `SELECT id, v FROM t ORDER BY id`), [
        ["1", "one"],
        ["2", "two"],
        ["3", "three"],
        ["5", "five"],
        ["7", "SEVEN"],
        ["8", "eight"],
      ]);
      await dst.end();
    },

  "key change: clone updates in place, clashes and missing rows converge": async (c) => {
    const dst = await fresh(c, `CREATE TABLE t (sid text, id int, v text, PRIMARY KEY (sid, id))`);
    const r0 = route({ table: "t", cols: [["id", "integer"], ["v", "text"]], key: ["id"] });
    const b = new TableBatch(r0);
    await apply(dst, b, [ins(r0, "1", "one"), ins(r0, "2", "two"), ins(r0, "5", "five")]);
    const r = await apply(dst, b, [
      upd(r0, ["1", "ONE"]),
      upd(r0, ["10", undefined], { key: ["1", null] }), // keeps ONE
      upd(r0, ["11", "eleven"], { key: ["10", null] }),
      upd(r0, ["5", "moved"], { key: ["2", null] }), // 5 exists: replaced
      upd(r0, ["30", "x"], { key: ["3", null] }), // 3 missing: inserted
      upd(r0, ["11", "ELEVEN"]),
      // FULL identity with a key: the old row equal in key is a plain update.
      upd(r0, ["30", "y"], { old: ["30", "x"] }),
    ]);
    assertEquals(anomalies(r), ["insert_existing:5", "update_missing:3"]);
    assertEquals(await rows(dst, `SELECT id, v FROM t ORDER BY id`), [["5", "moved"], [
      "11",
      "ELEVEN",
    ], ["30", "y"]]);
    await dst.end();
  },

  "array parameters: porsager (fetch_types off) cannot send JS arrays, textArray can": async (
    c,
  ) => {
    const dst = await fresh(c, `SELECT 1`);
    const tricky = [
      'a"b',
      "c\\d",
      "e,f",
      "{g}",
      "h\ni",
      "",
      null,
      "NULL",
      "ünï😀",
      " sp ",
      "\\x0a",
    ];
    // connect() runs with fetch_types: false, so porsager sends a JS array as `'' + array`.
    await assertModule.rejects(
      dst.unsafe(`SELECT x FROM unnest($1::text[]) x`, [tricky as never], { prepare: true }),
      /malformed array literal/,
    );
    const res = await dst.unsafe(
      `SELECT x, x IS NULL AS isnull FROM unnest($1::text[]) WITH ORDINALITY AS u(x, n) ORDER BY n`,
      [textArray(tricky)],
      { prepare: true },
    );
    assertEquals(res.map((r) => r.x), tricky);
    await dst.end();
  },

  "text values round-trip: quotes, backslashes, commas, braces, newlines, empty, NULL, unicode":
    async (c) => {
      const dst = await fresh(
        c,
        `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
       CREATE TYPE pair AS (x int, y text);
       CREATE TABLE t (id int PRIMARY KEY, s text, arr text[], ia int[], m mood, cp pair, bin bytea,
                       money money, n numeric(10,2), ts timestamptz, iv interval, js jsonb, vc varchar(5))`,
      );
      const cols: [string, string][] = [
        ["id", "integer"],
        ["s", "text"],
        ["arr", "text[]"],
        ["ia", "integer[]"],
        ["m", "mood"],
        ["cp", "pair"],
        ["bin", "bytea"],
        ["money", "money"],
        ["n", "numeric(10,2)"],
        ["ts", "timestamp with time zone"],
        ["iv", "interval"],
        ["js", "jsonb"],
        ["vc", "character varying(5)"],
      ];
      const r0 = route({ table: "t", cols, key: ["id"], hasSid: false });
      const b = new TableBatch(r0);
      const strings = [
        'a"b',
        "c\\d",
        "e,f",
        "{g}",
        "h\ni",
        "",
        "NULL",
        "ünï😀",
        " sp ",
        "'q'",
        "\t",
        "\\x00",
      ];
      const changes = strings.map((s, i) =>
        ins(
          r0,
          String(i),
          s,
          `{"${s.replace(/[\\"]/g, "\\$&")}",NULL}`,
          "{1,NULL,3}",
          "happy",
          `(1,"${s.replace(/[\\"]/g, "\\$&")}")`,
          "\\xdeadbeef00",
          "$1,234.50",
          "-12.34",
          "2024-01-01 10:00:00.123456+00",
          "1 day 02:03:04.5",
          `{"k": "${s.replace(/[\\"]/g, "\\$&").replace(/\n/g, "\\n").replace(/\t/g, "\\t")}"}`,
          "abc",
        )
      );
      changes.push(
        ins(r0, "100", null, null, null, null, null, null, null, null, null, null, null, null),
      );
      await apply(dst, b, changes);
      const got = await rows(
        dst,
        `SELECT id, s, arr[1], arr[2] IS NULL, ia::text, m::text, (cp).y, bin::text, money::text, n::text, ts::text, iv::text, js->>'k', vc FROM t ORDER BY id`,
      );
      const want: (string | null)[][] = strings.map((s, i) => [
        String(i),
        s,
        s,
        "true",
        "{1,NULL,3}",
        "happy",
        s,
        "\\xdeadbeef00",
        "$1,234.50",
        "-12.34",
        "2024-01-01 10:00:00.123456+00",
        "1 day 02:03:04.5",
        s,
        "abc",
      ]);
      want.push(["100", null, null, "true", ...new Array<null>(10).fill(null)]);
      assertEquals(got, want);
      // The same values as update keys and values (NULL values included).
      const r = await apply(
        dst,
        b,
        strings.map((s, i) =>
          upd(r0, [
            String(i),
            s + s,
            null,
            null,
            "ok",
            null,
            null,
            null,
            null,
            null,
            null,
            null,
            null,
          ])
        ),
      );
      assertEquals(anomalies(r), []);
      assertEquals(
        await rows(dst, `SELECT s, m::text, arr FROM t WHERE id < 100 ORDER BY id`),
        strings.map((s) => [s + s, "ok", null]),
      );
      await dst.end();
    },

  "50,000 changes in a few statements, same result as applying them one by one": async (c) => {
    const dst = await fresh(
      c,
      `CREATE TABLE t (sid text, id int, name text, n int, PRIMARY KEY (sid, id));
       INSERT INTO t SELECT '1', g, 'seed' || g, 0 FROM generate_series(1, 20000) g`,
    );
    const r0 = route({
      table: "t",
      cols: [["id", "integer"], ["name", "text"], ["n", "integer"]],
      key: ["id"],
    });
    const model = new Map<number, [string, string]>();
    for (let i = 1; i <= 20000; i++) model.set(i, [`seed${i}`, "0"]);
    const changes: Change[] = [];
    const rnd = random(42);
    for (let k = 0; k < 50_000; k++) {
      const id = 1 + rnd(30000);
      const have = model.has(id);
      const op = rnd(10);
      if (!have) {
        model.set(id, [`ins${k}`, String(k)]);
        changes.push(ins(r0, String(id), `ins${k}`, String(k)));
      } else if (op < 2) {
        model.delete(id);
        changes.push(del(r0, { key: [String(id), null, null] }));
      } else {
        const name = op < 5 ? undefined : `upd${k}`;
        const prev = model.get(id)!;
        model.set(id, [name ?? prev[0], String(k)]);
        changes.push(upd(r0, [String(id), name, String(k)]));
      }
    }
    const b = new TableBatch(r0);
    const r = await apply(dst, b, changes);
    assertEquals(anomalies(r), []);
    assert(r.statements <= 4, `statements: ${r.statements}`);
    const got = await rows(dst, `SELECT id, name, n FROM t ORDER BY id`);
    const want = [...model.entries()].sort((x, y) => x[0] - y[0]).map((
      [id, [n, v]],
    ) => [String(id), n, v]);
    assertEquals(got, want);
    await dst.end();
  },

  "pgbench_history-like inserts into a keyless table: one multi-row insert": async (c) => {
    const dst = await fresh(
      c,
      `CREATE TABLE ph (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))`,
    );
    const r0 = route({
      table: "ph",
      cols: [["tid", "integer"], ["bid", "integer"], ["aid", "integer"], ["delta", "integer"], [
        "mtime",
        "timestamp without time zone",
      ], ["filler", "character(22)"]],
      keyless: true,
      hasSid: false,
    });
    const b = new TableBatch(r0);
    const changes = Array.from(
      { length: 5000 },
      (_, i) => ins(r0, "1", "1", String(i), "-5", "2024-01-01 00:00:00", null),
    );
    const r = await apply(dst, b, changes);
    assertEquals(r.statements, 1);
    assertEquals(r.rowsWritten, 5000);
    assertEquals(await rows(dst, `SELECT count(*), sum(aid) FROM ph`), [[
      "5000",
      String((4999 * 5000) / 2),
    ]]);
    await dst.end();
  },

  "flush mid-transaction, then more changes to the same keys": async (c) => {
    const dst = await fresh(
      c,
      `CREATE TABLE t (sid text, id int, v text, PRIMARY KEY (sid, id));
       CREATE TABLE h (sid text, id int, v text, ${HIST_COLS})`,
    );
    const rc = route({ table: "t", cols: [["id", "integer"], ["v", "text"]], key: ["id"] });
    const rh = route({
      table: "h",
      cols: [["id", "integer"], ["v", "text"]],
      key: ["id"],
      mode: "history",
    });
    const bc = new TableBatch(rc);
    const bh = new TableBatch(rh);
    const tx = await dst.reserve();
    await tx.unsafe("BEGIN");
    bc.add(ins(rc, "1", "a"), T1);
    bc.add(ins(rc, "2", "b"), T1);
    bh.add(ins(rh, "1", "a"), T1);
    bh.add(upd(rh, ["1", "b"]), T2);
    const big = "z".repeat(10_000);
    bh.add(ins(rh, "2", big), T2);
    let r = await bc.flush(tx as unknown as Sql);
    assertEquals(r.rowsWritten, 2);
    r = await bh.flush(tx as unknown as Sql);
    assertEquals(r.rowsWritten, 3);
    assertEquals(bc.size + bh.size, 0);
    bc.add(upd(rc, ["1", "A"]), T2);
    bc.add(del(rc, { key: ["2", null] }), T2);
    bc.add(ins(rc, "2", "B"), T3);
    bh.add(upd(rh, ["1", "c"]), T3);
    bh.add(upd(rh, ["2", undefined]), T3);
    bh.add(del(rh, { key: ["1", null] }), T4);
    const rc2 = await bc.flush(tx as unknown as Sql);
    const rh2 = await bh.flush(tx as unknown as Sql);
    assertEquals([...rc2.anomalies, ...rh2.anomalies], []);
    await tx.unsafe("COMMIT");
    tx.release();
    assertEquals(await rows(dst, `SELECT id, v FROM t ORDER BY id`), [["1", "A"], ["2", "B"]]);
    assertEquals(
      await rows(
        dst,
        `SELECT id, left(v, 3), kvsz_start, kvsz_end, kvsz_deleted FROM h ORDER BY id, kvsz_start`,
      ),
      [
        ["1", "a", FIRST, ts(T2), "false"],
        ["1", "b", ts(T2), ts(T3), "false"],
        ["1", "c", ts(T3), ts(T4), "true"],
        ["2", "zzz", FIRST, ts(T3), "false"],
        ["2", "zzz", ts(T3), OPEN, "false"],
      ],
    );
    await dst.end();
  },

  "randomized: same rows and anomalies as a row-by-row model (keyed and keyless)": async (
    c,
  ) => {
    for (const mode of ["clone", "append", "history"] as const) {
      // KVSZ_APPLY_ROUNDS=50 for a longer soak.
      const rounds = Number(Deno.env.get("KVSZ_APPLY_ROUNDS") ?? 3);
      for (let round = 0; round < rounds; round++) {
        await randomizedRound(c, mode, 1000 * round + 7, false);
        // With a primary key, the plain UPDATE and INSERT paths (and their fallbacks) run.
        if (mode !== "history") await randomizedRound(c, mode, 1000 * round + 9, true);
        if (mode !== "append") await randomizedKeyless(c, mode, 1000 * round + 11);
      }
    }
  },
});

/**
 * Keyless (REPLICA IDENTITY FULL, no key) random changes over a few distinct
 * rows with many duplicates, checked against a multiset model after every flush.
 */
async function randomizedKeyless(c: TestCluster, mode: TableMode, seed: number): Promise<void> {
  const history = mode === "history";
  const dst = await fresh(
    c,
    `CREATE TABLE k (sid text, a int, j json${history ? `, ${HIST_COLS}` : ""})`,
  );
  const r0 = route({ table: "k", cols: [["a", "integer"], ["j", "json"]], keyless: true, mode });
  const rnd = random(seed);
  const OPEN_ISO = "9999-01-01T00:00:00.000000Z";
  type Row = { a: string; j: string | null; start: string; end: string; deleted: boolean };
  const model: Row[] = [];
  const expected: string[] = [];
  let got: string[] = [];
  const live = (a: string, j: string | null) =>
    model.find((r) => r.a === a && r.j === j && (!history || r.end === OPEN_ISO));
  const batch = new TableBatch(r0, { rows: 2 + rnd(4), bytes: 1 << 20 });
  const tx = await dst.reserve();
  await tx.unsafe("BEGIN");
  for (let txn = 0; txn < 40; txn++) {
    const at = new Date(Date.UTC(2024, 0, 1, 0, 0, txn)).toISOString().replace("Z", "000Z");
    for (let n = 1 + rnd(4); n > 0; n--) {
      const a = String(rnd(3));
      const j = rnd(3) === 0 ? null : `{"v": ${rnd(2)}}`;
      const op = rnd(10);
      const cur = live(a, j);
      if (op < 4) {
        batch.add(ins(r0, a, j), at);
        model.push({ a, j, start: "1900-01-01T00:00:00.000000Z", end: OPEN_ISO, deleted: false });
      } else if (op < 7) {
        const na = String(rnd(3));
        const nj = rnd(4) === 0 ? undefined : `{"v": ${rnd(2)}}`;
        batch.add(upd(r0, [na, nj], { old: [a, j] }), at);
        if (!cur) expected.push(`update_missing:${a},${j ?? ""}`);
        const row = {
          a: na,
          j: nj === undefined ? (cur?.j ?? null) : nj,
          start: at,
          end: OPEN_ISO,
          deleted: false,
        };
        if (history) {
          if (cur) cur.end = at;
          model.push(row);
        } else if (cur) Object.assign(cur, row);
        else model.push(row);
      } else {
        batch.add(del(r0, { old: [a, j] }), at);
        if (!cur) expected.push(`delete_missing:${a},${j ?? ""}`);
        else if (history) Object.assign(cur, { end: at, deleted: true });
        else model.splice(model.indexOf(cur), 1);
      }
    }
    if (rnd(6) === 0 || txn === 39) {
      got = got.concat(anomalies(await batch.flush(tx as unknown as Sql)));
      const label = `keyless ${mode} seed ${seed} txn ${txn}`;
      const cols = history ? "a, j::text, kvsz_start, kvsz_end, kvsz_deleted" : "a, j::text";
      const have = (await tx.unsafe(`SELECT ${cols} FROM k`).values()).map((r) =>
        (r as unknown[]).map((v) => (v === null ? "" : String(v))).join("|")
      ).sort();
      const text = (v: string) => ts(v.replace(".000000Z", "Z"));
      const want = model.map((m) =>
        [m.a, m.j ?? "", ...(history ? [text(m.start), text(m.end), String(m.deleted)] : [])].join(
          "|",
        )
      ).sort();
      assertEquals(have, want, label);
      assertEquals([...got].sort(), [...expected].sort(), label);
    }
  }
  await tx.unsafe("COMMIT");
  tx.release();
  await dst.end();
}

/** A seeded generator of integers in [0, n) (mulberry32). */
function random(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
}

/** One row of the model: key, values, and for history the version columns. */
interface ModelRow {
  id: string;
  a: string | null;
  b: string | null;
  start?: string;
  end?: string;
  deleted?: boolean;
}

/**
 * Random changes (small key space, unchanged TOAST, key changes, truncates)
 * on a destination that already diverges from the source, applied in several
 * flushes inside one transaction with tiny chunks, checked against a
 * row-by-row model of the documented semantics.
 */
async function randomizedRound(
  c: TestCluster,
  mode: TableMode,
  seed: number,
  primaryKey: boolean,
): Promise<void> {
  const history = mode === "history";
  const dst = await fresh(
    c,
    `CREATE TABLE t (sid text, id int, a text, b int${history ? `, ${HIST_COLS}` : ""}${
      primaryKey ? ", PRIMARY KEY (sid, id)" : ""
    })`,
  );
  const r0 = route({
    table: "t",
    cols: [["id", "integer"], ["a", "text"], ["b", "integer"]],
    key: ["id"],
    mode,
    uniqueKeys: primaryKey ? [["sid", "id"]] : [],
  });
  const rnd = random(seed);
  const model: ModelRow[] = [];
  const expected: string[] = [];
  const FIRST_ISO = "1900-01-01T00:00:00.000000Z";
  const OPEN_ISO = "9999-01-01T00:00:00.000000Z";
  const current = (id: string) =>
    model.find((r) => r.id === id && (!history || r.end === OPEN_ISO));
  const anomaly = (kind: string, id: string) => expected.push(`${kind}:${id}`);
  // Pre-existing destination rows the source knows nothing about.
  for (let id = 1; id <= 12; id++) {
    if (rnd(2) === 0) continue;
    const row: ModelRow = { id: String(id), a: `pre${id}`, b: String(id) };
    if (history) {
      Object.assign(row, {
        start: FIRST_ISO,
        end: rnd(3) === 0 ? "2000-01-01T00:00:00.000000Z" : OPEN_ISO,
        deleted: false,
      });
    }
    model.push(row);
  }
  for (const m of model) {
    await dst.unsafe(
      `INSERT INTO t VALUES ('1', $1, $2, $3${history ? ", $4, $5, false" : ""})`,
      (history ? [m.id, m.a, m.b, m.start, m.end] : [m.id, m.a, m.b]) as string[],
    );
  }
  const close = (r: ModelRow, at: string, deleted: boolean) => {
    r.end = at;
    r.deleted = deleted;
  };
  const put = (id: string, a: string | null, b: string | null, at: string, first: boolean) => {
    model.push(
      history
        ? { id, a, b, start: first ? FIRST_ISO : at, end: OPEN_ISO, deleted: false }
        : { id, a, b },
    );
  };
  const batch = new TableBatch(r0, { rows: 3 + rnd(5), bytes: 1 << 20 });
  const tx = await dst.reserve();
  await tx.unsafe("BEGIN");
  let got: string[] = [];
  // The destination (read inside the transaction) must equal the model after every flush.
  const text = (v: string | undefined) => (v === undefined ? "" : ts(v.replace(".000000Z", "Z")));
  const cols = history ? "id, a, b, kvsz_start, kvsz_end, kvsz_deleted" : "id, a, b";
  const check = async (label: string) => {
    const want = model.map((m) =>
      [m.id, m.a, m.b, ...(history ? [text(m.start), text(m.end), String(m.deleted)] : [])]
        .join("|").replace(/\.000000\+00/g, "+00")
    ).sort();
    const res = await tx.unsafe(`SELECT ${cols} FROM t`).values();
    const have = res.map((r) =>
      (r as unknown[]).map((v) => v === null ? "" : String(v)).join("|").replace(
        /\.000000\+00/g,
        "+00",
      )
    ).sort();
    assertEquals(have, want, label);
    assertEquals([...got].sort(), [...expected].sort(), label);
  };
  for (let txn = 0; txn < 60; txn++) {
    const at = new Date(Date.UTC(2024, 0, 1, 0, 0, txn)).toISOString().replace("Z", "000Z");
    for (let n = 1 + rnd(4); n > 0; n--) {
      const id = String(1 + rnd(15));
      const a = rnd(4) === 0 ? undefined : rnd(5) === 0 ? null : `v${txn}.${n}`;
      const b = String(rnd(100));
      const op = rnd(20);
      const cur = current(id);
      if (op < 6) {
        batch.add(ins(r0, id, a ?? null, b), at);
        if (cur) {
          anomaly("insert_existing", id);
          if (history) {
            close(cur, at, false);
            put(id, a ?? null, b, at, false);
          } else Object.assign(cur, { a: a ?? null, b });
        } else put(id, a ?? null, b, at, !model.some((r) => r.id === id));
      } else if (op < 13) {
        batch.add(upd(r0, [id, a, b]), at);
        if (cur) {
          if (history) {
            close(cur, at, false);
            put(id, a === undefined ? cur.a : a, b, at, false);
          } else Object.assign(cur, { a: a === undefined ? cur.a : a, b });
        } else {
          anomaly("update_missing", id);
          put(id, a ?? null, b, at, false);
        }
      } else if (op < 17) {
        batch.add(del(r0, { key: [id, null, null] }), at);
        if (mode === "append") continue;
        if (!cur) anomaly("delete_missing", id);
        else if (history) close(cur, at, true);
        else model.splice(model.indexOf(cur), 1);
      } else if (op < 19) {
        const to = String(1 + rnd(15));
        batch.add(upd(r0, [to, a, b], { key: [id, null, null] }), at);
        if (to === id) {
          // Not a key change: a plain update.
          if (cur) {
            if (history) {
              close(cur, at, false);
              put(id, a === undefined ? cur.a : a, b, at, false);
            } else Object.assign(cur, { a: a === undefined ? cur.a : a, b });
          } else {
            anomaly("update_missing", id);
            put(id, a ?? null, b, at, false);
          }
          continue;
        }
        const clash = current(to);
        if (clash) {
          anomaly("insert_existing", to);
          if (history) close(clash, at, false);
          else model.splice(model.indexOf(clash), 1);
        }
        if (cur) {
          if (history) {
            close(cur, at, false);
            put(to, a === undefined ? cur.a : a, b, at, false);
          } else Object.assign(cur, { id: to, a: a === undefined ? cur.a : a, b });
        } else {
          anomaly("update_missing", id);
          put(to, a ?? null, b, at, false);
        }
      } else if (op < 20 && rnd(10) === 0) {
        batch.add(trunc(r0), at);
        if (mode === "append") continue;
        if (history) {
          for (const r of model) if (r.end === OPEN_ISO) close(r, at, true);
        } else {
          model.splice(0);
        }
      }
    }
    if (rnd(8) === 0 || txn === 59) {
      const r = await batch.flush(tx as unknown as Sql);
      got = got.concat(anomalies(r));
      await check(`${mode} seed ${seed} txn ${txn}`);
    }
  }
  await tx.unsafe("COMMIT");
  tx.release();
  await dst.end();
}
