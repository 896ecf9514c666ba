/**
 * Column drift while streaming: a source column renamed or dropped under a
 * target column kvsz filled. With `on_column_drift: stop` that table alone
 * stops (an error names table, column and fix; the metric and `kvsz status`
 * show it) while every other table streams on, and once the target is fixed a
 * SIGHUP or a restart copies it again: the rows equal the source's, nothing
 * lost, nothing doubled. With `continue` the table streams as kuvasz-streamer
 * does, and the drift is still logged, counted and shown.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { runCli } from "../support/run_cli.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";

function config(
  c: TestCluster,
  dbs: { srcDb: string; dstDb: string },
  tables: Record<string, unknown>,
  listen = "",
) {
  return {
    destination: { url: c.url(dbs.dstDb) },
    databases: [{ database: dbs.srcDb, urls: [{ url: c.url(dbs.srcDb), sid: 1 }], tables }],
    apply: { commit_interval_ms: 50 },
    metrics: { listen },
    log: { level: "info", format: "text" },
  };
}

/** The `/metrics` samples named `name` as `label=value,...` lines, sorted. */
async function series(port: number, name: string): Promise<string[]> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text.split("\n").filter((l) => l.startsWith(`${name}{`)).map((l) =>
    l.slice(name.length + 1, l.lastIndexOf("}")).replace(/database="[^"]*",sid="1",/, "") +
    ` ${l.slice(l.lastIndexOf(" ") + 1)}`
  ).sort();
}

/** `kvsz status --json`: the first source's drifted tables. */
async function statusDrift(path: string) {
  const r = await runCli(["status", "--config", path, "--json"]);
  assert.equal(r.code, 0, r.output);
  return JSON.parse(r.stdout).sources[0].drift as {
    sourceTable: string;
    target: string;
    stoppedLsn: string | null;
    columns: { column: string; kind: string }[];
  }[];
}

