/**
 * The set-based table writer on a real server, randomized: random changes (keyed and keyless,
 * every mode) give the same rows and anomalies as a row-by-row model of the documented semantics.
 */
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import {
  anomalies,
  assertEquals,
  del,
  fresh,
  HIST_COLS,
  ins,
  random,
  route,
  trunc,
  ts,
  upd,
} from "../support/apply_writer.ts";
import { TableBatch } from "../../lib/apply/table_batch.ts";
import type { TableMode } from "../../lib/config/types.ts";
import type { Sql } from "../../lib/pg/connect.ts";

clusterSuite("set-based table writer: randomized model", {
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
