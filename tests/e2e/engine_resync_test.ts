/**
 * Re-sync after the slot is lost or dropped: never doubles, never erases what
 * the mode keeps. Clone with `sid` replaces that sid's rows (other sids stay);
 * append keeps rows the source no longer has; history adds a version for
 * changed rows and closes vanished ones; a second kvsz on the same slot is
 * refused with the pid of the first.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";

function config(c: TestCluster, srcDb: string, dstDb: string) {
  return {
    destination: { url: c.url(dstDb) },
    databases: [{
      database: srcDb,
      urls: [{ url: c.url(srcDb), sid: 1 }],
      tables: { c: null, a: { type: "append" }, h: { type: "history" } },
    }],
    apply: { commit_interval_ms: 50 },
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
  };
}

clusterSuite("kvsz run: re-sync", {
  "slot dropped while stopped: each mode re-syncs without doubling or erasing": async (c) => {
    const srcDb = await c.createDatabase("src");
    const dstDb = await c.createDatabase("dst");
    const src = c.sql(srcDb);
    const dst = c.sql(dstDb);
    for (const t of ["c", "a", "h"]) {
      await src.unsafe(`CREATE TABLE ${t} (id int PRIMARY KEY, v text)`);
      await src.unsafe(`INSERT INTO ${t} VALUES (1, 'one'), (2, 'two'), (3, 'three')`);
    }
    await dst.unsafe(`CREATE TABLE c (sid text, id int, v text, PRIMARY KEY (sid, id))`);
    await dst.unsafe(`INSERT INTO c VALUES ('other', 1, 'another source')`);
    await dst.unsafe(`CREATE TABLE a (id int PRIMARY KEY, v text)`);
    await dst.unsafe(
      `CREATE TABLE h (sid text, id int, v text, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
    );
    const path = await writeConfig(config(c, srcDb, dstDb));
    {
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await waitForEqualRows(
        () => tableRows(src, "h", "id, v"),
        () => tableRows(dst, "h", "id, v"),
        { kvsz },
      );
      // A second kvsz on the same source is refused, naming the first one's pid.
      await using second = KvszProcess.start(["run", "--config", path, "--skip-checks"]);
      await second.waitForOutput(/in use by process \d+/);
      await second.stop();
      assert.equal(await kvsz.stop(), 0);
    }
    const slot = `kvsz_${srcDb}_1`.toLowerCase();
    await src.unsafe(`SELECT pg_drop_replication_slot($1)`, [slot]);
    for (const t of ["c", "a", "h"]) {
      await src.unsafe(`UPDATE ${t} SET v = 'TWO' WHERE id = 2`);
      await src.unsafe(`DELETE FROM ${t} WHERE id = 3`);
      await src.unsafe(`INSERT INTO ${t} VALUES (4, 'four')`);
    }
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await kvsz.waitForOutput(/streaming from/);
    await waitForEqualRows(
      () => tableRows(src, "c", "id, v"),
      () => tableRows(dst, "c", "id, v", "sid = '1'"),
      { kvsz, what: "clone: sid 1 replaced" },
    );
    assert.deepEqual(await tableRows(dst, "c", "id, v", "sid = 'other'"), [
      '{"id":1,"v":"another source"}',
    ]);
    assert.deepEqual(await tableRows(dst, "a", "id, v"), [
      '{"id":1,"v":"one"}',
      '{"id":2,"v":"TWO"}',
      '{"id":3,"v":"three"}',
      '{"id":4,"v":"four"}',
    ]);
    await waitFor(async () => {
      const rows = await tableRows(
        dst,
        "h",
        "id, v, kvsz_end = '9999-01-01' AS current, kvsz_deleted AS deleted",
      );
      return JSON.stringify(rows) === JSON.stringify([
        '{"id":1,"v":"one","current":true,"deleted":false}',
        '{"id":2,"v":"TWO","current":true,"deleted":false}',
        '{"id":2,"v":"two","current":false,"deleted":false}',
        '{"id":3,"v":"three","current":false,"deleted":true}',
        '{"id":4,"v":"four","current":true,"deleted":false}',
      ]);
    }, {
      what: "history merged",
      context: async () => JSON.stringify(await tableRows(dst, "h")) + kvsz.output,
    });
    // And it streams on from the new slot.
    await src.unsafe(`INSERT INTO c VALUES (5, 'five')`);
    await waitForEqualRows(
      () => tableRows(src, "c", "id, v"),
      () => tableRows(dst, "c", "id, v", "sid = '1'"),
      { kvsz },
    );
    assert.equal(await kvsz.stop(), 0);
  },
});
