/**
 * `kvsz run` end to end on a real server: initial copy, then streaming of
 * inserts, updates, deletes and truncates in clone, append and history mode,
 * with and without `sid`; a clean stop on SIGTERM.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import type { Sql } from "../../lib/pg/connect.ts";

let cluster: TestCluster;

async function setup(
  c: TestCluster,
): Promise<{ src: Sql; dst: Sql; srcDb: string; dstDb: string }> {
  cluster = c;
  const srcDb = await cluster.createDatabase("src");
  const dstDb = await cluster.createDatabase("dst");
  return { src: cluster.sql(srcDb), dst: cluster.sql(dstDb), srcDb, dstDb };
}

function config(srcDb: string, dstDb: string, tables: Record<string, unknown>, sid = "1") {
  return {
    destination: { url: cluster.url(dstDb) },
    databases: [{ database: srcDb, urls: [{ url: cluster.url(srcDb), sid }], tables }],
    apply: { commit_interval_ms: 50 },
    metrics: { listen: "" },
    log: { level: "debug", format: "text" },
  };
}

clusterSuite("kvsz run: modes", {
  "clone with sid: copy, then insert/update/delete/truncate stream": async (c) => {
    const { src, dst, srcDb, dstDb } = await setup(c);
    await src.unsafe(`CREATE TABLE t1 (id int PRIMARY KEY, name text, v numeric(10,2))`);
    await src.unsafe(`INSERT INTO t1 SELECT g, 'n' || g, g * 1.5 FROM generate_series(1, 1000) g`);
    await dst.unsafe(
      `CREATE TABLE t1 (sid text, id int, name text, v numeric(10,2), PRIMARY KEY (sid, id))`,
    );
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(config(srcDb, dstDb, { t1: null }, "7")),
    ]);
    const srcRows = () => tableRows(src, "t1", "id, name, v");
    const dstRows = () => tableRows(dst, "t1", "id, name, v", "sid = '7'");
    await waitForEqualRows(srcRows, dstRows, { what: "initial copy", kvsz });

    await src.unsafe(`INSERT INTO t1 VALUES (1001, 'new', 1)`);
    await src.unsafe(`UPDATE t1 SET name = 'changed' WHERE id % 10 = 0`);
    await src.unsafe(`DELETE FROM t1 WHERE id % 7 = 0`);
    await src.unsafe(`UPDATE t1 SET id = id + 5000 WHERE id = 3`); // key change
    await waitForEqualRows(srcRows, dstRows, { what: "streamed changes", kvsz });

    await src.unsafe(`TRUNCATE t1`);
    await src.unsafe(`INSERT INTO t1 VALUES (1, 'after truncate', 2)`);
    await waitForEqualRows(srcRows, dstRows, { what: "truncate", kvsz });
    const logged = (await Deno.stat(c.server.logFile)).size;
    assert.equal(await kvsz.stop("SIGTERM"), 0, kvsz.output);
    const [p] = await dst.unsafe(`SELECT count(*)::int AS n FROM kvsz.progress`);
    assert.equal(p.n, 1);
    // A clean stop ends the stream with CopyDone: nothing for the DBA in the server's log.
    const log = await Deno.readFile(c.server.logFile);
    const since = new TextDecoder().decode(log.subarray(logged));
    assert.doesNotMatch(since, /FATAL|ERROR/, since);
  },

  "kvsz's writes carry a replication origin, so origin none never echoes them": async (c) => {
    if (c.major < 16) return; // the origin option of pgoutput is PostgreSQL 16+
    const { src, dst, srcDb, dstDb } = await setup(c);
    await src.unsafe(`CREATE TABLE o (id int PRIMARY KEY)`);
    await dst.unsafe(`CREATE TABLE o (id int PRIMARY KEY)`);
    await dst.unsafe(`CREATE PUBLICATION echo FOR TABLE o`);
    await dst.unsafe(`SELECT pg_create_logical_replication_slot('echo', 'pgoutput')`);
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(config(srcDb, dstDb, { o: null })),
    ]);
    await kvsz.waitForOutput(/streaming from/);
    await src.unsafe(`INSERT INTO o SELECT generate_series(1, 5)`);
    await waitForEqualRows(() => tableRows(src, "o"), () => tableRows(dst, "o"), { kvsz });
    // A local write, not kvsz's; committed synchronously so the WAL before it is flushed
    // (the test clusters run with synchronous_commit off, and peek reads flushed WAL only).
    await dst.begin(async (tx) => {
      await tx.unsafe(`SET LOCAL synchronous_commit = on`);
      await tx.unsafe(`INSERT INTO o VALUES (100)`);
    });
    const inserts = async (origin: string) => {
      const rows = await dst.unsafe(
        `SELECT get_byte(data, 0) AS tag FROM pg_logical_slot_peek_binary_changes('echo', NULL, NULL,
           'proto_version', '4', 'publication_names', 'echo', 'origin', $1)`,
        [origin],
      );
      return rows.filter((r) => r.tag === "I".charCodeAt(0)).length;
    };
    assert.equal(await inserts("any"), 6);
    assert.equal(await inserts("none"), 1);
    await dst.unsafe(`SELECT pg_drop_replication_slot('echo')`);
    assert.equal(await kvsz.stop(), 0);
  },

  "append ignores delete and truncate; target without sid": async (c) => {
    const { src, dst, srcDb, dstDb } = await setup(c);
    await src.unsafe(`CREATE TABLE ev (id bigint PRIMARY KEY, body text)`);
    await src.unsafe(`INSERT INTO ev VALUES (1, 'a'), (2, 'b')`);
    await dst.unsafe(`CREATE TABLE events (id bigint PRIMARY KEY, body text)`);
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(config(srcDb, dstDb, { ev: { target: "events", type: "append" } })),
    ]);
    const want = (rows: string[]) => () => Promise.resolve(rows);
    const dstRows = () => tableRows(dst, "events");
    await waitForEqualRows(want(['{"id":1,"body":"a"}', '{"id":2,"body":"b"}']), dstRows, {
      kvsz,
    });
    await src.unsafe(`INSERT INTO ev VALUES (3, 'c')`);
    await src.unsafe(`UPDATE ev SET body = 'B' WHERE id = 2`);
    await src.unsafe(`DELETE FROM ev WHERE id = 1`);
    await src.unsafe(`TRUNCATE ev`);
    await src.unsafe(`INSERT INTO ev VALUES (4, 'd')`);
    await waitForEqualRows(
      want([
        '{"id":1,"body":"a"}',
        '{"id":2,"body":"B"}',
        '{"id":3,"body":"c"}',
        '{"id":4,"body":"d"}',
      ]),
      dstRows,
      { kvsz },
    );
    assert.equal(await kvsz.stop(), 0);
  },

  "history keeps every version with the source commit time": async (c) => {
    const { src, dst, srcDb, dstDb } = await setup(c);
    await src.unsafe(`CREATE TABLE emp (id int PRIMARY KEY, name text, salary int)`);
    await src.unsafe(`INSERT INTO emp VALUES (1, 'John', 1000), (2, 'Jane', 3000)`);
    await dst.unsafe(
      `CREATE TABLE emp (sid text, id int, name text, salary int,
       kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
    );
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(config(srcDb, dstDb, { emp: { type: "history" } })),
    ]);
    const current = () =>
      tableRows(dst, "emp", "id, name, salary", "kvsz_end = '9999-01-01' AND NOT kvsz_deleted");
    await waitForEqualRows(() => tableRows(src, "emp", "id, name, salary"), current, { kvsz });

    // The exact commit time of each source transaction (track_commit_timestamp is on).
    const commitTime = async (statement: string) => {
      const [{ xid }] = await src.unsafe(
        `WITH x AS (${statement} RETURNING 1) SELECT txid_current()::text AS xid`,
      );
      const [{ t }] = await src.unsafe(
        `SELECT pg_xact_commit_timestamp($1::text::xid)::text AS t`,
        [xid],
      );
      return { t };
    };
    const t1 = await commitTime(`UPDATE emp SET salary = 1200 WHERE id = 1`);
    const t2 = await commitTime(`UPDATE emp SET salary = 2000 WHERE id = 1`);
    const t3 = await commitTime(`DELETE FROM emp WHERE id = 1`);
    const history = () =>
      tableRows(
        dst,
        "emp",
        "salary, kvsz_start::text AS s, kvsz_end::text AS e, kvsz_deleted AS d",
        "id = 1",
      );
    const expected = [
      { salary: 1000, s: "1900-01-01 00:00:00+00", e: t1.t, d: false },
      { salary: 1200, s: t1.t, e: t2.t, d: false },
      { salary: 2000, s: t2.t, e: t3.t, d: true },
    ].map((r) => JSON.stringify(r)).sort();
    await waitForEqualRows(() => Promise.resolve(expected), history, { kvsz, what: "history" });
    // The progress record, committed with the rows, carries the last source commit's time.
    const [progress] = await dst.unsafe(
      `SELECT commit_time = $1::text::timestamptz AS exact, commit_time::text AS t
         FROM kvsz.progress WHERE database = $2`,
      [t3.t, srcDb],
    );
    assert.ok(progress?.exact, `kvsz.progress.commit_time ${progress?.t}, source ${t3.t}`);
    assert.equal(await kvsz.stop(), 0);
  },
}, { settings: { track_commit_timestamp: "on" } });
