/**
 * Initial sync end to end: a large table copied as page ranges in parallel
 * (binary COPY where the types allow, text otherwise), `kill -9` in the middle
 * of such a copy (never marked synced; the restart merges without doubling),
 * and the `sync.rate` limit measured over a real copy.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { connect } from "../../lib/pg/connect.ts";
import { pipeCopy } from "../../lib/source/copy_pipe.ts";

const SID = "7";

function config(
  c: TestCluster,
  srcDb: string,
  dstDb: string,
  tables: Record<string, unknown>,
  sync: Record<string, number>,
) {
  return {
    destination: { url: c.url(dstDb) },
    databases: [{ database: srcDb, urls: [{ url: c.url(srcDb), sid: SID }], tables }],
    apply: { commit_interval_ms: 50 },
    sync,
    metrics: { listen: "" },
    log: { level: "info", format: "json" },
  };
}

/** Log lines of kvsz's JSON output whose message starts with `prefix`. */
function logLines(output: string, prefix: string): { time: number; message: string }[] {
  return output.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l))
    .filter((e) => e.message.startsWith(prefix))
    .map((e) => ({ time: Date.parse(e.time), message: e.message }));
}

/** Rows of every type the binary path handles, plus NULLs; ~120 bytes each. */
const WIDE_COLUMNS = `id int PRIMARY KEY, n numeric(12,3), t text, ts timestamptz, d date,
  j jsonb, b bytea, a int[], f float8, u uuid, c char(20)`;
const WIDE_ROWS = (from: number, to: number) =>
  `INSERT INTO wide SELECT g, g * 1.5, 'row ' || g || repeat('x', g % 40),
     '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute', DATE '2020-01-01' + g % 1000,
     jsonb_build_object('g', g, 'odd', g % 2 = 1), decode(lpad(to_hex(g), 8, '0'), 'hex'),
     ARRAY[g, g + 1], g / 7.0, md5(g::text)::uuid, 'c' || g % 10
   FROM generate_series(${from}, ${to}) g`;

