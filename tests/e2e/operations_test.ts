/**
 * Operating `kvsz run`: metrics move when rows flow (parsed exposition),
 * SIGHUP adds a table without restarting the source, SIGTERM during a large
 * transaction loses nothing, and no password ever reaches the logs.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { parseExposition, valueOf } from "../support/prometheus.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";
import { stringify } from "yaml";

function config(
  c: TestCluster,
  srcDb: string,
  dstDb: string,
  tables: Record<string, unknown>,
  listen = "",
) {
  return {
    destination: { url: c.url(dstDb) },
    databases: [{ database: srcDb, urls: [{ url: c.url(srcDb), sid: 1 }], tables }],
    apply: { commit_interval_ms: 50 },
    metrics: { listen },
    log: { level: "debug", format: "json" },
  };
}

clusterSuite("kvsz run: operations", {
  "metrics move when rows flow; logs are JSON lines without passwords": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
    await dst.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
    await src.unsafe(`INSERT INTO t SELECT g, 'x' FROM generate_series(1, 100) g`);
    const port = freePort();
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(config(c, srcDb, dstDb, { t: null }, `127.0.0.1:${port}`)),
    ]);
    await kvsz.waitForOutput(/streaming from/);
    await src.unsafe(`INSERT INTO t SELECT g, 'y' FROM generate_series(101, 150) g`);
    await src.unsafe(`UPDATE t SET v = 'z' WHERE id <= 10`);
    await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
    const labels = { database: srcDb, sid: "1", table: "public.t" };
    await waitFor(async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const m = parseExposition(text);
      return valueOf(m, "streamer_operations_total", { ...labels, operation: "insert" }) === 50 &&
        valueOf(m, "streamer_operations_total", { ...labels, operation: "update" }) === 10 &&
        valueOf(m, "streamer_sync_total_rows", { database: srcDb, sid: "1" }) === 100 &&
        valueOf(m, "kvsz_source_connected", { database: srcDb, sid: "1" }) === 1;
    }, { what: "metrics to count 50 inserts, 10 updates, 100 synced rows" });
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    await ready.body?.cancel();
    assert.equal(ready.status, 200);
    assert.equal(await kvsz.stop(), 0);

    const lines = kvsz.output.trim().split("\n");
    for (const line of lines) {
      const event = JSON.parse(line); // every line is one JSON event
      assert.ok(event.level && event.time && event.message !== undefined, line);
    }
    assert.ok(lines.some((l) => JSON.parse(l).database === srcDb), "events carry database");
    assert.ok(!kvsz.output.includes(c.server.password), "a password reached the logs");
  },

  "SIGHUP adds a table while the other keeps streaming": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    for (const sql of [src, dst]) {
      await sql.unsafe(`CREATE TABLE a (id int PRIMARY KEY)`);
      await sql.unsafe(`CREATE TABLE b (id int PRIMARY KEY)`);
    }
    await src.unsafe(`INSERT INTO a VALUES (1)`);
    await src.unsafe(`INSERT INTO b VALUES (1), (2)`);
    const path = await writeConfig(config(c, srcDb, dstDb, { a: null }));
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await waitForEqualRows(() => tableRows(src, "a"), () => tableRows(dst, "a"), { kvsz });
    await Deno.writeTextFile(path, stringify(config(c, srcDb, dstDb, { a: null, b: null })));
    const mark = kvsz.output.length;
    Deno.kill(kvsz.pid, "SIGHUP");
    await kvsz.waitForOutput(/reloading/, 30_000, mark);
    await src.unsafe(`INSERT INTO a VALUES (2)`);
    await src.unsafe(`INSERT INTO b VALUES (3)`);
    await waitForEqualRows(() => tableRows(src, "b"), () => tableRows(dst, "b"), { kvsz });
    await waitForEqualRows(() => tableRows(src, "a"), () => tableRows(dst, "a"), { kvsz });
    assert.equal(await kvsz.stop(), 0);
  },

  "SIGTERM during a large transaction loses nothing": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE big (id int PRIMARY KEY, v text)`);
    await dst.unsafe(`CREATE TABLE big (id int PRIMARY KEY, v text)`);
    const path = await writeConfig(config(c, srcDb, dstDb, { big: null }));
    {
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await kvsz.waitForOutput(/streaming from/);
      await src.unsafe(
        `INSERT INTO big SELECT g, repeat('v', 50) FROM generate_series(1, 200000) g`,
      );
      await src.unsafe(`UPDATE big SET v = 'u' WHERE id % 1000 = 0`);
      await waitFor(async () => {
        const [{ n }] = await dst.unsafe(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE state = 'idle in transaction' OR query ILIKE '%unnest%'`,
        );
        return n > 0;
      }, { what: "kvsz applying the large transaction", timeoutMs: 30_000 });
      assert.equal(await kvsz.stop("SIGTERM"), 0, kvsz.output.slice(-2000));
    }
    await using again = KvszProcess.start(["run", "--config", path]);
    await waitForEqualRows(() => tableRows(src, "big"), () => tableRows(dst, "big"), {
      kvsz: again,
      timeoutMs: 120_000,
    });
    assert.equal(await again.stop(), 0);
  },
  "/readyz turns unready while the source server is down, ready again after": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE r (id int PRIMARY KEY)`);
    await dst.unsafe(`CREATE TABLE r (id int PRIMARY KEY)`);
    const port = freePort();
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(config(c, srcDb, dstDb, { r: null }, `127.0.0.1:${port}`)),
    ]);
    const readyz = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      await res.body?.cancel();
      return res.status;
    };
    await waitFor(async () => await readyz() === 200, { what: "ready", timeoutMs: 30_000 });
    await c.server.stop();
    await waitFor(async () => await readyz() === 503, { what: "unready", timeoutMs: 30_000 });
    await c.server.start();
    await src.unsafe(`INSERT INTO r VALUES (1)`);
    await waitForEqualRows(() => tableRows(src, "r"), () => tableRows(dst, "r"), { kvsz });
    await waitFor(async () => await readyz() === 200, { what: "ready again", timeoutMs: 60_000 });
    assert.equal(await kvsz.stop(), 0);
  },
});