clusterSuite("kvsz run: column drift", {
  "stop: a renamed source column stops its table alone; fixing the target and SIGHUP copy it again":
    async (c) => {
      const dbs = await c.sourceAndDestination();
      const { src, dst } = dbs;
      for (const sql of [src, dst]) {
        await sql.unsafe(`CREATE TABLE t (id int PRIMARY KEY, d int, v text)`);
        await sql.unsafe(`CREATE TABLE other (id int PRIMARY KEY, v text)`);
      }
      await src.unsafe(`INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, 5) g`);
      await src.unsafe(`INSERT INTO other VALUES (1, 'one')`);
      const port = freePort();
      // The default policy is stop.
      const path = await writeConfig(
        config(c, dbs, { t: null, other: null }, `127.0.0.1:${port}`),
      );
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });

      await src.unsafe(`ALTER TABLE t RENAME COLUMN d TO d2`);
      await src.unsafe(`UPDATE t SET d2 = 222 WHERE id = 2`);
      await src.unsafe(`INSERT INTO t VALUES (6, 66, 'six')`);
      await src.unsafe(`DELETE FROM t WHERE id = 3`);
      await src.unsafe(`TRUNCATE other`);
      await src.unsafe(`INSERT INTO other VALUES (2, 'after the rename')`);
      await kvsz.waitForOutput(
        /ERR.*target public\.t column\(s\) d were filled from public\.t, which no longer has them.*table public\.t is stopped.*ALTER TABLE public\.t RENAME COLUMN d TO d2/,
      );
      // The other table streams on; t's changes, committed before, were left out.
      await waitForEqualRows(() => tableRows(src, "other"), () => tableRows(dst, "other"), {
        kvsz,
        what: "the other table streams on",
      });
      assert.deepEqual(await tableRows(dst, "t", "id, d", "id IN (2, 3, 6)"), [
        '{"id":2,"d":2}',
        '{"id":3,"d":3}',
      ]);
      assert.deepEqual(await series(port, "kvsz_column_drift"), [
        'table="public.t",column="d",kind="missing_at_source" 1',
        'table="public.t",column="d2",kind="missing_at_target" 1',
      ]);
      assert.deepEqual(await series(port, "kvsz_table_stopped"), ['table="public.t" 1']);
      const [stopped] = await statusDrift(path);
      assert.equal(stopped.sourceTable, "t");
      assert.equal(stopped.target, "public.t");
      assert.ok(stopped.stoppedLsn, "stopped at an LSN");
      assert.deepEqual(stopped.columns.map((d) => [d.column, d.kind]), [
        ["d", "missing_at_source"],
        ["d2", "missing_at_target"],
      ]);
      const text = await runCli(["status", "--config", path]);
      assert.match(
        text.stdout,
        /table t → public\.t: STOPPED at [0-9A-F]+\/[0-9A-F]+, column drift: d/,
      );
      assert.match(
        text.stdout,
        /WARN .* sid 1: stopped at .*target public\.t column\(s\) d were filled .* — fix: if d was renamed to d2/,
      );
      const validate = await runCli(["validate", "--config", path]);
      assert.match(
        validate.stdout,
        /WARN .*table public\.t .* columns: stopped at .*target public\.t column\(s\) d were filled .* fix: if d was renamed to d2: ALTER TABLE public\.t RENAME COLUMN d TO d2/,
      );

      // A reload without the fix keeps it stopped.
      let mark = kvsz.output.length;
      Deno.kill(kvsz.pid, "SIGHUP");
      await kvsz.waitForOutput(/streaming from/, 30_000, mark);
      assert.match(kvsz.output.slice(mark), /ERR.*table public\.t is stopped/);
      await src.unsafe(`UPDATE t SET v = 'still stopped' WHERE id = 1`);
      await src.unsafe(`INSERT INTO other VALUES (3, 'three')`);
      await waitForEqualRows(() => tableRows(src, "other"), () => tableRows(dst, "other"), {
        kvsz,
      });
      assert.deepEqual(await tableRows(dst, "t", "id, v", "id = 1"), ['{"id":1,"v":"v1"}']);

      // The fix, then a reload: t is copied again and streams on.
      await dst.unsafe(`ALTER TABLE t RENAME COLUMN d TO d2`);
      mark = kvsz.output.length;
      Deno.kill(kvsz.pid, "SIGHUP");
      await kvsz.waitForOutput(
        /public\.t was stopped for column drift at .*; copying it again/,
        30_000,
        mark,
      );
      await src.unsafe(`UPDATE t SET d2 = 555 WHERE id = 5`);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), {
        kvsz,
        what: "t copied again after the fix",
      });
      await waitForEqualRows(() => tableRows(src, "other"), () => tableRows(dst, "other"), {
        kvsz,
      });
      await waitFor(async () => (await series(port, "kvsz_table_stopped")).length === 0, {
        what: "kvsz_table_stopped gone",
      });
      assert.deepEqual(await series(port, "kvsz_column_drift"), []);
      assert.deepEqual(await statusDrift(path), []);
      assert.equal(await kvsz.stop(), 0);
    },

  "stop: a dropped source column stops a history table; dropping it at the target and a restart copy it again":
    async (c) => {
      const dbs = await c.sourceAndDestination();
      const { src, dst } = dbs;
      await src.unsafe(`CREATE TABLE h (id int PRIMARY KEY, b int, v text)`);
      await dst.unsafe(
        `CREATE TABLE h (id int, b int, v text, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
      );
      await src.unsafe(`INSERT INTO h SELECT g, g, 'v' || g FROM generate_series(1, 4) g`);
      const path = await writeConfig(
        config(c, dbs, { h: { type: "history", on_column_drift: "stop" } }),
      );
      const current = () =>
        tableRows(dst, "h", "id, v", "kvsz_end = '9999-01-01' AND NOT kvsz_deleted");
      {
        await using kvsz = KvszProcess.start(["run", "--config", path]);
        await waitForEqualRows(() => tableRows(src, "h", "id, v"), current, { kvsz });
        await src.unsafe(`ALTER TABLE h DROP COLUMN b`);
        await src.unsafe(`UPDATE h SET v = 'changed' WHERE id = 2`);
        await src.unsafe(`DELETE FROM h WHERE id = 4`);
        await kvsz.waitForOutput(/ERR.*target public\.h column\(s\) b were filled .*stopped/);
        assert.equal(await kvsz.stop(), 0);
      }
      assert.deepEqual(await current(), [
        '{"id":1,"v":"v1"}',
        '{"id":2,"v":"v2"}',
        '{"id":3,"v":"v3"}',
        '{"id":4,"v":"v4"}',
      ]);
      await dst.unsafe(`ALTER TABLE h DROP COLUMN b`);
      await src.unsafe(`INSERT INTO h VALUES (5, 'five')`);
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await kvsz.waitForOutput(/public\.h was stopped for column drift .* copying it again/);
      await src.unsafe(`UPDATE h SET v = 'after' WHERE id = 1`);
      await waitForEqualRows(() => tableRows(src, "h", "id, v"), current, {
        kvsz,
        what: "current versions equal after the copy",
      });
      // Each key has exactly one current version, and id 4 is closed as deleted.
      const versions = await tableRows(
        dst,
        "h",
        "id, count(*) FILTER (WHERE kvsz_end = '9999-01-01') AS current, bool_or(kvsz_deleted) AS deleted",
        "true GROUP BY id",
      );
      assert.deepEqual(versions, [
        '{"id":1,"current":1,"deleted":false}',
        '{"id":2,"current":1,"deleted":false}',
        '{"id":3,"current":1,"deleted":false}',
        '{"id":4,"current":0,"deleted":true}',
        '{"id":5,"current":1,"deleted":false}',
      ]);
      assert.equal(await kvsz.stop(), 0);
    },

  "continue: a dropped source column streams on as kuvasz does, and the metric and status show it":
    async (c) => {
      const dbs = await c.sourceAndDestination();
      const { src, dst } = dbs;
      // A kvsz schema from before drift was recorded: upgraded in place.
      await dst.unsafe(`CREATE SCHEMA kvsz`);
      await dst.unsafe(`CREATE TABLE kvsz.synced_tables (
        database text NOT NULL, sid text NOT NULL, source_table text NOT NULL,
        target text NOT NULL, synced_lsn pg_lsn NOT NULL,
        synced_at timestamptz NOT NULL DEFAULT now(), rows bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (database, sid, source_table))`);
      for (const sql of [src, dst]) {
        await sql.unsafe(`CREATE TABLE t (id int PRIMARY KEY, b int, v text)`);
      }
      await src.unsafe(`INSERT INTO t SELECT g, g, 'v' || g FROM generate_series(1, 3) g`);
      const port = freePort();
      const path = await writeConfig(
        config(c, dbs, { t: { on_column_drift: "continue" } }, `127.0.0.1:${port}`),
      );
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
      await src.unsafe(`ALTER TABLE t DROP COLUMN b`);
      await src.unsafe(`UPDATE t SET v = 'after drop' WHERE id = 2`);
      await src.unsafe(`INSERT INTO t VALUES (4, 'four')`);
      await waitForEqualRows(
        () => tableRows(src, "t", "id, v"),
        () => tableRows(dst, "t", "id, v"),
        {
          kvsz,
          what: "t streams on",
        },
      );
      assert.deepEqual(await tableRows(dst, "t", "id, b", "id IN (2, 4)"), [
        '{"id":2,"b":2}',
        '{"id":4,"b":null}',
      ]);
      assert.match(
        kvsz.output,
        /WRN.*target public\.t column\(s\) b were filled from public\.t, which no longer has them.*on_column_drift: continue.*Fix: for a column dropped at the source: drop it at the target/,
      );
      assert.doesNotMatch(kvsz.output, /\bERR\b/);
      assert.deepEqual(await series(port, "kvsz_column_drift"), [
        'table="public.t",column="b",kind="missing_at_source" 1',
      ]);
      assert.deepEqual(await series(port, "kvsz_table_stopped"), []);
      const drift = await statusDrift(path);
      assert.deepEqual(
        drift.map((t) => [t.sourceTable, t.stoppedLsn, t.columns.map((d) => d.column)]),
        [["t", null, ["b"]]],
      );

      // Accepting the drop: the column goes at the target too, a reload clears the drift.
      await dst.unsafe(`ALTER TABLE t DROP COLUMN b`);
      const mark = kvsz.output.length;
      Deno.kill(kvsz.pid, "SIGHUP");
      await kvsz.waitForOutput(/streaming from/, 30_000, mark);
      await waitFor(async () => (await series(port, "kvsz_column_drift")).length === 0, {
        what: "kvsz_column_drift gone",
      });
      assert.deepEqual(await statusDrift(path), []);
      await src.unsafe(`UPDATE t SET v = 'later' WHERE id = 1`);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
      assert.equal(await kvsz.stop(), 0);
    },
});
