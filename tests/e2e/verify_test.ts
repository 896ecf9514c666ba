/**
 * `kvsz verify` against real servers: tables copied by a real `kvsz run` are
 * equal; rows changed, deleted and inserted behind kvsz's back at the
 * destination are named by key; the JSON report; no transient difference
 * while kvsz streams and the source writes; schema differences; a target with
 * `sid` compared per source; a differing chunk narrowed to the rows that differ.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import {
  KvszProcess,
  runConfig,
  tableRows,
  waitForEqualRows,
  writeConfig,
} from "../support/kvsz.ts";
import { type CliResult, runCli } from "../support/run_cli.ts";
import type { Sql } from "../../lib/pg/connect.ts";
import type { VerifyReport } from "../../lib/verify/report.ts";

/** The tables every data case starts from, on the source and (empty) at the destination. */
const SCHEMA = [
  `CREATE TABLE t1 (id int PRIMARY KEY, name text, v numeric(10,2))`,
  `CREATE INDEX t1_name ON t1 (name)`,
  `CREATE TABLE pairs (a text, b int, note text, PRIMARY KEY (a, b))`,
  `CREATE TABLE loose (k int, w text)`,
  `CREATE TABLE ev (id int PRIMARY KEY, body text)`,
];

const TABLES = { t1: null, pairs: null, loose: null, ev: { type: "append" } };

async function createTables(src: Sql, dst: Sql): Promise<void> {
  for (const ddl of SCHEMA) {
    await src.unsafe(ddl);
    await dst.unsafe(ddl);
  }
  await src.unsafe(
    `INSERT INTO t1 SELECT g, CASE WHEN g % 13 = 0 THEN NULL ELSE 'n' || g END, g * 1.5
       FROM generate_series(1, 1000) g`,
  );
  await src.unsafe(
    `INSERT INTO pairs SELECT chr(97 + g % 5) || g % 7, g, 'note ' || g FROM generate_series(1, 300) g`,
  );
  await src.unsafe(`INSERT INTO loose SELECT g % 10, 'w' || g FROM generate_series(1, 50) g`);
  await src.unsafe(`INSERT INTO ev VALUES (1, 'a'), (2, 'b')`);
}

/** A source and destination copied by a real `kvsz run` (stopped again); the config's path. */
async function copiedByKvsz(c: TestCluster): Promise<{ src: Sql; dst: Sql; config: string }> {
  const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
  await createTables(src as unknown as Sql, dst as unknown as Sql);
  const config = await writeConfig(runConfig(c, srcDb, dstDb, TABLES));
  await using kvsz = KvszProcess.start(["run", "--config", config]);
  for (const t of ["t1", "pairs", "loose"]) {
    await waitForEqualRows(
      () => tableRows(src as unknown as Sql, t),
      () => tableRows(dst as unknown as Sql, t),
      { what: `copy of ${t}`, kvsz },
    );
  }
  assert.equal(await kvsz.stop(), 0, kvsz.output);
  return { src: src as unknown as Sql, dst: dst as unknown as Sql, config };
}

function verify(config: string, ...flags: string[]): Promise<CliResult> {
  return runCli(["verify", "--config", config, ...flags], { timeoutMs: 180_000 });
}

/** Tampers with the destination behind kvsz's back: a row changed, one deleted, one inserted. */
async function tamper(dst: Sql): Promise<void> {
  await dst.unsafe(`UPDATE t1 SET name = 'changed' WHERE id = 5`);
  await dst.unsafe(`DELETE FROM t1 WHERE id = 777`);
  await dst.unsafe(`INSERT INTO t1 VALUES (5000, 'extra', 1)`);
  await dst.unsafe(`UPDATE pairs SET note = NULL WHERE b = 42`);
  await dst.unsafe(`UPDATE loose SET w = 'other' WHERE w = 'w7'`);
}