clusterSuite("kvsz run: initial sync", {
  "a table above split_mb is copied as page ranges in parallel, exactly (binary and text)": async (
    c,
  ) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
    await dst.unsafe(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')`);
    await src.unsafe(`CREATE TABLE wide (${WIDE_COLUMNS})`);
    await src.unsafe(WIDE_ROWS(1, 30_000));
    await src.unsafe(`UPDATE wide SET t = NULL, j = NULL, a = NULL WHERE id % 13 = 0`);
    // An enum column (user type): this table is copied in text format.
    await src.unsafe(`CREATE TABLE moods (id int PRIMARY KEY, m mood, note text)`);
    await src.unsafe(
      `INSERT INTO moods SELECT g, (ARRAY['sad','ok','happy']::mood[])[g % 3 + 1], repeat('n', 200)
         FROM generate_series(1, 12000) g`,
    );
    await dst.unsafe(`CREATE TABLE wide (${WIDE_COLUMNS})`);
    await dst.unsafe(`CREATE TABLE moods (id int PRIMARY KEY, m mood, note text)`);
    // History with sid: the copy adds sid and the kvsz_* bounds itself.
    await dst.unsafe(
      `CREATE TABLE wide_h (sid text, ${
        WIDE_COLUMNS.replace(" PRIMARY KEY", "")
      }, kvsz_start timestamptz NOT NULL, kvsz_end timestamptz NOT NULL, kvsz_deleted boolean NOT NULL,
       PRIMARY KEY (sid, id, kvsz_start))`,
    );
    // A copy of `wide` for the history target (one source table maps to one target).
    await src.unsafe(`CREATE TABLE wide_src AS SELECT * FROM wide`);
    await src.unsafe(`ALTER TABLE wide_src ADD PRIMARY KEY (id)`);
    const path = await writeConfig(config(c, srcDb, dstDb, {
      wide: null,
      moods: null,
      wide_src: { target: "wide_h", type: "history" },
    }, { split_mb: 1 }));
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await kvsz.waitForOutput(/streaming from/, 120_000);
    for (const table of ["wide", "moods", "wide_src"]) {
      // TID range scans exist from PostgreSQL 14 on; older sources copy each table whole.
      const split = new RegExp(`copying ${table} \\(about \\d+ rows, 4 page ranges in parallel\\)`);
      if (c.major >= 14) assert.match(kvsz.output, split, `${table} is split`);
      else assert.doesNotMatch(kvsz.output, split, `${table} is copied whole`);
    }
    assert.deepEqual(await tableRows(dst, "wide"), await tableRows(src, "wide"));
    assert.deepEqual(await tableRows(dst, "moods"), await tableRows(src, "moods"));
    const cols = "id, n, t, ts, d, j, b, a, f, u, c";
    assert.deepEqual(
      await tableRows(dst, "wide_h", cols, `sid = '${SID}' AND kvsz_end = '9999-01-01'`),
      await tableRows(src, "wide_src", cols),
    );
    const synced = await dst.unsafe(
      `SELECT source_table, rows, synced_lsn::text AS lsn FROM kvsz.synced_tables ORDER BY 1`,
    );
    assert.deepEqual(
      synced.map((r) => [r.source_table, Number(r.rows), r.lsn !== "0/0"]),
      [["moods", 12000, true], ["wide", 30000, true], [
        "wide_src",
        30000,
        true,
      ]],
    );
    // And it streams afterwards.
    await src.unsafe(`UPDATE wide SET t = 'changed' WHERE id = 17`);
    await waitForEqualRows(() => tableRows(src, "wide"), () => tableRows(dst, "wide"), { kvsz });
    assert.equal(await kvsz.stop(), 0);
  },

  "kill -9 in the middle of a split copy: never marked synced, the restart removes its rows and copies again":
    async (c) => {
      if (c.major < 14) return; // no page ranges before PostgreSQL 14
      const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
      await src.unsafe(`CREATE TABLE wide (${WIDE_COLUMNS})`);
      await dst.unsafe(`CREATE TABLE wide (${WIDE_COLUMNS})`);
      await src.unsafe(WIDE_ROWS(1, 40_000));
      // Thin out the second half of the pages: its range commits at once while the
      // rate limit holds the first one back.
      await src.unsafe(`DELETE FROM wide WHERE id > 20000 AND id % 50 <> 0`);
      const path = await writeConfig(
        config(c, srcDb, dstDb, { wide: null }, { split_mb: 1, rate: 2000, burst: 100 }),
      );
      const first = KvszProcess.start(["run", "--config", path]);
      try {
        await waitFor(async () => {
          const [r] = await dst.unsafe(`SELECT count(*)::int AS n FROM wide`);
          return r.n > 0;
        }, { timeoutMs: 60_000, what: "the short range committed", context: () => first.output });
        const [mark] = await dst.unsafe(
          `SELECT synced_lsn::text AS lsn FROM kvsz.synced_tables WHERE source_table = 'wide'`,
        );
        assert.equal(mark?.lsn, "0/0", "a half-copied table is recorded as not synced");
      } finally {
        await first.stop("SIGKILL");
      }
      const [partial] = await dst.unsafe(`SELECT count(*)::int AS n FROM wide`);
      assert.ok(partial.n > 0 && partial.n < 20_400, `partial copy: ${partial.n} rows`);
      // Changes while kvsz is down, on rows of both ranges.
      await src.unsafe(`UPDATE wide SET t = 'later' WHERE id IN (5, 30000)`);
      await src.unsafe(`DELETE FROM wide WHERE id IN (6, 30050)`);
      await src.unsafe(WIDE_ROWS(50_001, 50_010));
      const path2 = await writeConfig(config(c, srcDb, dstDb, { wide: null }, { split_mb: 1 }));
      await using kvsz = KvszProcess.start(["run", "--config", path2]);
      await kvsz.waitForOutput(/streaming from/, 120_000);
      assert.match(kvsz.output, /removed the rows of the interrupted copy of wide/);
      await waitForEqualRows(() => tableRows(src, "wide"), () => tableRows(dst, "wide"), { kvsz });
      const [ranges] = await dst.unsafe(`SELECT count(*)::int AS n FROM kvsz.sync_ranges`);
      assert.equal(ranges.n, 0, "no range records left");
      const [synced] = await dst.unsafe(
        `SELECT synced_lsn::text AS lsn FROM kvsz.synced_tables WHERE source_table = 'wide'`,
      );
      assert.notEqual(synced.lsn, "0/0");
      assert.equal(await kvsz.stop(), 0);
    },

  "tables referencing each other by foreign key: parents are copied first, nothing fails": async (
    c,
  ) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    for (const db of [src, dst]) {
      await db.unsafe(`CREATE TABLE parent (id int PRIMARY KEY, name text);
        CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent, name text);
        CREATE TABLE grandchild (id int PRIMARY KEY, child_id int REFERENCES child);
        CREATE TABLE loner (id int PRIMARY KEY)`);
    }
    // The children are the largest, so by size alone they would be copied first.
    await src.unsafe(`INSERT INTO parent SELECT g, 'p' FROM generate_series(1, 1000) g;
      INSERT INTO child SELECT g, 1 + g % 1000, repeat('c', 50) FROM generate_series(1, 20000) g;
      INSERT INTO grandchild SELECT g, 1 + g % 20000 FROM generate_series(1, 30000) g;
      INSERT INTO loner SELECT generate_series(1, 10)`);
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(
        config(c, srcDb, dstDb, { grandchild: null, child: null, parent: null, loner: null }, {
          parallelism: 2,
        }),
      ),
    ]);
    await kvsz.waitForOutput(/streaming from/);
    for (const t of ["parent", "child", "grandchild", "loner"]) {
      assert.deepEqual(await tableRows(dst, t), await tableRows(src, t), t);
    }
    // In log order: a table's copy starts only after its parent's is committed.
    const events = logLines(kvsz.output, "cop").map((l) => l.message);
    const at = (prefix: string) => events.findIndex((m) => m.startsWith(prefix));
    assert.ok(at("copied parent") < at("copying child"), events.join("\n"));
    assert.ok(at("copied child") < at("copying grandchild"), events.join("\n"));
    assert.doesNotMatch(kvsz.output, /"level":"error"|violates foreign key/);
    assert.equal(await kvsz.stop(), 0);
  },

  "a row the destination rejects fails the copy with the server's message; the retry succeeds":
    async (c) => {
      const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
      await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
      await src.unsafe(
        `INSERT INTO t SELECT g, CASE WHEN g = 29990 THEN 'bad' ELSE repeat('v', 60) END
           FROM generate_series(1, 30000) g`,
      );
      await dst.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text CHECK (v <> 'bad'))`);
      const path = await writeConfig(config(c, srcDb, dstDb, { t: null }, {}));
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await kvsz.waitForOutput(/violates check constraint .*t_v_check/, 60_000);
      await src.unsafe(`UPDATE t SET v = 'fixed' WHERE id = 29990`);
      await kvsz.waitForOutput(/streaming from/, 60_000);
      assert.deepEqual(await tableRows(dst, "t"), await tableRows(src, "t"));
      assert.equal(await kvsz.stop(), 0);
    },

  "the driver-stream pipe (kept for TLS connections) copies exactly, text and binary": async (
    c,
  ) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE wide (${WIDE_COLUMNS})`);
    await src.unsafe(WIDE_ROWS(1, 20_000));
    await dst.unsafe(`CREATE TABLE wide (${WIDE_COLUMNS})`);
    const from = connect(c.url(srcDb));
    const to = connect(c.url(dstDb));
    try {
      for (const format of ["", " WITH (FORMAT binary)"]) {
        await to.unsafe(`TRUNCATE wide`);
        const rows = await pipeCopy(from, to, {
          copyOut: `COPY (SELECT * FROM wide) TO STDOUT${format}`,
          copyIn: `COPY wide FROM STDIN${format}`,
          binary: format !== "",
          onChunk: () => {},
        });
        assert.equal(rows, 20_000, `rows counted${format}`);
        assert.deepEqual(await tableRows(dst, "wide"), await tableRows(src, "wide"));
      }
    } finally {
      await Promise.all([from.end(), to.end()]);
    }
  },

  "sync.rate holds within 10 % over two tables copied in parallel": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    for (const t of ["r1", "r2"]) {
      await src.unsafe(`CREATE TABLE ${t} (id int PRIMARY KEY, pad text)`);
      await src.unsafe(
        `INSERT INTO ${t} SELECT g, repeat('p', 90) FROM generate_series(1, 25000) g`,
      );
      await dst.unsafe(`CREATE TABLE ${t} (id int PRIMARY KEY, pad text)`);
    }
    const rate = 10_000;
    const burst = 1_000;
    const path = await writeConfig(
      config(c, srcDb, dstDb, { r1: null, r2: null }, { rate, burst, parallelism: 2 }),
    );
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await kvsz.waitForOutput(/streaming from/, 60_000);
    const start = Math.min(...logLines(kvsz.output, "copying ").map((l) => l.time));
    const end = Math.max(...logLines(kvsz.output, "copied ").map((l) => l.time));
    // A token bucket lets `burst` rows through at once, then `rate` per second.
    const measured = (50_000 - burst) / ((end - start) / 1000);
    assert.ok(
      Math.abs(measured - rate) / rate <= 0.1,
      `copied at ${Math.round(measured)} rows/s with sync.rate ${rate} (${end - start} ms)`,
    );
    console.log(`sync.rate ${rate}: measured ${Math.round(measured)} rows/s`);
    assert.equal(await kvsz.stop(), 0);
  },
});
