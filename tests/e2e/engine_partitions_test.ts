/**
 * Partitions attached, created and detached while kvsz streams, with a
 * partitioned table mapped itself (published through its root) and one
 * mapped by `partitions_regex` (its leaves, each under its own name). In both
 * the source decides which changes belong to the table, at the position of
 * the ATTACH or DETACH: a partition's changes arrive from its ATTACH on and no
 * longer after its DETACH. ATTACH and DETACH change no row, so the rows a
 * partition held before its ATTACH are not copied (as native logical
 * replication) and a detached partition's rows stay in the target; taking the
 * table out of the config and back in copies it again (the detached rows then leave).
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { clusterSuite } from "../support/cluster.ts";
import {
  KvszProcess,
  runConfig,
  tableRows,
  waitForEqualRows,
  writeConfig,
} from "../support/kvsz.ts";

const TABLES = {
  m: null, // published through its root
  p: { target: "p_all", partitions_regex: "p_20[0-9]{2}" }, // its leaves p_2024, p_2025, …
};

clusterSuite("kvsz run: partitions attached and detached while streaming", {
  "through the root and by partitions_regex: changes arrive from the ATTACH and stop at the DETACH":
    async (c) => {
      const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
      for (const t of ["m", "p"]) {
        await src.unsafe(
          `CREATE TABLE ${t} (id int, y int, v text, PRIMARY KEY (id, y)) PARTITION BY RANGE (y)`,
        );
        for (const y of [2024, 2025]) {
          await src.unsafe(
            `CREATE TABLE ${t}_${y} PARTITION OF ${t} FOR VALUES FROM (${y}) TO (${y + 1})`,
          );
        }
        await src.unsafe(
          `INSERT INTO ${t} SELECT g, 2024 + g % 2, 'copied' FROM generate_series(1, 20) g`,
        );
      }
      // A partition of p the regex leaves out: never copied, never streamed.
      await src.unsafe(`CREATE TABLE p_old PARTITION OF p FOR VALUES FROM (2000) TO (2024)`);
      await src.unsafe(`INSERT INTO p VALUES (100, 2010, 'left out')`);
      await dst.unsafe(`CREATE TABLE m (id int, y int, v text, PRIMARY KEY (id, y))`);
      await dst.unsafe(`CREATE TABLE p_all (id int, y int, v text, PRIMARY KEY (id, y))`);
      const path = await writeConfig(runConfig(c, srcDb, dstDb, TABLES));
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      const target = { m: "m", p: "p_all" } as const;
      /** The rows of the source table the target follows (p: the leaves the regex names). */
      const sourceRows = (t: "m" | "p") => tableRows(src, t, "*", t === "p" ? "y >= 2024" : "true");
      for (const t of ["m", "p"] as const) {
        await waitForEqualRows(() => sourceRows(t), () => tableRows(dst, target[t]), {
          kvsz,
          what: `initial copy of ${t}`,
        });
      }

      const kept: Record<string, string[]> = {};
      for (const t of ["m", "p"] as const) {
        // A table holding a row of its own, attached while kvsz streams, and a new partition.
        await src.unsafe(`CREATE TABLE ${t}_2026 (LIKE ${t})`);
        await src.unsafe(`INSERT INTO ${t}_2026 VALUES (1, 2026, 'before the attach')`);
        await src.unsafe(
          `ALTER TABLE ${t} ATTACH PARTITION ${t}_2026 FOR VALUES FROM (2026) TO (2027)`,
        );
        await src.unsafe(
          `CREATE TABLE ${t}_2027 PARTITION OF ${t} FOR VALUES FROM (2027) TO (2028)`,
        );
        await src.unsafe(`INSERT INTO ${t} VALUES (2, 2026, 'through the root'), (3, 2027, 'new')`);
        await src.unsafe(`INSERT INTO ${t}_2026 VALUES (4, 2026, 'into the partition')`);
        await src.unsafe(`UPDATE ${t} SET v = 'updated' WHERE y = 2025 AND id < 6`);
        // Detached: its rows stay in the target as they were; what it does next stays out.
        kept[t] = await tableRows(src, `${t}_2024`);
        await src.unsafe(`ALTER TABLE ${t} DETACH PARTITION ${t}_2024`);
        await src.unsafe(`UPDATE ${t}_2024 SET v = 'after the detach'`);
        await src.unsafe(`DELETE FROM ${t}_2024 WHERE id < 10`);
        await src.unsafe(`INSERT INTO ${t}_2024 VALUES (50, 2024, 'after the detach')`);
        await src.unsafe(`UPDATE p_old SET v = 'still left out'`);
        await src.unsafe(`INSERT INTO ${t} VALUES (500, 2025, 'last')`);
      }
      for (const t of ["m", "p"] as const) {
        await waitForEqualRows(
          async () =>
            [
              ...(await sourceRows(t)).filter((r) => !r.includes("before the attach")),
              ...kept[t],
            ].sort(),
          () => tableRows(dst, target[t]),
          { kvsz, what: `${t}: attached, created and detached partitions` },
        );
      }

      // The rows a partition held before its ATTACH: out of the config and back in copies them.
      for (const tables of [{ other: null }, TABLES]) {
        await src.unsafe(`CREATE TABLE IF NOT EXISTS other (id int PRIMARY KEY)`);
        await dst.unsafe(`CREATE TABLE IF NOT EXISTS other (id int PRIMARY KEY)`);
        await Deno.writeTextFile(path, stringify(runConfig(c, srcDb, dstDb, tables)));
        const mark = kvsz.output.length;
        Deno.kill(kvsz.pid, "SIGHUP");
        await kvsz.waitForOutput(/streaming from/, 30_000, mark);
      }
      // A clone target only this source writes equals the table again: the detached rows leave.
      for (const t of ["m", "p"] as const) {
        await waitForEqualRows(() => sourceRows(t), () => tableRows(dst, target[t]), {
          kvsz,
          what: `${t}: copied again`,
        });
      }
      assert.doesNotMatch(kvsz.output, /\b(ERR|WRN)\b/);
      assert.equal(await kvsz.stop(), 0);
    },
}, { minMajor: 15 }); // see README: PostgreSQL 13 and 14 follow an ATTACH or DETACH only after a reconnect
