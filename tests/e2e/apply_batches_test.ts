/**
 * The set-based table writer on a real server, batches: 50,000 changes in a few statements, many
 * keyless inserts in one, flushes in the middle of a transaction. Changes are built by hand,
 * flushed inside BEGIN/COMMIT, and the destination rows checked exactly.
 */
import { clusterSuite } from "../support/cluster.ts";
import {
  anomalies,
  apply,
  assert,
  assertEquals,
  del,
  FIRST,
  fresh,
  HIST_COLS,
  ins,
  OPEN,
  random,
  route,
  rows,
  T1,
  T2,
  T3,
  T4,
  ts,
  upd,
} from "../support/apply_writer.ts";
import { TableBatch } from "../../lib/apply/table_batch.ts";
import type { Sql } from "../../lib/pg/connect.ts";
import type { Change } from "../../lib/apply/types.ts";

clusterSuite("set-based table writer: batches", {
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
});
