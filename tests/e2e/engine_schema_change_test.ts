/**
 * Source tables whose columns change while kvsz streams: columns are matched
 * by name on every Relation message, so a column added to the destination
 * first and then to the source flows from its first change; a new source
 * column the destination lacks is named in a warning, and it, or a
 * destination column the source dropped, leaves the other columns streaming.
 * A replica identity changed while streaming takes effect from its Relation
 * message, in the middle of a transaction too; under FULL without a key, rows
 * stored before an `ADD COLUMN … DEFAULT` are found by their default.
 */
import assert from "node:assert/strict";
import { clusterSuite } from "../support/cluster.ts";
import {
  KvszProcess,
  runConfig,
  tableRows,
  waitForEqualRows,
  writeConfig,
} from "../support/kvsz.ts";
import type { Sql } from "../../lib/pg/connect.ts";

/**
 * Waits until clone target `t` and the current rows of history target
 * `${t}_h` both equal source tables `t` and `${t}_h` on `cols`.
 */
async function sameCloneAndHistory(
  src: Sql,
  dst: Sql,
  t: string,
  opts: { cols?: string; what: string; kvsz: KvszProcess },
): Promise<void> {
  const cols = opts.cols ?? "*";
  await waitForEqualRows(() => tableRows(src, t, cols), () => tableRows(dst, t, cols), opts);
  await waitForEqualRows(
    () => tableRows(src, `${t}_h`, cols),
    () => tableRows(dst, `${t}_h`, cols, "kvsz_end = '9999-01-01' AND NOT kvsz_deleted"),
    { ...opts, what: `${opts.what} (history)` },
  );
}

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
      // kuvasz-streamer's behaviour (a dropped column below streams on).
      await writeConfig(runConfig(c, srcDb, dstDb, { t: { on_column_drift: "continue" } })),
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

  // PostgreSQL's 100_bugs.pl changes the identity index and then updates and deletes in one
  // transaction; 001_rep_changes.pl turns FULL on for tables with duplicate rows.
  "replica identity changed from an index to FULL and back while streaming, clone and history":
    async (c) => {
      const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
      for (const t of ["ri", "ri_h"]) {
        await src.unsafe(`CREATE TABLE ${t} (a int NOT NULL, b int NOT NULL, c text)`);
        await src.unsafe(`CREATE UNIQUE INDEX ${t}_a ON ${t} (a)`);
        await src.unsafe(`CREATE UNIQUE INDEX ${t}_b ON ${t} (b)`);
        await src.unsafe(`ALTER TABLE ${t} REPLICA IDENTITY USING INDEX ${t}_a`);
        await src.unsafe(
          `INSERT INTO ${t} SELECT g, 1000 + g, 'c' || g FROM generate_series(1, 30) g`,
        );
      }
      await dst.unsafe(`CREATE TABLE ri (a int NOT NULL UNIQUE, b int NOT NULL UNIQUE, c text)`);
      await dst.unsafe(
        `CREATE TABLE ri_h (a int, b int, c text, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
      );
      await using kvsz = KvszProcess.start([
        "run",
        "--config",
        await writeConfig(runConfig(c, srcDb, dstDb, { ri: null, ri_h: { type: "history" } })),
      ]);
      const same = (what: string) =>
        sameCloneAndHistory(src, dst, "ri", { cols: "a, b, c", what, kvsz });
      await same("initial copy");
      // Each step changes the identity and then, in the same transaction, a non-key column,
      // the old identity's column, the new identity's column, and deletes.
      const steps: [string, string, number][] = [
        ["index a", "USING INDEX {t}_a", 1],
        ["FULL", "FULL", 6],
        ["index b", "USING INDEX {t}_b", 11],
        ["FULL again", "FULL", 16],
        ["index a again", "USING INDEX {t}_a", 21],
      ];
      for (const [what, identity, n] of steps) {
        for (const t of ["ri", "ri_h"]) {
          await src.begin(async (tx) => {
            await tx.unsafe(`ALTER TABLE ${t} REPLICA IDENTITY ${identity.replace("{t}", t)}`);
            await tx.unsafe(`UPDATE ${t} SET c = c || ' changed' WHERE a = ${n}`);
            await tx.unsafe(`UPDATE ${t} SET a = -a WHERE a = ${n + 1}`);
            await tx.unsafe(`UPDATE ${t} SET b = -b WHERE a = ${n + 2}`);
            await tx.unsafe(`DELETE FROM ${t} WHERE a = ${n + 3}`);
            await tx.unsafe(`INSERT INTO ${t} VALUES (${100 + n}, ${2000 + n}, 'new')`);
          });
          // And in a transaction of its own, after the identity changed.
          await src.unsafe(
            `UPDATE ${t} SET c = 'again', a = a + 200, b = b + 200 WHERE a = ${n + 4}`,
          );
        }
        await same(`replica identity ${what}`);
      }
      // No anomaly, and no batch that broke a unique constraint and went again one change at a time.
      assert.doesNotMatch(kvsz.output, /\b(ERR|WRN)\b/);
      assert.equal(await kvsz.stop(), 0);
    },

  // PostgreSQL's 100_bugs.pl: a row stored before `ADD COLUMN … DEFAULT` has no value for it
  // on disk; its old row under FULL must carry the default, or the UPDATE finds no row.
  "ADD COLUMN with a DEFAULT, then UPDATE and DELETE under replica identity FULL without a key":
    async (c) => {
      const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
      for (const t of ["fd", "fd_h"]) {
        await src.unsafe(`CREATE TABLE ${t} (a int, c text)`);
        await src.unsafe(`ALTER TABLE ${t} REPLICA IDENTITY FULL`);
        await src.unsafe(`INSERT INTO ${t} VALUES (1, 'x'), (2, 'y'), (2, 'y'), (3, 'z')`);
        // Before kvsz starts: the initial copy reads the default for the rows stored before.
        await src.unsafe(`ALTER TABLE ${t} ADD COLUMN b bool NOT NULL DEFAULT false`);
        await src.unsafe(`INSERT INTO ${t} VALUES (4, 'w', true)`);
      }
      await dst.unsafe(`CREATE TABLE fd (a int, c text, b bool)`);
      await dst.unsafe(
        `CREATE TABLE fd_h (a int, c text, b bool, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
      );
      await using kvsz = KvszProcess.start([
        "run",
        "--config",
        await writeConfig(runConfig(c, srcDb, dstDb, { fd: null, fd_h: { type: "history" } })),
      ]);
      const same = (cols: string, what: string) =>
        sameCloneAndHistory(src, dst, "fd", { cols, what, kvsz });
      await same("a, c, b", "initial copy");
      for (const t of ["fd", "fd_h"]) {
        await src.unsafe(`UPDATE ${t} SET a = a + 10`);
        await src.unsafe(
          `DELETE FROM ${t} WHERE a = 12 AND ctid = (SELECT min(ctid) FROM ${t} WHERE a = 12)`,
        );
      }
      await same("a, c, b", "every row updated, one of two duplicates deleted");

      // While streaming: the column is added to the destination first, with the same default.
      for (const t of ["fd", "fd_h"]) {
        await dst.unsafe(`ALTER TABLE ${t} ADD COLUMN d int NOT NULL DEFAULT 7`);
        await src.unsafe(`ALTER TABLE ${t} ADD COLUMN d int NOT NULL DEFAULT 7`);
        await src.unsafe(`UPDATE ${t} SET c = c || '!' WHERE a IN (11, 12)`);
        await src.unsafe(`DELETE FROM ${t} WHERE a = 13`);
        await src.unsafe(`UPDATE ${t} SET d = 8 WHERE a = 14`);
        await src.unsafe(`INSERT INTO ${t} VALUES (5, 'v', false, 9)`);
      }
      await same("a, c, b, d", "a column with a default added while streaming");
      assert.doesNotMatch(kvsz.output, /\b(ERR|WRN)\b/);
      assert.equal(await kvsz.stop(), 0);
    },
});
