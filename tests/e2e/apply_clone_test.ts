/**
 * The set-based table writer on a real server, clone and append modes: inserts, updates, deletes
 * and truncates with and without sid, anomalies converging, a unique value freed and taken in one
 * batch, the plain INSERT and UPDATE paths, key changes. Changes are built by hand, flushed inside
 * BEGIN/COMMIT, and the destination rows checked exactly.
 */
import { clusterSuite } from "../support/cluster.ts";
import {
  anomalies,
  apply,
  assert,
  assertEquals,
  del,
  fresh,
  ins,
  route,
  rows,
  trunc,
  upd,
} from "../support/apply_writer.ts";
import { TableBatch } from "../../lib/apply/table_batch.ts";

clusterSuite("set-based table writer: clone and append", {
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
});