clusterSuite("kvsz verify", {
  "source and destination copied by kvsz run are equal: exit 0, each table ok": async (c) => {
    const { config } = await copiedByKvsz(c);
    const r = await verify(config, "--chunk-rows", "100");
    assert.equal(r.code, 0, r.output);
    assert.match(
      r.stdout,
      /^ok {3}\S+ sid 1 public\.t1 → public\.t1: 1000 rows, 11 chunks, equal$/m,
    );
    assert.match(r.stdout, /^ok {3}\S+ sid 1 public\.pairs → public\.pairs: 300 rows, 4 chunks/m);
    assert.match(r.stdout, /^ok {3}\S+ sid 1 public\.loose → public\.loose: 50 rows, 1 chunk,/m);
    assert.match(r.stdout, /^skip \S+ sid 1 public\.ev → public\.ev: append mode/m);
    assert.match(r.stdout, /4 tables: 3 equal, 0 different, 1 skipped, 0 not compared/);
  },

  "rows changed, deleted and inserted at the destination are named by key: exit 1": async (c) => {
    const { dst, config } = await copiedByKvsz(c);
    await tamper(dst);
    const r = await verify(config, "--chunk-rows", "100");
    assert.equal(r.code, 1, r.output);
    assert.match(
      r.stdout,
      /^FAIL \S+ sid 1 public\.t1 → public\.t1: 1000 rows, 11 chunks, 3 rows differ in 3 chunks$/m,
    );
    assert.match(r.stdout, /^ {7}id=5: different in name$/m);
    assert.match(r.stdout, /^ {7}id=777: missing at destination$/m);
    assert.match(r.stdout, /^ {7}id=5000: extra at destination/m);
    assert.match(r.stdout, /^ {7}\(a=c0, b=42\): different in note$/m);
    assert.match(
      r.stdout,
      /^FAIL \S+ sid 1 public\.loose → public\.loose: 50 rows, 1 chunk, contents differ$/m,
    );
    assert.match(r.stdout, /4 tables: 0 equal, 3 different, 1 skipped/);
    assert.doesNotMatch(r.output, /\bat \S+\.ts:\d+/, "no stack trace");
  },

  "--json prints the report as JSON": async (c) => {
    const { dst, config } = await copiedByKvsz(c);
    await tamper(dst);
    const r = await verify(config, "--json", "--chunk-rows", "100");
    assert.equal(r.code, 1, r.output);
    const report = JSON.parse(r.stdout) as VerifyReport;
    assert.equal(report.equal, false);
    assert.deepEqual(report.summary, { tables: 4, equal: 0, different: 3, skipped: 1, error: 0 });
    const t1 = report.tables.find((t) => t.target === "public.t1")!;
    assert.equal(t1.verdict, "different");
    assert.equal(t1.sourceRows, 1000);
    assert.equal(t1.chunks, 11);
    assert.equal(t1.rowDifferenceCount, 3);
    const byKey = Object.fromEntries(t1.rowDifferences.map((d) => [d.key.id, d]));
    assert.deepEqual(byKey["5"], { key: { id: "5" }, kind: "different", columns: ["name"] });
    assert.deepEqual(byKey["777"], { key: { id: "777" }, kind: "missing" });
    assert.deepEqual(byKey["5000"], { key: { id: "5000" }, kind: "extra" });
    const ev = report.tables.find((t) => t.target === "public.ev")!;
    assert.equal(ev.verdict, "skipped");
  },

  "a chunk that differs is narrowed by key before rows are read": async (c) => {
    const { dst, config } = await copiedByKvsz(c);
    await tamper(dst);
    const r = await verify(config, "--json"); // t1's 1000 rows in one chunk
    assert.equal(r.code, 1, r.output);
    const report = JSON.parse(r.stdout) as VerifyReport;
    const t1 = report.tables.find((t) => t.target === "public.t1")!;
    assert.equal(t1.chunks, 1);
    assert.equal(t1.differingChunks, 1);
    assert.deepEqual(t1.rowDifferences.map((d) => `${d.key.id} ${d.kind}`).sort(), [
      "5 different",
      "5000 extra",
      "777 missing",
    ]);
    // Read key by key: the three sub-ranges of ~63 rows that differ, not 1000 rows a side.
    assert.ok(t1.rowsCompared < 500, `${t1.rowsCompared} rows compared key by key`);
  },

  "while kvsz streams and the source writes, only real differences are reported": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    const ddl = `CREATE TABLE s (id int PRIMARY KEY, v int NOT NULL)`;
    await src.unsafe(ddl);
    await dst.unsafe(ddl);
    await src.unsafe(`INSERT INTO s SELECT g, 0 FROM generate_series(1, 2000) g`);
    const config = await writeConfig(runConfig(c, srcDb, dstDb, { s: null }));
    await using kvsz = KvszProcess.start(["run", "--config", config]);
    await waitForEqualRows(
      () => tableRows(src as unknown as Sql, "s"),
      () => tableRows(dst as unknown as Sql, "s"),
      { kvsz },
    );
    let writing = true;
    let writes = 0;
    const writer = (async () => {
      let next = 100_000;
      while (writing) {
        await src.unsafe(`UPDATE s SET v = v + 1 WHERE id = 1 + floor(random() * 1000)::int`);
        await src.unsafe(`INSERT INTO s VALUES (${next++}, 1)`);
        writes += 2;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      const r = await verify(config, "--chunk-rows", "200");
      assert.equal(r.code, 0, r.output + kvsz.output.slice(-2000));
      assert.match(r.stdout, /^ok {3}\S+ sid 1 public\.s → public\.s: /m);
      // A row changed at the destination behind kvsz's back is found while it streams.
      await dst.unsafe(`UPDATE s SET v = -1 WHERE id = 1500`);
      const t = await verify(config, "--json", "--chunk-rows", "200");
      assert.equal(t.code, 1, t.output);
      const report = JSON.parse(t.stdout) as VerifyReport;
      assert.deepEqual(report.tables[0].rowDifferences, [
        { key: { id: "1500" }, kind: "different", columns: ["v"] },
      ]);
    } finally {
      writing = false;
      await writer;
    }
    assert.ok(writes > 20, `the source kept writing (${writes} writes)`);
    assert.equal(await kvsz.stop(), 0, kvsz.output);
  },

  "schema differences are reported: a missing index, a column type": async (c) => {
    const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL, n int)`);
    await src.unsafe(`CREATE INDEX t_name ON t (name)`);
    await src.unsafe(`CREATE UNIQUE INDEX t_n ON t (n) WHERE n > 0`);
    await dst.unsafe(`CREATE TABLE t (id int PRIMARY KEY, name varchar(20) NOT NULL, n int)`);
    await dst.unsafe(`CREATE UNIQUE INDEX another_name ON t (n) WHERE n > 0`);
    for (const sql of [src, dst]) await sql.unsafe(`INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2)`);
    const config = await writeConfig(runConfig(c, srcDb, dstDb, { t: null }));
    const r = await verify(config);
    assert.equal(r.code, 1, r.output);
    assert.match(
      r.stdout,
      /^FAIL \S+ sid 1 public\.t → public\.t: 2 rows, 1 chunk, 2 schema differences$/m,
    );
    assert.match(
      r.stdout,
      /^ {7}schema: column name: type text at source, character varying\(20\) at destination$/m,
    );
    assert.match(
      r.stdout,
      /^ {7}schema: index t_name \(USING btree \(name\)\): missing at destination$/m,
    );
    const bad = await runCli(["verify", "--config", config, "--chunk-rows", "many"]);
    assert.equal(bad.code, 2, bad.output);
    assert.match(bad.stderr, /--chunk-rows must be a whole number/);
    assert.doesNotMatch(bad.output, /\bat \S+\.ts:\d+/);
  },

  "an unreachable source is an ERR line without its password, a missing target a FAIL": async (
    c,
  ) => {
    const { srcDb, dstDb, src } = await c.sourceAndDestination();
    await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY)`);
    const secret = "Pw-n3ver-Pr1nted";
    const config = await writeConfig({
      destination: { url: c.url(dstDb) },
      databases: [{
        database: "app",
        urls: [
          { url: c.url(srcDb), sid: "1" },
          { url: `postgres://someone:${secret}@127.0.0.1:1/nowhere?connect_timeout=2`, sid: "2" },
        ],
        tables: { t: null },
      }],
      metrics: { listen: "" },
    });
    const r = await verify(config);
    assert.equal(r.code, 1, r.output);
    assert.match(
      r.stdout,
      /^FAIL app sid 1 public\.t → public\.t: 1 schema difference\n {7}schema: table missing at destination$/m,
    );
    assert.match(r.stdout, /^ERR {2}app sid 2 \(127\.0\.0\.1:1\/nowhere\): unreachable: /m);
    assert.ok(!r.output.includes(secret), r.output);
  },

  "a target with sid holding two sources' rows is compared per source": async (c) => {
    const one = await c.createDatabase("src");
    const two = await c.createDatabase("src");
    const dstDb = await c.createDatabase("dst");
    const dst = c.sql(dstDb);
    for (const db of [one, two]) {
      await c.sql(db).unsafe(`CREATE TABLE t (id int PRIMARY KEY, name text)`);
    }
    await c.sql(one).unsafe(`INSERT INTO t SELECT g, 'one ' || g FROM generate_series(1, 300) g`);
    await c.sql(two).unsafe(`INSERT INTO t SELECT g, 'two ' || g FROM generate_series(1, 200) g`);
    await dst.unsafe(`CREATE TABLE t (sid text, id int, name text, PRIMARY KEY (sid, id))`);
    await dst.unsafe(
      `INSERT INTO t SELECT '1', g, 'one ' || g FROM generate_series(1, 300) g;
       INSERT INTO t SELECT '2', g, 'two ' || g FROM generate_series(1, 200) g`,
    );
    const config = await writeConfig({
      destination: { url: c.url(dstDb) },
      databases: [{
        database: "tenants",
        urls: [{ url: c.url(one), sid: "1" }, { url: c.url(two), sid: "2" }],
        tables: { t: null },
      }],
      metrics: { listen: "" },
    });
    const equal = await verify(config, "--chunk-rows", "50");
    assert.equal(equal.code, 0, equal.output);
    assert.match(
      equal.stdout,
      /^ok {3}tenants sid 1 public\.t → public\.t: 300 rows, 7 chunks, equal$/m,
    );
    assert.match(
      equal.stdout,
      /^ok {3}tenants sid 2 public\.t → public\.t: 200 rows, 5 chunks, equal$/m,
    );
    await dst.unsafe(`UPDATE t SET name = 'x' WHERE sid = '2' AND id = 250 - 100`);
    const r = await verify(config, "--chunk-rows", "50");
    assert.equal(r.code, 1, r.output);
    assert.match(r.stdout, /^ok {3}tenants sid 1 public\.t/m);
    assert.match(
      r.stdout,
      /^FAIL tenants sid 2 public\.t → public\.t: 200 rows, 5 chunks, 1 row differs in 1 chunk$/m,
    );
    assert.match(r.stdout, /^ {7}id=150: different in name$/m);
    const only = await verify(config, "--source", "1");
    assert.equal(only.code, 0, only.output);
    assert.doesNotMatch(only.stdout, /sid 2/);
  },
});
