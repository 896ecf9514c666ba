/**
 * Table shapes end to end: TOAST values in clone and history, partitioned
 * sources with and without `partitions_regex`, schema-qualified sources and
 * renamed targets, a table added to the config later, and an initial sync
 * while a writer keeps changing the table.
 */
import assert from "node:assert/strict";
import { clusterSuite } from "../support/cluster.ts";
import {
  KvszProcess,
  runConfig,
  tableRows,
  waitFor,
  waitForEqualRows,
  writeConfig,
} from "../support/kvsz.ts";

clusterSuite("kvsz run: tables", {
  "TOAST: a 20 kB value survives an update of another column (clone and history); a 1 MB value arrives whole":
    async (c) => {
      const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
      await src.unsafe(`CREATE TABLE doc (id int PRIMARY KEY, n int, body text)`);
      await src.unsafe(`ALTER TABLE doc ALTER body SET STORAGE EXTERNAL`); // stored out of line
      await src.unsafe(`CREATE TABLE doc_h (id int PRIMARY KEY, n int, body text)`);
      await src.unsafe(`ALTER TABLE doc_h ALTER body SET STORAGE EXTERNAL`);
      await dst.unsafe(`CREATE TABLE doc (id int PRIMARY KEY, n int, body text)`);
      await dst.unsafe(
        `CREATE TABLE doc_h (id int, n int, body text, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
      );
      await using kvsz = KvszProcess.start([
        "run",
        "--config",
        await writeConfig(
          runConfig(c, srcDb, dstDb, { doc: null, doc_h: { type: "history" } }, "3"),
        ),
      ]);
      await kvsz.waitForOutput(/streaming from/);
      const big = "x".repeat(20_000) + "end";
      for (const t of ["doc", "doc_h"]) {
        await src.unsafe(`INSERT INTO ${t} VALUES (1, 1, $1)`, [big]);
        await src.unsafe(`UPDATE ${t} SET n = 2 WHERE id = 1`);
        await src.unsafe(`UPDATE ${t} SET n = 3 WHERE id = 1`);
      }
      // About 1 MB of UTF-8 in one message: longer than any socket read and than the
      // reader's 256 KiB queue, so the frame is gathered from many reads.
      const huge = "é€ñ".repeat(140_000) + "end";
      await src.unsafe(`INSERT INTO doc VALUES (2, 1, $1)`, [huge]);
      const cols = "id, n, md5(body) AS body";
      await waitForEqualRows(() => tableRows(src, "doc", cols), () => tableRows(dst, "doc", cols), {
        kvsz,
      });
      await waitFor(async () => {
        const rows = await dst.unsafe(`SELECT n, length(body) AS len FROM doc_h ORDER BY n`);
        return rows.length === 3 && rows.every((r) => r.len === big.length);
      }, { what: "three history versions each carrying the 20 kB value" });
      assert.equal(await kvsz.stop(), 0);
    },

  "partitioned source through the root, and leaves by partitions_regex": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE m (id int, day date, v text, PRIMARY KEY (id, day))
                      PARTITION BY RANGE (day)`);
    await src.unsafe(
      `CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`,
    );
    await src.unsafe(
      `CREATE TABLE m_2025 PARTITION OF m FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`,
    );
    await src.unsafe(`CREATE TABLE shard_1 (id int PRIMARY KEY, v text)`);
    await src.unsafe(`CREATE TABLE shard_2 (id int PRIMARY KEY, v text)`);
    await src.unsafe(`CREATE TABLE shardx (id int PRIMARY KEY, v text)`); // not matched
    await src.unsafe(`INSERT INTO m VALUES (1, '2024-05-01', 'a'), (2, '2025-05-01', 'b')`);
    await src.unsafe(`INSERT INTO shard_1 VALUES (1, 'one')`);
    await src.unsafe(`INSERT INTO shard_2 VALUES (2, 'two')`);
    await src.unsafe(`INSERT INTO shardx VALUES (3, 'no')`);
    await dst.unsafe(`CREATE TABLE m (id int, day date, v text, PRIMARY KEY (id, day))`);
    await dst.unsafe(`CREATE TABLE shards (id int PRIMARY KEY, v text)`);
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(
        runConfig(c, srcDb, dstDb, {
          m: null,
          shard: { target: "shards", partitions_regex: "shard_[0-9]+" },
        }, "3"),
      ),
    ]);
    await src.unsafe(`INSERT INTO m VALUES (3, '2025-07-01', 'c')`);
    await src.unsafe(`UPDATE m SET v = 'A' WHERE id = 1`);
    await src.unsafe(`INSERT INTO shard_2 VALUES (4, 'four')`);
    await src.unsafe(`UPDATE shard_1 SET v = 'ONE' WHERE id = 1`);
    await src.unsafe(`INSERT INTO shardx VALUES (5, 'no')`);
    await waitForEqualRows(() => tableRows(src, "m"), () => tableRows(dst, "m"), { kvsz });
    await waitForEqualRows(
      () => tableRows(src, "(SELECT * FROM shard_1 UNION ALL SELECT * FROM shard_2) s", "id, v"),
      () => tableRows(dst, "shards", "id, v"),
      { kvsz },
    );
    assert.equal(await kvsz.stop(), 0);
  },

  "schema-qualified source into a renamed target": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE SCHEMA private`);
    await src.unsafe(`CREATE TABLE private.t8 (id int PRIMARY KEY, v text)`);
    await src.unsafe(`CREATE TABLE public.t8 (id int PRIMARY KEY, v text)`); // same name, not mapped
    await src.unsafe(`INSERT INTO private.t8 VALUES (1, 'private')`);
    await src.unsafe(`INSERT INTO public.t8 VALUES (1, 'public')`);
    await dst.unsafe(`CREATE TABLE pt8 (id int PRIMARY KEY, v text)`);
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(runConfig(c, srcDb, dstDb, { "private.t8": { target: "pt8" } }, "3")),
    ]);
    await src.unsafe(`INSERT INTO private.t8 VALUES (2, 'p2')`);
    await src.unsafe(`INSERT INTO public.t8 VALUES (2, 'no')`);
    await waitForEqualRows(() => tableRows(src, "private.t8"), () => tableRows(dst, "pt8"), {
      kvsz,
    });
    assert.equal(await kvsz.stop(), 0);
  },

  "a table added to the config later is copied without losing or doubling changes": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE a (id int PRIMARY KEY, v int)`);
    await src.unsafe(`CREATE TABLE b (id int PRIMARY KEY, v int)`);
    await src.unsafe(`INSERT INTO a SELECT g, g FROM generate_series(1, 100) g`);
    await src.unsafe(`INSERT INTO b SELECT g, g FROM generate_series(1, 5000) g`);
    await dst.unsafe(`CREATE TABLE a (id int PRIMARY KEY, v int)`);
    await dst.unsafe(`CREATE TABLE b (id int PRIMARY KEY, v int)`);
    const first = await writeConfig(runConfig(c, srcDb, dstDb, { a: null }, "3"));
    {
      await using kvsz = KvszProcess.start(["run", "--config", first]);
      await waitForEqualRows(() => tableRows(src, "a"), () => tableRows(dst, "a"), { kvsz });
      assert.equal(await kvsz.stop(), 0);
    }
    // While kvsz is stopped, and while it copies b, both tables keep changing.
    await src.unsafe(`UPDATE a SET v = v + 1`);
    await src.unsafe(`UPDATE b SET v = v + 1 WHERE id <= 100`);
    const writer = (async () => {
      for (let i = 0; i < 50; i++) {
        await src.unsafe(`UPDATE b SET v = v + 1 WHERE id = $1`, [1 + (i % 10)]);
        await src.unsafe(`INSERT INTO b VALUES ($1, 0)`, [10_000 + i]);
        await src.unsafe(`UPDATE a SET v = v + 1 WHERE id = $1`, [1 + (i % 10)]);
      }
    })();
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(runConfig(c, srcDb, dstDb, { a: null, b: null }, "3")),
    ]);
    await writer;
    await waitForEqualRows(() => tableRows(src, "b"), () => tableRows(dst, "b"), { kvsz });
    await waitForEqualRows(() => tableRows(src, "a"), () => tableRows(dst, "a"), { kvsz });
    assert.equal(await kvsz.stop(), 0);
  },

  "initial sync while a writer keeps changing the table": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE busy (id int PRIMARY KEY, v int, pad text)`);
    await src.unsafe(
      `INSERT INTO busy SELECT g, 0, repeat('p', 100) FROM generate_series(1, 100000) g`,
    );
    await dst.unsafe(`CREATE TABLE busy (id int PRIMARY KEY, v int, pad text)`);
    let writing = true;
    const writer = (async () => {
      let i = 0;
      while (writing) {
        i++;
        await src.unsafe(`UPDATE busy SET v = v + 1 WHERE id = $1`, [1 + (i * 7919) % 100000]);
        await src.unsafe(`DELETE FROM busy WHERE id = $1`, [1 + (i * 104729) % 100000]);
        await src.unsafe(`INSERT INTO busy VALUES ($1, 1, 'new')`, [200000 + i]);
      }
    })();
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(runConfig(c, srcDb, dstDb, { busy: null }, "3")),
    ]);
    try {
      await kvsz.waitForOutput(/streaming from/);
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      writing = false;
      await writer;
    }
    await waitForEqualRows(() => tableRows(src, "busy"), () => tableRows(dst, "busy"), {
      kvsz,
    });
    assert.equal(await kvsz.stop(), 0);
  },

  "a destination table dropped while streaming is said once, retried slowly, and streams once back":
    async (c) => {
      const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
      await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
      await dst.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
      const config = runConfig(c, srcDb, dstDb, { t: null });
      await using kvsz = KvszProcess.start([
        "run",
        "--config",
        await writeConfig({ ...config, log: { level: "debug", format: "text" } }),
      ]);
      await kvsz.waitForOutput(/streaming from/);
      await dst.unsafe(`DROP TABLE t`);
      await src.unsafe(`INSERT INTO t VALUES (1, 'while the target is gone')`);
      const problem = /destination table\(s\) public\.t do not exist: create them/;
      await kvsz.waitForOutput(
        /ERR source: destination table\(s\) public\.t do not exist: create them \(kvsz validate prints the DDL\); retrying in \d+ s, then at most every minute/,
      );
      // The next attempt fails the same way and says it only at debug level.
      await kvsz.waitForOutput(/DBG source: destination table\(s\) public\.t do not exist/);
      const said = kvsz.output.split("\n").filter((l) => problem.test(l));
      assert.deepEqual(said.map((l) => l.split(" ")[1]), ["ERR", "DBG"]);
      await dst.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
      await src.unsafe(`INSERT INTO t VALUES (2, 'after')`);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
      assert.equal(await kvsz.stop(), 0);
    },
});
