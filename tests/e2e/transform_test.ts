/**
 * `filter` and `set` end to end: the initial copy and the stream write the
 * same rows ("the source, filtered and transformed"), rows moving in and out
 * of the filter in clone, history and append mode, a key computed by `set`,
 * every CEL type, the error policy and config errors, and a kuvasz-streamer
 * map file with both keys run unchanged.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { runCli } from "../support/run_cli.ts";
import { scrape, valueOf } from "../support/prometheus.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";
import type { Sql } from "../../lib/pg/connect.ts";

let cluster: TestCluster;

async function setup(
  c: TestCluster,
): Promise<{ src: Sql; dst: Sql; srcDb: string; dstDb: string }> {
  cluster = c;
  const srcDb = await cluster.createDatabase("src");
  const dstDb = await cluster.createDatabase("dst");
  return { src: cluster.sql(srcDb), dst: cluster.sql(dstDb), srcDb, dstDb };
}

function config(srcDb: string, dstDb: string, tables: Record<string, unknown>) {
  return {
    destination: { url: cluster.url(dstDb) },
    databases: [{ database: srcDb, urls: [{ url: cluster.url(srcDb), sid: 1 }], tables }],
    apply: { commit_interval_ms: 50 },
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
  };
}

/** What the target must hold: the source through the same filter and set, in SQL. */
const EXPECTED_ACCT = `SELECT id * 10 AS id, upper(name) || '/' || type AS label,
    (amount * 2)::float8 AS amount2, big + 1 AS big1, ratio / 2 AS ratio, NOT active AS inactive,
    substring(raw FROM 1 FOR 1) AS head, at + interval '1 hour' AS at_next,
    extract(year FROM born)::int AS born_year, coalesce(doc->>'k', 'none') AS doc_k,
    cardinality(tags) AS ntags, coalesce(note, 'no note') AS note
  FROM acct WHERE type <> 'private'`;

const ACCT_MAPPING = {
  filter: '_type != "private"',
  set: {
    id: "id * 10",
    label: 'name.upperAscii() + "/" + _type',
    amount2: "amount * 2.0",
    big1: "big + 1",
    ratio: "ratio / 2.0",
    inactive: "!active",
    head: "raw.sliceBytes(0, 1)",
    at_next: 'at + duration("1h")',
    born_year: "born.getFullYear()",
    doc_k: 'has(doc.k) ? string(doc.k) : "none"',
    ntags: "size(tags)",
    note: 'note == null ? "no note" : note',
  },
};

