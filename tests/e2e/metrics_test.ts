/**
 * The metrics and health endpoint over real HTTP: `/metrics`, `/healthz`,
 * `/readyz` (200, then 503 while a source is disconnected), an address in use
 * (a warning, no endpoint, nothing thrown); then on real servers: the engine's
 * hooks move the metrics as rows flow, the slot poller fills lag and retained
 * WAL, and readiness turns false when the source server stops.
 */
import assert from "node:assert/strict";
import { configureSync, type LogRecord, resetSync } from "@logtape/logtape";
import { Metrics } from "../../lib/observe/metrics.ts";
import { startHttpServer } from "../../lib/observe/http_server.ts";
import { startSlotPoller } from "../../lib/observe/slot_poller.ts";
import { parseConfig } from "../../lib/config/load.ts";
import { SourcePipeline } from "../../lib/engine/pipeline.ts";
import { SharedDestination } from "../../lib/engine/destination.ts";
import { clusterSuite, startCluster, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, waitFor, writeConfig } from "../support/kvsz.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";
import { createTenantSources, tenantDatabases } from "../support/tenants.ts";
import { scrape } from "../support/prometheus.ts";

/** Log records of `fn`, captured from the `kvsz` loggers. */
async function captureLogs<T>(fn: () => T | Promise<T>): Promise<[T, LogRecord[]]> {
  const records: LogRecord[] = [];
  configureSync({
    reset: true,
    sinks: { memory: (r: LogRecord) => records.push(r) },
    loggers: [
      { category: ["kvsz"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "error", sinks: [] },
    ],
  });
  try {
    return [await fn(), records];
  } finally {
    resetSync();
  }
}

/** The value of the first sample named `name` whose labels include `labels` (a plain line scan). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | null {
  for (const line of text.split("\n")) {
    if (!line.startsWith(name + "{") && !line.startsWith(name + " ")) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return null;
}

Deno.test("HTTP endpoint: /metrics, /healthz, /readyz 200 then 503 for a disconnected source", async () => {
  const metrics = new Metrics();
  const a = metrics.pipelineEvents("db_a", "1");
  const b = metrics.pipelineEvents("db_b", "2");
  a.onConnected!(true);
  a.onWalEnd!(1n);
  b.onConnected!(true);
  b.onWalEnd!(1n);
  a.onOperations!("public.t1", { operation: "insert", count: 5, seconds: 0.001 });
  const [server] = await captureLogs(() =>
    startHttpServer("127.0.0.1:0", metrics, () => metrics.readiness(60))
  );
  assert.ok(server, "server started");
  try {
    assert.ok(server.port > 0);
    const m = await fetch(`${server.url}/metrics`);
    assert.equal(m.status, 200);
    assert.match(m.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await m.text();
    assert.equal(
      sample(text, "streamer_operations_total", { database: "db_a", operation: "insert" }),
      5,
    );
    assert.equal(sample(text, "kvsz_source_connected", { database: "db_b" }), 1);

    const h = await fetch(`${server.url}/healthz`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: "ok" });

    let r = await fetch(`${server.url}/readyz`);
    assert.equal(r.status, 200);
    let body = await r.json();
    assert.equal(body.ready, true);
    assert.deepEqual(body.sources.map((s: { state: string }) => s.state), [
      "streaming",
      "streaming",
    ]);

    b.onConnected!(false);
    r = await fetch(`${server.url}/readyz`);
    assert.equal(r.status, 503);
    body = await r.json();
    assert.equal(body.status, "not ready");
    assert.deepEqual(
      body.sources.map((s: { database: string; sid: string; state: string; ready: boolean }) => [
        s.database,
        s.sid,
        s.state,
        s.ready,
      ]),
      [["db_a", "1", "streaming", true], ["db_b", "2", "disconnected", false]],
    );

    const missing = await fetch(`${server.url}/nope`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();
    const post = await fetch(`${server.url}/metrics`, { method: "POST" });
    assert.equal(post.status, 405);
    await post.body?.cancel();
  } finally {
    await server.shutdown();
  }
  // Stopped: the port is free again.
  const again = Deno.listen({ hostname: "127.0.0.1", port: server.port });
  again.close();
});

Deno.test("HTTP endpoint: an address in use is a warning and no endpoint; empty listen is off", async () => {
  const metrics = new Metrics();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    const [server, logs] = await captureLogs(() =>
      startHttpServer(`127.0.0.1:${port}`, metrics, () => metrics.readiness(60))
    );
    assert.equal(server, null);
    const warnings = logs.filter((r) => r.level === "warning");
    assert.equal(warnings.length, 1, JSON.stringify(logs.map((r) => r.message)));
    const message = warnings[0].message.join("");
    assert.match(message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    assert.match(message, /address already in use/);
    assert.match(message, /keeps streaming/);
  } finally {
    taken.close();
  }
  const [off, logs] = await captureLogs(() =>
    startHttpServer("", metrics, () => metrics.readiness(60))
  );
  assert.equal(off, null);
  assert.deepEqual(logs, []);
});

/**
 * Runs the pipeline of one source streaming `t1` of database `src.db` (at
 * `src.url`, sid 1) into the destination at `destUrl`, its hooks feeding new
 * metrics; `stop` stops it and closes its destination connections.
 */
function runPipeline(src: { db: string; url: string }, destUrl: string) {
  const config = parseConfig(
    JSON.stringify({
      destination: { url: destUrl },
      databases: [{ database: src.db, urls: [{ url: src.url, sid: "1" }], tables: { t1: null } }],
      apply: { commit_interval_ms: 50 },
      metrics: { listen: "" },
    }),
    "metrics-test.yaml",
  );
  const db = config.databases[0];
  const metrics = new Metrics({ tty: false });
  const destination = new SharedDestination(config);
  const pipeline = new SourcePipeline(
    config,
    { db, source: db.urls[0], destination },
    metrics.pipelineEvents(src.db, "1"),
  );
  const running = pipeline.run();
  return {
    config,
    metrics,
    labels: { database: src.db, sid: "1" },
    async stop() {
      pipeline.stop();
      await running;
      await destination.close();
    },
  };
}

async function pipelineMoves(c: TestCluster): Promise<void> {
  // The source is its own server, so stopping it leaves the destination up.
  await using source = await startCluster({ major: c.major });
  const srcDb = await source.createDatabase("msrc");
  const dstDb = await c.createDatabase("mdst");
  const src = source.sql(srcDb);
  const dst = c.sql(dstDb);
  await src.unsafe(`CREATE TABLE t1 (id int PRIMARY KEY, v text)`);
  await src.unsafe(`INSERT INTO t1 SELECT g, 'x' FROM generate_series(1, 300) g`);
  await dst.unsafe(`CREATE TABLE t1 (id int PRIMARY KEY, v text)`);
  const { config, metrics, labels, stop } = runPipeline(
    { db: srcDb, url: source.url(srcDb) },
    c.url(dstDb),
  );
  const poller = startSlotPoller(config, metrics, { intervalMs: 200 });
  const scrape = () => metrics.render();
  try {
    await waitFor(async () => sample(await scrape(), "kvsz_source_connected", labels) === 1, {
      what: "source connected",
    });
    let text = await scrape();
    assert.equal(sample(text, "streamer_sync_total_rows", { ...labels, table: "t1" }), 300);
    assert.ok((sample(text, "streamer_sync_total_bytes", labels) ?? 0) > 0);

    await src.unsafe(`INSERT INTO t1 SELECT g, 'y' FROM generate_series(301, 350) g`);
    await src.unsafe(`UPDATE t1 SET v = 'z' WHERE id <= 10`);
    await waitFor(async () => (sample(await scrape(), "kvsz_rows_total", labels) ?? 0) >= 60, {
      what: "kvsz_rows_total to reach 60",
      context: scrape,
    });
    text = await scrape();
    assert.equal(sample(text, "kvsz_transactions_total", labels), 2);
    assert.equal(sample(text, "kvsz_rows_total", { ...labels, mode: "clone" }), 60);
    assert.ok((sample(text, "kvsz_batch_size_count", labels) ?? 0) >= 1);
    assert.ok((sample(text, "kvsz_apply_commit_seconds_count", labels) ?? 0) >= 1);
    assert.ok(Math.abs((sample(text, "url_heartbeat", labels) ?? 0) - Date.now() / 1000) < 60);

    // The poller reads the slot: retained WAL is known, and once kvsz has confirmed
    // everything the lag is 0 bytes and 0 seconds, and the source is ready.
    await waitFor(async () => {
      await poller.poll();
      return sample(await scrape(), "kvsz_lag_bytes", labels) === 0;
    }, { what: "kvsz_lag_bytes 0 after the slot is confirmed", context: scrape });
    text = await scrape();
    assert.ok((sample(text, "kvsz_slot_retained_wal_bytes", labels) ?? -1) >= 0);
    assert.equal(sample(text, "kvsz_lag_seconds", labels), 0);
    assert.equal(metrics.readiness(60).ready, true);

    // The source server stops: disconnected, not ready, lag no longer known.
    await source.server.stop("immediate");
    await waitFor(() => !metrics.readiness(60).ready, { what: "unready after the source stops" });
    const r = metrics.readiness(60);
    assert.equal(r.sources[0].state, "disconnected");
    await poller.poll();
    text = await scrape();
    assert.equal(sample(text, "kvsz_source_connected", labels), 0);
    assert.equal(sample(text, "kvsz_lag_bytes", labels), null);
  } finally {
    await stop();
    await poller.stop();
  }
}

/** A new slot's lag is in /metrics once kvsz streams, not at the slot poller's next round (10 s). */
async function lagFromTheStart(c: TestCluster): Promise<void> {
  const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
  for (const db of [src, dst]) await db.unsafe(`CREATE TABLE t1 (id int PRIMARY KEY)`);
  const port = freePort();
  const config = await writeConfig({
    destination: { url: c.url(dstDb) },
    databases: [{ database: srcDb, urls: [{ url: c.url(srcDb), sid: "1" }], tables: { t1: null } }],
    metrics: { listen: `127.0.0.1:${port}` },
    log: { level: "info", format: "text" },
  });
  await using kvsz = KvszProcess.start(["run", "--config", config]);
  await kvsz.waitForOutput(/created slot .*streaming from/s);
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const labels = { database: srcDb, sid: "1" };
  assert.notEqual(sample(text, "kvsz_lag_bytes", labels), null, text);
  assert.notEqual(sample(text, "kvsz_slot_retained_wal_bytes", labels), null, text);
  assert.equal(await kvsz.stop(), 0);
}

/**
 * The slot poller reads the slots of many sources of one server through one
 * connection: each source's lag and retained WAL, nulls for a source whose
 * slot does not exist.
 */
async function onePollerConnectionPerServer(c: TestCluster): Promise<void> {
  const dbs: string[] = [];
  for (let i = 0; i < 6; i++) dbs.push(await c.createDatabase("tenant"));
  const sid = (db: string) => String(dbs.indexOf(db) + 1); // one target table, a sid each
  const admin = c.sql("postgres");
  // Slots of the first five sources, with WAL written after the first two were made.
  for (const db of dbs.slice(0, 2)) {
    await admin.unsafe(
      `SELECT pg_create_logical_replication_slot('kvsz_${db}_${sid(db)}', 'pgoutput')`,
    );
  }
  await admin.unsafe(`CREATE TABLE IF NOT EXISTS filler (v text)`);
  await admin.unsafe(`INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)`);
  for (const db of dbs.slice(2, 5)) {
    await admin.unsafe(
      `SELECT pg_create_logical_replication_slot('kvsz_${db}_${sid(db)}', 'pgoutput')`,
    );
  }
  const config = parseConfig(
    JSON.stringify({
      destination: { url: c.url("postgres") },
      databases: dbs.map((db) => ({
        database: db,
        urls: [{ url: c.url(db), sid: sid(db) }],
        tables: { t1: null },
      })),
    }),
    "poller-test.yaml",
  );
  const metrics = new Metrics();
  const poller = startSlotPoller(config, metrics, { intervalMs: 60_000 });
  try {
    await poller.poll();
    const text = await metrics.render();
    const lag = (db: string) => sample(text, "kvsz_lag_bytes", { database: db, sid: sid(db) });
    for (const db of dbs.slice(0, 2)) assert.ok(lag(db)! > 1_000_000, `${db}: ${lag(db)}`);
    for (const db of dbs.slice(2, 5)) assert.ok(lag(db)! < 1_000_000, `${db}: ${lag(db)}`);
    assert.equal(lag(dbs[5]), null);
    const held = await admin.unsafe(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE application_name = 'kvsz' AND pid <> pg_backend_pid()`,
    );
    assert.equal(held[0].n, 1);
  } finally {
    await poller.stop();
    for (const db of dbs.slice(0, 5)) {
      await admin.unsafe(`SELECT pg_drop_replication_slot('kvsz_${db}_${sid(db)}')`);
    }
  }
}

/**
 * Without the slot poller, `kvsz_lag_bytes` comes from the stream itself
 * (the server's WAL end in keepalives and data headers, against what kvsz
 * confirmed): about 0 once caught up, up while the destination is blocked and the
 * source writes, back down once it is free.
 */
async function lagFromTheStream(c: TestCluster): Promise<void> {
  const { srcDb, dstDb, src, dst } = await c.sourceAndDestination();
  for (const db of [src, dst]) await db.unsafe(`CREATE TABLE t1 (id int PRIMARY KEY, v text)`);
  const { metrics, labels, stop } = runPipeline({ db: srcDb, url: c.url(srcDb) }, c.url(dstDb));
  const lag = async () => sample(await metrics.render(), "kvsz_lag_bytes", labels);
  /** Under one WAL page (not always 0: see below); false while there is no figure yet. */
  const caughtUp = async () => ((await lag()) ?? Infinity) < 8192;
  const locker = await dst.reserve();
  try {
    await waitFor(caughtUp, {
      what: "kvsz_lag_bytes under 8 kB once streaming (see below)",
      context: () => metrics.render(),
      timeoutMs: 60_000,
    });
    await locker.unsafe(`BEGIN`);
    await locker.unsafe(`LOCK TABLE t1 IN ACCESS EXCLUSIVE MODE`);
    // Each round writes well over 100 kB of WAL for kvsz to read (1000 rows).
    let before = 0;
    for (let round = 1; round <= 2; round++) {
      await src.unsafe(
        `INSERT INTO t1 SELECT g, repeat('x', 100) FROM generate_series($1::int, $1::int + 999) g`,
        [round * 10_000],
      );
      await waitFor(async () => (await lag())! > before + 100_000, {
        what: `kvsz_lag_bytes above ${before + 100_000} while the destination is blocked`,
        context: () => metrics.render(),
      });
      before = (await lag())!;
    }
    await locker.unsafe(`COMMIT`);
    // Back under one WAL page, not always 0: source and destination share a server
    // here, so each idle position kvsz records is itself a little WAL (256 bytes)
    // that the source's next keepalive reports, sometimes before the status
    // confirming the previous position has gone out.
    await waitFor(caughtUp, {
      what: "kvsz_lag_bytes back under 8 kB",
      context: () => metrics.render(),
      timeoutMs: 60_000,
    });
    const [{ n }] = await dst.unsafe(`SELECT count(*)::int AS n FROM t1`);
    assert.equal(n, 2000);
  } finally {
    await locker.unsafe(`ROLLBACK`).catch(() => {});
    locker.release();
    await stop();
  }
}

/**
 * Five tenants with `metrics.per_source_tables: 2`: the per-table series are
 * summed over the tenants (as many as one tenant makes, without database and
 * sid), the per-source ones (lag, connected, heartbeat) stay per tenant.
 */
async function summedOverTenants(c: TestCluster): Promise<void> {
  const TENANTS = 5;
  const tenants = await createTenantSources(c, TENANTS, {
    ddl: `CREATE TABLE accounts (id int PRIMARY KEY, v int);
          INSERT INTO accounts VALUES (100, 100);
          CREATE TABLE events (id int PRIMARY KEY, v int);`,
    prefix: "msum",
  });
  const dstDb = await c.createDatabase("msumdst");
  const dst = c.sql(dstDb);
  await dst.unsafe(`CREATE TABLE accounts (sid text, id int, v int, PRIMARY KEY (sid, id))`);
  await dst.unsafe(`CREATE TABLE events (sid text, id int, v int, PRIMARY KEY (sid, id))`);
  const port = freePort();
  const config = await writeConfig({
    destination: { url: c.url(dstDb) },
    databases: tenantDatabases(c, tenants, () => ({ accounts: null, events: null })),
    apply: { commit_interval_ms: 20, workers: 2 },
    metrics: { listen: `127.0.0.1:${port}`, per_source_tables: 2 },
    log: { level: "info", format: "text" },
  });
  await using kvsz = KvszProcess.start(["run", "--config", config]);
  await waitFor(() => (kvsz.output.match(/streaming from/g) ?? []).length === TENANTS, {
    what: "every tenant streaming",
    context: () => kvsz.output.slice(-3000),
  });
  for (const { sql } of tenants) {
    await sql.unsafe(`INSERT INTO accounts VALUES (1, 1), (2, 2)`);
    await sql.unsafe(`UPDATE accounts SET v = 3 WHERE id = 1`);
    await sql.unsafe(`INSERT INTO events VALUES (1, 1)`);
  }
  await waitFor(async () => {
    const [r] = await dst.unsafe(`SELECT count(*)::int AS n FROM accounts WHERE v = 3`);
    return r.n === TENANTS;
  }, { what: "every tenant's changes", context: () => kvsz.output.slice(-3000) });
  const families = await scrape(port);
  const series = (name: string) => families.get(name)?.samples ?? [];
  // Two tables; insert and update on accounts, insert on events: three (table, operation)
  // pairs, each one counter and 17 histogram series (14 buckets, +Inf, sum, count).
  assert.equal(series("streamer_operations_total").length, 3);
  assert.equal(series("streamer_operations_seconds").length, 3 * 17);
  for (const name of ["streamer_operations_total", "streamer_sync_total_rows", "kvsz_batch_size"]) {
    assert.ok(series(name).length > 0, name);
    for (const s of series(name)) {
      assert.ok(!("sid" in s.labels) && !("database" in s.labels), `${name}: ${JSON.stringify(s)}`);
    }
  }
  const summed = series("streamer_operations_total").find((s) =>
    s.labels.table === "public.accounts" && s.labels.operation === "insert"
  );
  assert.equal(summed?.value, 2 * TENANTS);
  for (const name of ["kvsz_source_connected", "url_heartbeat", "kvsz_lag_bytes"]) {
    assert.deepEqual(
      series(name).map((s) => s.labels.sid).sort(),
      ["1", "2", "3", "4", "5"],
      name,
    );
  }
  assert.match(
    kvsz.output,
    /more sources than metrics\.per_source_tables \(2\): per-table series are summed/,
  );
  assert.equal(await kvsz.stop(), 0);
}

clusterSuite("metrics on real servers", {
  "metrics.per_source_tables: per-table series summed over the tenants": summedOverTenants,
  "kvsz_lag_bytes comes from the stream: up while the destination is blocked, 0 after":
    lagFromTheStream,
  "the slot poller holds one connection per source server": onePollerConnectionPerServer,
  "rows flowing move the metrics; the slot poller; unready when the source stops": pipelineMoves,
  "kvsz_lag_bytes of a new slot is there as soon as kvsz streams": lagFromTheStart,
});
