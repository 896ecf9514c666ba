/**
 * Source tables whose columns change while kvsz streams: columns are matched
 * by name on every Relation message, so a column added to the destination
 * first and then to the source flows from its first change; a new source
 * column the destination lacks is named in a warning, and it, or a
 * destination column the source dropped, leaves the other columns streaming.
 */
import assert from "node:assert/strict";
import { clusterSuite } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitForEqualRows, writeConfig } from "../support/kvsz.ts";

clusterSuite("kvsz run: source schema changes", {
  "columns added and dropped at the source while streaming": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    // `note` is left out of the target on purpose.
    await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY, a text, note text)`);
    await dst.unsafe(`CREATE TABLE t (id int PRIMARY KEY, a text)`);
    await src.unsafe(`INSERT INTO t SELECT g, 'a' || g, 'n' FROM generate_series(1, 100) g`);
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig({
        destination: { url: c.url(dstDb) },
        databases: [{
          database: srcDb,
          urls: [{ url: c.url(srcDb), sid: 1 }],
          // kuvasz-streamer's behaviour (a dropped column below streams on).
          tables: { t: { on_column_drift: "continue" } },
        }],
        apply: { commit_interval_ms: 50 },
        metrics: { listen: "" },
        log: { level: "info", format: "text" },
      }),
    ]);
    const rows = (cols: string) => ({
      src: () => tableRows(src, "t", cols),
      dst: () => tableRows(dst, "t", cols),
    });
    const same = async (cols: string, what: string) => {
      const r = rows(cols);
      await waitForEqualRows(r.src, r.dst, { kvsz, what });
    };
    await same("id, a", "initial copy");

    // Added to the destination first, then to the source: it flows from the next change.
    await dst.unsafe(`ALTER TABLE t ADD COLUMN b int`);
    await src.unsafe(`ALTER TABLE t ADD COLUMN b int`);
    await src.unsafe(`UPDATE t SET b = id * 2 WHERE id <= 50`);
    await src.unsafe(`INSERT INTO t (id, a, b) VALUES (101, 'new', 7)`);
    await same("id, a, b", "a column added on both sides");

    // Only at the source: ignored, the other columns go on.
    await src.unsafe(`ALTER TABLE t ADD COLUMN only_src text DEFAULT 'x'`);
    await src.unsafe(`UPDATE t SET a = 'changed', only_src = 'y' WHERE id % 10 = 0`);
    await src.unsafe(`INSERT INTO t (id, a, b, only_src) VALUES (102, 'newer', 8, 'z')`);
    await same("id, a, b", "a column only the source has");
    assert.match(
      kvsz.output,
      /public\.t has new column\(s\) only_src that target public\.t lacks: their values are not copied/,
    );
    assert.doesNotMatch(kvsz.output, /column\(s\) [^\n]*note/, "a column left out on purpose");

    // Dropped at the source: the destination keeps its values, new rows get NULL there.
    await src.unsafe(`ALTER TABLE t DROP COLUMN b`);
    await src.unsafe(`UPDATE t SET a = 'after drop' WHERE id <= 5`);
    await src.unsafe(`INSERT INTO t (id, a) VALUES (103, 'no b')`);
    await same("id, a", "a column dropped at the source");
    const [kept] = await dst.unsafe(`SELECT b FROM t WHERE id = 4`);
    assert.equal(kept.b, 8, "an updated row keeps the dropped column's value");
    const [fresh] = await dst.unsafe(`SELECT b FROM t WHERE id = 103`);
    assert.equal(fresh.b, null);
    assert.doesNotMatch(kvsz.output, /\bERR\b/);
    assert.equal(await kvsz.stop(), 0);
  },
});
