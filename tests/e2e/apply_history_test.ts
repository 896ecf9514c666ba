/**
 * The set-based table writer on a real server, history mode: every version kept with exact start,
 * end and deleted, anomalies converging, key changes. Changes are built by hand, flushed inside
 * BEGIN/COMMIT, and the destination rows checked exactly.
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
  T4,
  trunc,
  ts,
  upd,
} from "../support/apply_writer.ts";
import { TableBatch } from "../../lib/apply/table_batch.ts";

clusterSuite("set-based table writer: history", {
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
});
