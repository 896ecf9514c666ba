/**
 * The HTTP API of `kvsz run` on real servers, every answer checked against
 * docs/openapi.yaml: the token rules (none, wrong, right; a non-loopback
 * listener without token serves no API; open reads on loopback), the
 * kuvasz-compatible reads and their errors (400, 404, 405 in declarative
 * mode), kvsz's sources, and the actions: re-copy a table, pause, drop
 * (refused while streaming), resume. Database mode: a kuvasz-style script
 * adds two tables at run time (one without target, one with) that are copied
 * and stream while the first keeps streaming, records who changed what, and
 * the map survives a restart.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import {
  KvszProcess,
  runConfig,
  tableRows,
  waitFor,
  waitForEqualRows,
  writeConfig,
} from "../support/kvsz.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";
import { OpenApiSpec } from "../support/openapi.ts";

const TOKEN = "t0ken-for-the-api-test-5f2c";
const PASSWORD = "pw-never-shown-9q";
const spec = new OpenApiSpec();

/** A client of one kvsz's API that checks every answer against the OpenAPI file. */
function client(base: string) {
  return async (
    method: string,
    path: string,
    opts: { token?: string | null; body?: unknown } = {},
  ) => {
    const token = opts.token === undefined ? TOKEN : opts.token;
    const r = await fetch(base + path, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(opts.body !== undefined ? { "content-type": "application/json" } : {}),
      },
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    const text = await r.text();
    const body = text ? JSON.parse(text) : null;
    assert.deepEqual(spec.problems(method, path, r.status, body), [], text);
    assert.ok(!text.includes(PASSWORD) && !text.includes(TOKEN), `secret in ${text}`);
    return { status: r.status, body, headers: r.headers };
  };
}

/** A source with t1, t2 (rows) and t3, a destination, a role with a password, and a config. */
async function setup(c: TestCluster, tables: Record<string, unknown>) {
  const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
  await src.unsafe(`DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'apiuser') THEN
      CREATE ROLE apiuser SUPERUSER LOGIN PASSWORD '${PASSWORD}';
    END IF; END $$`);
  for (const t of ["t1", "t2", "t3", "t4"]) {
    await src.unsafe(`CREATE TABLE ${t} (id int PRIMARY KEY, v text)`);
    await src.unsafe(`INSERT INTO ${t} SELECT g, 'v' || g FROM generate_series(1, 50) g`);
  }
  await dst.unsafe(`CREATE TABLE t1 (id int PRIMARY KEY, v text)`);
  const port = freePort();
  const config = {
    ...runConfig(c, srcDb, dstDb, tables),
    metrics: { listen: `127.0.0.1:${port}` },
    api: { token_sha256: createHash("sha256").update(TOKEN).digest("hex") },
  };
  config.databases[0].urls[0].url = c.url(srcDb, "apiuser", PASSWORD);
  return { srcDb, dstDb, src, dst, port, config, api: client(`http://127.0.0.1:${port}`) };
}

const rows = (sql: Parameters<typeof tableRows>[0], t: string) => () => tableRows(sql, t);

