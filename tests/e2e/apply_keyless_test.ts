/**
 * The set-based table writer on a real server, keyless tables (REPLICA IDENTITY FULL, no key):
 * duplicates, the compare for types without `=`, history, multi-row inserts. Changes are built by
 * hand, flushed inside BEGIN/COMMIT, and the destination rows checked exactly.
 */
import { clusterSuite } from "../support/cluster.ts";
import {
  anomalies,
  apply,
  assertEquals,
  del,
  FIRST,
  fresh,
  HIST_COLS,
  ins,
  OPEN,
  route,
  rows,
  T1,
  T2,
  T3,
  ts,
  upd,
} from "../support/apply_writer.ts";
import { TableBatch } from "../../lib/apply/table_batch.ts";

clusterSuite("set-based table writer: keyless", {
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
});
