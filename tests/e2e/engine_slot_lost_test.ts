/**
 * A slot the source invalidated (`wal_status = lost`) is a loud error with the
 * fix, not a silent stall; applying the fix (drop the slot) re-syncs.
 */
import assert from "node:assert/strict";
import { clusterSuite } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";

clusterSuite("kvsz run: invalidated slot", {
  "wal_status lost: error naming the fix, then re-sync after the slot is dropped": async (c) => {
    const srcDb = await c.createDatabase("src");
    const dstDb = await c.createDatabase("dst");
    const src = c.sql(srcDb);
    const dst = c.sql(dstDb);
    await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
    await dst.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
    await src.unsafe(`INSERT INTO t VALUES (1, 'a')`);
    const path = await writeConfig({
      destination: { url: c.url(dstDb) },
      databases: [{ database: srcDb, urls: [{ url: c.url(srcDb), sid: 1 }], tables: { t: null } }],
      metrics: { listen: "" },
      log: { level: "info", format: "text" },
    });
    {
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
      assert.equal(await kvsz.stop(), 0);
    }
    // Write more WAL than max_slot_wal_keep_size allows, then checkpoint.
    const slot = `kvsz_${srcDb}_1`.toLowerCase();
    await src.unsafe(`INSERT INTO t VALUES (2, 'while stopped')`);
    await waitFor(async () => {
      await src.unsafe(`CREATE TEMP TABLE IF NOT EXISTS filler (x text)`);
      await src.unsafe(
        `INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 20000)`,
      );
      await src.unsafe(`SELECT pg_switch_wal()`);
      await src.unsafe(`CHECKPOINT`);
      const [r] = await src.unsafe(
        `SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`,
        [slot],
      );
      return r?.wal_status === "lost";
    }, { what: "the slot to be invalidated", timeoutMs: 60_000 });

    await using kvsz = KvszProcess.start(["run", "--config", path, "--skip-checks"]);
    await kvsz.waitForOutput(/invalidated \(wal_status=lost\).*Re-sync: drop the slot/);
    await src.unsafe(`SELECT pg_drop_replication_slot($1)`, [slot]);
    await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), {
      kvsz,
      what: "re-sync after the fix",
    });
    assert.equal(await kvsz.stop(), 0);
  },
}, {
  minMajor: 13,
  settings: { max_slot_wal_keep_size: "1MB", min_wal_size: "32MB", max_wal_size: "64MB" },
});