clusterSuite("kvsz run: API", {
  "declarative: token rules, reads, errors, re-copy, pause, drop, resume": async (c) => {
    const { src, dst, srcDb, config, api } = await setup(c, { t1: null });
    await using kvsz = KvszProcess.start(["run", "--config", await writeConfig(config)]);
    await kvsz.waitForOutput(/streaming from/);

    // Tokens: none, wrong, right.
    assert.equal((await api("GET", "/api/db", { token: null })).status, 401);
    assert.equal((await api("GET", "/api/db", { token: "wrong" })).status, 401);
    const dbs = await api("GET", "/api/db");
    assert.equal(dbs.status, 200);
    assert.deepEqual(dbs.body, [{ id: 1, name: srcDb }]);
    assert.equal(dbs.headers.get("x-total-count"), "1");

    // kuvasz's reads, the password masked.
    const urls = await api("GET", "/api/url");
    assert.match(urls.body[0].url, /apiuser:\*\*\*@/);
    assert.deepEqual((await api("GET", "/api/tbl/1")).body, {
      id: 1,
      db_id: 1,
      schema: "public",
      name: "t1",
      type: "clone",
      target: "t1",
      partitions_regex: null,
    });
    for (const resource of ["db", "url", "tbl", "map"]) {
      const bad = await api("GET", `/api/${resource}/abc`);
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, "invalid_id");
      assert.equal((await api("GET", `/api/${resource}/999`)).status, 404);
    }
    const map = (await api("GET", "/api/map")).body;
    assert.deepEqual(
      map.map((e: Record<string, unknown>) => [e.id, e.name, e.replicated, e.present]),
      [[0, "t1", true, true], [1, "t2", false, false], [2, "t3", false, false], [
        3,
        "t4",
        false,
        false,
      ]],
    );
    assert.equal((await api("GET", "/api/map/1")).body.name, "t2");

    // Declarative mode: the map is the file's.
    const refused = await api("POST", "/api/db", { body: { name: "x" } });
    assert.equal(refused.status, 405);
    assert.match(refused.body.error, /declarative mode/);
    assert.equal((await api("POST", "/api/db", { token: null, body: { name: "x" } })).status, 401);
    assert.equal((await api("GET", "/api/nothing")).status, 404);
    assert.equal((await api("DELETE", "/api/source")).status, 405);

    // The source: streaming, its table's rows copied and operations applied.
    await src.unsafe(`INSERT INTO t1 VALUES (51, 'new')`);
    await waitForEqualRows(rows(src, "t1"), rows(dst, "t1"), { kvsz });
    const path = `/api/source/${srcDb}/1`;
    const source = (await api("GET", path)).body;
    assert.equal(source.state, "streaming");
    assert.equal(source.tables[0].rows_copied, 50);
    assert.equal(source.tables[0].operations.insert, 1);
    assert.deepEqual((await api("GET", "/api/source")).body.map((s: { sid: string }) => s.sid), [
      "1",
    ]);
    // An anomaly (the row already at the destination) is counted and listed with its key.
    await dst.unsafe(`INSERT INTO t1 VALUES (53, 'already here')`);
    await src.unsafe(`INSERT INTO t1 VALUES (53, 'from the source')`);
    await waitFor(async () => (await api("GET", path)).body.anomalies === 1);
    const [anomaly] = (await api("GET", path)).body.recent_anomalies;
    assert.deepEqual([anomaly.kind, anomaly.table, anomaly.detail], [
      "insert_existing",
      "public.t1",
      "53",
    ]);
    assert.equal((await api("GET", `/api/source/${srcDb}/9`)).status, 404);
    assert.equal((await api("GET", `/api/source/%ZZ/1`)).status, 400);

    // Re-copy: a row lost at the destination comes back, nothing is doubled.
    await dst.unsafe(`DELETE FROM t1 WHERE id <= 5`);
    assert.equal((await api("POST", `${path}/table/t9/recopy`)).status, 404);
    assert.equal((await api("POST", `${path}/table/t1/recopy`)).status, 200);
    await waitForEqualRows(rows(src, "t1"), rows(dst, "t1"), { kvsz });

    // Drop is refused while the source streams; paused, its slot and publication go.
    const streaming = await api("POST", `${path}/drop`);
    assert.equal(streaming.status, 409);
    assert.match(streaming.body.error, /pause it first/);
    assert.equal((await api("POST", `${path}/resume`)).status, 409);
    assert.equal((await api("POST", `${path}/pause`)).body.state, "paused");
    await waitFor(async () =>
      (await src.unsafe(`SELECT active FROM pg_replication_slots`)).every((s) => !s.active)
    );
    const dropped = await api("POST", `${path}/drop`);
    assert.equal(dropped.status, 200, JSON.stringify(dropped.body));
    assert.equal((await src.unsafe(`SELECT 1 FROM pg_replication_slots`)).length, 0);
    // Resumed: a new slot, the table copied again (merged) and streaming.
    await src.unsafe(`UPDATE t1 SET v = 'while paused' WHERE id = 7`);
    assert.equal((await api("POST", `${path}/resume`)).status, 200);
    await src.unsafe(`INSERT INTO t1 VALUES (52, 'after resume')`);
    await waitForEqualRows(rows(src, "t1"), rows(dst, "t1"), { kvsz });

    assert.equal(await kvsz.stop(), 0);
    assert.ok(!kvsz.output.includes(PASSWORD) && !kvsz.output.includes(TOKEN));
  },

  "a non-loopback listener without token serves no API; open reads on loopback": async (c) => {
    const { config, port } = await setup(c, { t1: null });
    const open = { ...config, metrics: { listen: `0.0.0.0:${port}` }, api: {} };
    {
      await using kvsz = KvszProcess.start(["run", "--config", await writeConfig(open)]);
      await kvsz.waitForOutput(/streaming from/);
      assert.match(kvsz.output, /API not started: the listener 0\.0\.0\.0 is not loopback-only/);
      const api = client(`http://127.0.0.1:${port}`);
      const r = await api("GET", "/api/db", { token: null });
      assert.equal(r.status, 404);
      assert.equal(r.body.code, "api_disabled");
      assert.equal(
        (await fetch(`http://127.0.0.1:${port}/metrics`).then((m) => m.text(), () => "")).length >
          0,
        true,
      );
      assert.equal(await kvsz.stop(), 0);
    }
    const loopback = { ...config, api: { read_auth: false } };
    await using kvsz = KvszProcess.start(["run", "--config", await writeConfig(loopback)]);
    await kvsz.waitForOutput(/streaming from/);
    const api = client(`http://127.0.0.1:${port}`);
    assert.equal((await api("GET", "/api/tbl", { token: null })).status, 200);
    const write = await api("POST", `/api/source/x/1/pause`, { token: null });
    assert.equal(write.status, 403);
    assert.match(write.body.error, /no API token is configured/);
    assert.equal(await kvsz.stop(), 0);
  },

  "database mode: a kuvasz-style script adds a source and tables at run time; the map is shared and survives a restart":
    async (c) => {
      const { src, dst, config, api } = await setup(c, { t1: null });
      await dst.unsafe(`CREATE TABLE t3 (id int PRIMARY KEY, v text)`); // an existing target
      const otherDb = await c.createDatabase("other");
      const other = c.sql(otherDb);
      await other.unsafe(`CREATE TABLE o1 (id int PRIMARY KEY, v text)`);
      await other.unsafe(`INSERT INTO o1 SELECT g, 'o' || g FROM generate_series(1, 20) g`);
      const file = await writeConfig({ ...config, map_store: "destination" });
      let kvsz = KvszProcess.start(["run", "--config", file]);
      try {
        await kvsz.waitForOutput(/streaming from/);
        assert.match(kvsz.output, /imported the map/);

        // A second source, as a kuvasz user adds one: db, url, then its table from the map.
        const db = await api("POST", "/api/db", { body: { name: otherDb } });
        assert.deepEqual(db.body, { id: 2, name: otherDb });
        assert.equal((await api("POST", "/api/db", { body: { name: otherDb } })).status, 409);
        assert.equal((await api("POST", "/api/db", { body: { name: 5 } })).status, 400);
        const otherUrl = c.url(otherDb, "apiuser", PASSWORD);
        const url = await api("POST", "/api/url", { body: { db_id: 2, sid: "2", url: otherUrl } });
        assert.equal(url.status, 200, JSON.stringify(url.body));
        assert.match(url.body.url, /apiuser:\*\*\*@/);
        const orphan = { db_id: 99, sid: "9", url: otherUrl };
        assert.equal((await api("POST", "/api/url", { body: orphan })).status, 409);
        let map = (await api("GET", "/api/map")).body as { id: number; name: string }[];
        const o1 = map.find((e) => e.name === "o1")!;
        const created = await api("POST", `/api/map/${o1.id}/create?type=history`);
        assert.equal(created.status, 200, JSON.stringify(created.body));
        assert.deepEqual([created.body.present, created.body.replicated], [true, false]);
        assert.equal((await api("POST", `/api/map/${o1.id}/create`)).status, 409);
        const [{ columns, indexes }] = await dst.unsafe(
          `SELECT (SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute
                    WHERE attrelid = 'o1'::regclass AND attnum > 0) AS columns,
                  (SELECT count(*)::int FROM pg_indexes WHERE tablename = 'o1') AS indexes`,
        );
        assert.equal(columns, "id,v,kvsz_start,kvsz_end,kvsz_deleted");
        assert.equal(indexes, 2); // the README's two for a history target
        const cloned = await api("POST", `/api/map/${o1.id}/clone?type=history`);
        assert.equal(cloned.body.replicated, true);
        await waitFor(
          async () =>
            (await dst.unsafe(`SELECT 1 FROM o1 WHERE kvsz_end = '9999-01-01'`)).length === 20,
          { what: "o1 copied", context: () => kvsz.output.slice(-3000) },
        );

        // The first source: clone t2 (no target: created), add t3 (target exists).
        const since = kvsz.output.length;
        map = (await api("GET", "/api/map")).body;
        const t2 = map.find((e) => e.name === "t2")!;
        const t2cloned = await api("POST", `/api/map/${t2.id}/clone?type=clone&target=t2`);
        assert.equal(t2cloned.status, 200, JSON.stringify(t2cloned.body));
        assert.deepEqual([t2cloned.body.replicated, t2cloned.body.present], [true, true]);
        assert.equal((await api("POST", `/api/map/${t2.id}/clone`)).status, 409);
        assert.equal((await api("POST", `/api/map/999/clone`)).status, 404);
        const added = await api("POST", "/api/tbl", { body: { db_id: 1, name: "t3" } });
        assert.equal(added.status, 200, JSON.stringify(added.body));
        // A table added with ?create=true gets its target made (history: the kvsz_* columns).
        const t4 = { db_id: 1, name: "t4", type: "history" };
        const withTarget = await api("POST", "/api/tbl?create=true", { body: t4 });
        assert.equal(withTarget.status, 200, JSON.stringify(withTarget.body));
        await waitFor(
          async () =>
            (await dst.unsafe(`SELECT 1 FROM t4 WHERE kvsz_end = '9999-01-01'`)).length === 50,
          { what: "t4 created and copied", context: () => kvsz.output.slice(-3000) },
        );
        // t1 kept streaming meanwhile; t2 and t3 copied and streaming; the other source untouched.
        await src.unsafe(`INSERT INTO t1 VALUES (60, 'a'); INSERT INTO t2 VALUES (60, 'b');
                          INSERT INTO t3 VALUES (60, 'c')`);
        await other.unsafe(`UPDATE o1 SET v = 'changed' WHERE id = 1`);
        for (const t of ["t1", "t2", "t3"]) {
          await waitForEqualRows(rows(src, t), rows(dst, t), { kvsz, what: t });
        }
        await waitFor(async () => (await dst.unsafe(`SELECT 1 FROM o1`)).length === 21, {
          what: "o1's update streamed",
          context: () => kvsz.output.slice(-3000),
        });
        assert.doesNotMatch(kvsz.output.slice(since), new RegExp(`stopping ${otherDb}`));

        // Errors: a bad body, a map the validator refuses, missing rows, a referenced db.
        assert.equal((await api("POST", "/api/tbl", { body: { db_id: 1 } })).status, 400);
        const invalid = await api("PUT", `/api/tbl/${added.body.id}`, { body: { type: "apend" } });
        assert.equal(invalid.status, 400);
        assert.match(invalid.body.error, /must be one of clone, append, history/);
        assert.equal((await api("DELETE", "/api/tbl/999")).status, 404);
        assert.equal((await api("PUT", "/api/url/999", { body: { sid: "x" } })).status, 404);
        assert.equal((await api("PUT", "/api/db/abc", { body: { name: "x" } })).status, 400);
        assert.equal((await api("DELETE", "/api/db/2")).status, 409);
        assert.equal((await api("POST", "/api/map/refresh")).status, 200);
        const changes = (await api("GET", "/api/changes")).body as { who: string; what: string }[];
        assert.deepEqual(changes.map((ch) => ch.what), [
          "create tbl",
          "create tbl",
          `clone map ${t2.id}`,
          `clone map ${o1.id}`,
          `create target of map ${o1.id}`,
          "create url",
          "create db",
          "import",
        ]);
        assert.deepEqual(
          new Set(changes.map((ch) => ch.who)),
          new Set(["api.token_sha256", "kvsz"]),
        );
        assert.equal(await kvsz.stop(), 0);

        // Restarted: the map is the destination's, not imported again.
        kvsz = KvszProcess.start(["run", "--config", file]);
        await kvsz.waitForOutput(/streaming from/);
        assert.doesNotMatch(kvsz.output, /imported the map/);
        const tbls = (await api("GET", "/api/tbl")).body as { name: string }[];
        assert.deepEqual(tbls.map((t) => t.name), ["t1", "o1", "t2", "t3", "t4"]);
        await src.unsafe(`INSERT INTO t2 VALUES (61, 'after restart')`);
        await waitForEqualRows(rows(src, "t2"), rows(dst, "t2"), { kvsz });
        // Deleting a table through the API; then another instance's change, made in the store.
        assert.equal((await api("DELETE", `/api/tbl/${added.body.id}`)).status, 200);
        await dst.unsafe(`DELETE FROM kvsz.map_tbl WHERE name = 't2';
          INSERT INTO kvsz.map_changes (who, what) VALUES ('another kvsz', 'delete tbl')`);
        await waitFor(async () => {
          const s = (await api("GET", "/api/source")).body as { tables: { name: string }[] }[];
          return s[0].tables.map((t) => t.name).join() === "t1,t4";
        }, { what: "the store's change applied", timeoutMs: 60_000 });
        assert.equal(await kvsz.stop(), 0);
        assert.ok(!kvsz.output.includes(PASSWORD) && !kvsz.output.includes(TOKEN));
      } finally {
        await kvsz.stop("SIGKILL");
      }
    },
});