clusterSuite("filter and set", {
  "clone: copy and stream agree, rows move in and out, a computed key finds its row, every CEL type":
    async (c) => {
      const { src, dst, srcDb, dstDb } = await setup(c);
      await src.unsafe(`CREATE TABLE acct (id int PRIMARY KEY, type text NOT NULL, name text,
        amount numeric(10,2), big bigint, ratio float8, active bool, raw bytea, at timestamptz,
        born date, doc jsonb, tags text[], note text)`);
      const row = (id: number, type: string, note: string | null) =>
        `(${id}, '${type}', 'n${id}', ${id}.25, 9007199254740990 + ${id}, ${id} / 4.0, ${
          id % 2 === 0
        }, '\\x0a0b', '2024-02-29 10:00:00.123+00', '1999-12-31', '{"k": "v${id}"}', '{a,b}', ${
          note === null ? "NULL" : `'${note}'`
        })`;
      await src.unsafe(
        `INSERT INTO acct VALUES ${
          [row(1, "public", "a\tb\\c"), row(2, "private", null), row(3, "public", null)].join(", ")
        }`,
      );
      await src.unsafe(`UPDATE acct SET doc = '{}' WHERE id = 3`);
      await dst.unsafe(`CREATE TABLE acct_out (id int PRIMARY KEY, label text, amount2 float8,
        big1 bigint, ratio float8, inactive bool, head bytea, at_next timestamptz, born_year int,
        doc_k text, ntags int, note text)`);
      await using kvsz = KvszProcess.start([
        "run",
        "--config",
        await writeConfig(config(srcDb, dstDb, { acct: { target: "acct_out", ...ACCT_MAPPING } })),
      ]);
      const expected = () => tableRows(src, `(${EXPECTED_ACCT}) e`);
      const target = () => tableRows(dst, "acct_out");
      await waitForEqualRows(expected, target, { what: "initial copy", kvsz });
      assert.equal((await target()).length, 2);

      await src.unsafe(
        `INSERT INTO acct VALUES ${row(4, "public", "x")}, ${row(5, "private", "y")}`,
      );
      await src.unsafe(`UPDATE acct SET type = 'private' WHERE id = 1`); // moves out
      await src.unsafe(`UPDATE acct SET type = 'public' WHERE id = 2`); // moves in
      await src.unsafe(`UPDATE acct SET name = 'renamed' WHERE id = 3`); // found by id * 10
      await src.unsafe(`DELETE FROM acct WHERE id IN (4, 5)`);
      await src.unsafe(`INSERT INTO acct VALUES ${row(6, "public", null)}`);
      await waitForEqualRows(expected, target, { what: "streamed changes", kvsz });
      assert.deepEqual((await target()).map((r) => JSON.parse(r).id), [20, 30, 60]);
      assert.doesNotMatch(kvsz.output, /anomaly/); // moving out and in is expected, not counted
      // TRUNCATE empties the target (every row of it came from the table), then streams on.
      await src.unsafe(`TRUNCATE acct`);
      await src.unsafe(
        `INSERT INTO acct VALUES ${row(7, "public", "z")}, ${row(8, "private", "")}`,
      );
      await waitForEqualRows(expected, target, { what: "after a TRUNCATE", kvsz });
      assert.deepEqual((await target()).map((r) => JSON.parse(r).id), [70]);
      assert.equal(await kvsz.stop(), 0);
    },

  "history closes a row moving out of the filter; append keeps it": async (c) => {
    const { src, dst, srcDb, dstDb } = await setup(c);
    for (const t of ["h", "a"]) {
      await src.unsafe(`CREATE TABLE ${t} (id int PRIMARY KEY, type text, v int)`);
      await src.unsafe(`INSERT INTO ${t} VALUES (1, 'public', 1), (2, 'private', 2)`);
    }
    await dst.unsafe(`CREATE TABLE h (id int, type text, v int,
      kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`);
    await dst.unsafe(`CREATE TABLE a (id int PRIMARY KEY, type text, v int)`);
    const filter = '_type != "private"';
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig(config(srcDb, dstDb, {
        h: { type: "history", filter },
        a: { type: "append", filter },
      })),
    ]);
    const current = () =>
      tableRows(dst, "h", "id, type, v", "kvsz_end = '9999-01-01' AND NOT kvsz_deleted");
    const wanted = (t: string) => () => tableRows(src, t, "id, type, v", "type <> 'private'");
    await waitForEqualRows(wanted("h"), current, { what: "history copy", kvsz });
    await waitForEqualRows(wanted("a"), () => tableRows(dst, "a"), { what: "append copy", kvsz });
    for (const t of ["h", "a"]) {
      await src.unsafe(`UPDATE ${t} SET type = 'private', v = 10 WHERE id = 1`); // moves out
      await src.unsafe(`UPDATE ${t} SET type = 'public', v = 20 WHERE id = 2`); // moves in
    }
    await waitForEqualRows(wanted("h"), current, { what: "history stream", kvsz });
    // id 1's only version, closed (not deleted) when it moved out; id 2's one version
    const versions = () =>
      tableRows(dst, "h", "id, v, kvsz_end <> '9999-01-01' AS closed, kvsz_deleted AS d");
    assert.deepEqual((await versions()).map((r) => JSON.parse(r)), [
      { id: 1, v: 1, closed: true, d: true },
      { id: 2, v: 20, closed: false, d: false },
    ]);
    // append: the row that moved out keeps its last version in the filter
    const appended = ['{"id":1,"type":"public","v":1}', '{"id":2,"type":"public","v":20}'];
    await waitForEqualRows(() => Promise.resolve(appended), () => tableRows(dst, "a"), { kvsz });
    assert.equal(await kvsz.stop(), 0);
  },

  "errors: skip hides the row and logs its key, pass lets it through, a type error is a config error":
    async (c) => {
      const { src, dst, srcDb, dstDb } = await setup(c);
      for (const t of ["e1", "e2"]) {
        await src.unsafe(`CREATE TABLE ${t} (id int PRIMARY KEY, code text)`);
        await dst.unsafe(`CREATE TABLE ${t} (id int PRIMARY KEY, code text)`);
      }
      const filter = "int(code) > 0";
      // Row 0 fails in the initial copy, row 2 in the stream: both are anomalies of the table.
      for (const t of ["e1", "e2"]) await src.unsafe(`INSERT INTO ${t} VALUES (0, 'y')`);
      const port = freePort();
      await using kvsz = KvszProcess.start([
        "run",
        "--config",
        await writeConfig({
          ...config(srcDb, dstDb, {
            e1: { filter }, // on_error: skip, the default
            e2: { filter, on_error: "pass" },
          }),
          metrics: { listen: `127.0.0.1:${port}` },
        }),
      ]);
      await kvsz.waitForOutput(/streaming from/);
      for (const t of ["e1", "e2"]) await src.unsafe(`INSERT INTO ${t} VALUES (1, '5'), (2, 'x')`);
      await waitForEqualRows(
        () => Promise.resolve(['{"id":1,"code":"5"}']),
        () => tableRows(dst, "e1"),
        { kvsz },
      );
      await waitForEqualRows(
        () =>
          Promise.resolve(['{"id":0,"code":"y"}', '{"id":1,"code":"5"}', '{"id":2,"code":"x"}']),
        () => tableRows(dst, "e2"),
        { kvsz },
      );
      await kvsz.waitForOutput(/filter of public\.e1 failed for key \(0\): .*on_error: skip/);
      await kvsz.waitForOutput(/filter of public\.e1 failed for key \(2\): .*on_error: skip/);
      const failed = valueOf(await scrape(port), "kvsz_anomalies_total", {
        table: "public.e1",
        kind: "expression_error",
      });
      assert.equal(failed, 2, "one failure in the copy, one in the stream");
      assert.equal(await kvsz.stop(), 0);

      // A type error: said by validate and at start, with file, line, key path and position.
      const file = await writeConfig(config(srcDb, dstDb, {
        e1: { set: { code: "code + 1" } },
      }));
      const problem =
        /kvsz\.yaml:\d+: databases\[0\]\.tables\.e1\.set\.code: no such overload: string \+ int \(line 1, column 1 of the expression\)/;
      const validate = await runCli(["validate", "--config", file]);
      assert.notEqual(validate.code, 0, validate.output);
      assert.match(validate.output, problem);
      // --skip-checks: the pipeline's own check at start (as after a SIGHUP or for a discovered
      // source), on a table already copied, where no copy and no change would say it.
      await using bad = KvszProcess.start(["run", "--skip-checks", "--config", file]);
      await bad.waitForOutput(problem);
      await bad.stop();
    },

  "a kuvasz-streamer map file with filter and set runs unchanged": async (c) => {
    const { src, dst, srcDb, dstDb } = await setup(c);
    await src.unsafe(
      `CREATE TABLE orders (id int PRIMARY KEY, type text, status text, amount numeric(10,2))`,
    );
    await src.unsafe(
      `INSERT INTO orders VALUES (1, 'web', 'draft', 10), (2, 'shop', 'paid', 12.5)`,
    );
    await dst.unsafe(
      `CREATE TABLE orders (sid text, id int, status text, total text, PRIMARY KEY (sid, id))`,
    );
    const map = [{
      database: srcDb,
      urls: [{ url: cluster.url(srcDb), sid: 12 }],
      tables: {
        orders: {
          type: "clone",
          filter: 'status != "draft" && _type != "internal"',
          set: { id: "id", status: "status.upperAscii()", total: "string(amount)" },
        },
      },
    }];
    const file = await writeConfig({
      destination: { url: cluster.url(dstDb) },
      map_file: "map.yaml",
      apply: { commit_interval_ms: 50 },
      metrics: { listen: "" },
    });
    await Deno.writeTextFile(file.replace(/kvsz\.yaml$/, "map.yaml"), stringify(map));
    await using kvsz = KvszProcess.start(["run", "--config", file]);
    const expected = () =>
      tableRows(
        src,
        `(SELECT '12' AS sid, id, upper(status) AS status, amount::float8::text AS total
            FROM orders WHERE status <> 'draft' AND type <> 'internal') e`,
      );
    const target = () => tableRows(dst, "orders");
    await waitForEqualRows(expected, target, { what: "copy", kvsz });
    await src.unsafe(
      `INSERT INTO orders VALUES (3, 'internal', 'paid', 1), (4, 'web', 'new', 7.5)`,
    );
    await src.unsafe(`UPDATE orders SET status = 'paid' WHERE id = 1`);
    await waitForEqualRows(expected, target, { what: "stream", kvsz });
    assert.equal((await target()).length, 3);
    assert.equal(await kvsz.stop(), 0);
  },
});
