/**
 * Metrics: the engine's hooks move the right series, and the exposition is
 * valid Prometheus text format 0.0.4 — checked by a strict parser written
 * from the format's specification (no usable parser on npm: the one there
 * drops histogram labels, sums and counts and accepts malformed lines), and
 * by Prometheus's own `promtool check metrics` when it is installed.
 */
import assert from "node:assert/strict";
import { Metrics } from "../../lib/observe/metrics.ts";
import type { CommitInfo } from "../../lib/apply/applier.ts";
import type { Anomaly, TableRoute } from "../../lib/apply/types.ts";
import { type Family, parseExposition, promtoolCheck, valueOf } from "../support/prometheus.ts";

function commit(over: Partial<CommitInfo> = {}): CommitInfo {
  return {
    endLsn: 1000n,
    commitTimeIso: new Date(0).toISOString(),
    transactions: 1,
    changes: 1,
    counts: { clone: 1, append: 0, history: 0, anomalies: 0 },
    seconds: 0.01,
    ...over,
  };
}

function anomaly(kind: Anomaly["kind"], source: string): Anomaly {
  return { kind, route: { source } as TableRoute, key: ["1"] };
}

Deno.test("hooks move the series; the exposition parses strictly and with promtool", async () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  const m = new Metrics({ now: () => now });
  const a = m.pipelineEvents("db1", "1");
  const b = m.pipelineEvents('we"ird\\db\n', "2");

  const copy = a.syncProgress!();
  copy.start("public.t1", 750);
  copy.update("public.t1", 500, 20_000);
  copy.update("public.t1", 750, 30_000);
  a.onConnected!(true);
  a.onOperations!("public.t1", { operation: "insert", count: 40, seconds: 0.004 });
  a.onOperations!("public.t1", { operation: "insert", count: 2, seconds: 0.002 });
  a.onOperations!("public.t1", { operation: "delete", count: 3, seconds: 0.3 });
  a.onOperations!("public.t2", { operation: "truncate", count: 1, seconds: 0.02 });
  a.onAnomaly!(anomaly("delete_missing", "public.t1"));
  a.onAnomaly!(anomaly("delete_missing", "public.t1"));
  a.onAnomaly!(anomaly("insert_existing", "public.t2"));
  a.onCommit!(commit({
    changes: 46,
    transactions: 3,
    seconds: 0.05,
    counts: { clone: 40, append: 5, history: 1, anomalies: 3 },
  }));
  a.onCommit!(commit({ changes: 1, transactions: 1, seconds: 2 }));
  m.setLag("db1", "1", { bytes: 4096, retainedBytes: 1 << 20 });
  b.onConnected!(false);

  const text = await m.render();
  const families = parseExposition(text);

  const t1 = { database: "db1", sid: "1", table: "public.t1" };
  assert.equal(
    valueOf(families, "streamer_operations_total", { ...t1, operation: "insert" }),
    42,
  );
  assert.equal(
    valueOf(families, "streamer_operations_total", {
      ...t1,
      operation: "delete",
      result: "success",
    }),
    3,
  );
  assert.equal(
    valueOf(families, "streamer_operations_seconds_count", { ...t1, operation: "insert" }),
    2,
  );
  assert.equal(
    valueOf(families, "streamer_operations_seconds_bucket", {
      ...t1,
      operation: "delete",
      le: "0.25",
    }),
    0,
  );
  assert.equal(
    valueOf(families, "streamer_operations_seconds_bucket", {
      ...t1,
      operation: "delete",
      le: "0.5",
    }),
    1,
  );
  assert.equal(valueOf(families, "streamer_sync_total_rows", t1), 750);
  assert.equal(valueOf(families, "streamer_sync_total_bytes", t1), 30_000);
  assert.equal(
    valueOf(families, "kvsz_anomalies_total", { ...t1, kind: "delete_missing" }),
    2,
  );
  assert.equal(
    valueOf(families, "kvsz_anomalies_total", { table: "public.t2", kind: "insert_existing" }),
    1,
  );
  const db1 = { database: "db1", sid: "1" };
  assert.equal(valueOf(families, "kvsz_source_connected", db1), 1);
  assert.equal(valueOf(families, "kvsz_lag_bytes", db1), 4096);
  assert.equal(valueOf(families, "kvsz_slot_retained_wal_bytes", db1), 1 << 20);
  assert.equal(valueOf(families, "url_heartbeat", db1), now / 1000);
  assert.equal(valueOf(families, "kvsz_batch_size_count", db1), 2);
  assert.equal(valueOf(families, "kvsz_batch_size_sum", db1), 47);
  assert.equal(valueOf(families, "kvsz_batch_size_bucket", { ...db1, le: "50" }), 2);
  assert.equal(valueOf(families, "kvsz_batch_size_bucket", { ...db1, le: "10" }), 1);
  assert.equal(valueOf(families, "kvsz_apply_commit_seconds_count", db1), 2);
  assert.equal(valueOf(families, "kvsz_apply_commit_seconds_bucket", { ...db1, le: "1" }), 1);
  assert.equal(valueOf(families, "kvsz_transactions_total", db1), 4);
  assert.equal(valueOf(families, "kvsz_rows_total", { ...db1, mode: "clone" }), 41);
  assert.equal(valueOf(families, "kvsz_rows_total", { ...db1, mode: "history" }), 1);
  // Escaped label values survive the round trip.
  assert.equal(
    valueOf(families, "kvsz_source_connected", { database: 'we"ird\\db\n', sid: "2" }),
    0,
  );
  // Every metric issue 5 names is declared with its type.
  const types: Record<string, Family["type"]> = {
    streamer_operations_total: "counter",
    streamer_operations_seconds: "histogram",
    streamer_sync_total_rows: "counter",
    streamer_sync_total_bytes: "counter",
    url_heartbeat: "gauge",
    kvsz_lag_bytes: "gauge",
    kvsz_lag_seconds: "gauge",
    kvsz_slot_retained_wal_bytes: "gauge",
    kvsz_anomalies_total: "counter",
    kvsz_one_by_one_total: "counter",
    kvsz_source_connected: "gauge",
    kvsz_batch_size: "histogram",
    kvsz_apply_commit_seconds: "histogram",
  };
  for (const [name, type] of Object.entries(types)) {
    assert.equal(families.get(name)?.type, type, `${name} declared as ${type}`);
    assert.ok(families.get(name)?.help, `${name} has HELP`);
  }

  const promtool = await promtoolCheck(text);
  if (promtool !== null) {
    // Only lint remarks about the kuvasz-streamer names kept for compatibility.
    const remarks = promtool.split("\n").filter((l) => l.trim() !== "");
    for (const r of remarks) {
      assert.match(r, /^streamer_sync_total_(rows|bytes) counter metrics should have "_total"/);
    }
  }
});

Deno.test("lag seconds: age of the last applied commit, 0 after a keepalive or with nothing unconfirmed", () => {
  let now = 1_000_000_000_000;
  const m = new Metrics({ now: () => now });
  const ev = m.pipelineEvents("db", "1");
  // Before any event: time since the source was registered.
  now += 5_000;
  assert.equal(m.lagSeconds("db", "1"), 5);
  ev.onConnected!(true);
  // A keepalive says everything sent up to LSN 100 was received.
  ev.onWalEnd!(100n);
  assert.equal(m.lagSeconds("db", "1"), 0);
  now += 3_000;
  assert.equal(m.lagSeconds("db", "1"), 3);
  // Catching up: a commit from 10 minutes ago was just applied.
  ev.onCommit!(commit({ endLsn: 200n, commitTimeIso: new Date(now - 600_000).toISOString() }));
  assert.equal(m.lagSeconds("db", "1"), 600);
  // A commit below the last keepalive does not move lag back.
  ev.onWalEnd!(300n);
  ev.onCommit!(commit({ endLsn: 250n, commitTimeIso: new Date(now - 900_000).toISOString() }));
  assert.equal(m.lagSeconds("db", "1"), 0);
  // Nothing unconfirmed on the slot: caught up whatever the clock says.
  now += 120_000;
  assert.equal(m.lagSeconds("db", "1"), 120);
  m.setLag("db", "1", { bytes: 0 });
  assert.equal(m.lagSeconds("db", "1"), 0);
  // Clock skew never gives a negative lag.
  m.setLag("db", "1", { bytes: 10 });
  ev.onCommit!(commit({ endLsn: 400n, commitTimeIso: new Date(now + 5_000).toISOString() }));
  assert.equal(m.lagSeconds("db", "1"), 0);
});

Deno.test("readiness: every source connected and under the lag bound", async () => {
  let now = 1_000_000_000_000;
  const m = new Metrics({ now: () => now });
  assert.deepEqual(m.readiness(60), { ready: true, sources: [] });
  const a = m.pipelineEvents("a", "1");
  const b = m.pipelineEvents("b", "1");
  let r = m.readiness(60);
  assert.equal(r.ready, false);
  assert.deepEqual(r.sources.map((s) => s.state), ["disconnected", "disconnected"]);
  const copyB = b.syncProgress!();
  copyB.start("t", 10);
  copyB.update("t", 10, 100);
  a.onConnected!(true);
  a.onWalEnd!(1n);
  r = m.readiness(60);
  assert.deepEqual(r.sources.map((s) => [s.database, s.state, s.ready]), [
    ["a", "streaming", true],
    ["b", "syncing", false],
  ]);
  b.onConnected!(true);
  b.onWalEnd!(1n);
  assert.equal(m.readiness(60).ready, true);
  now += 61_000;
  m.setLag("a", "1", { bytes: 0 });
  r = m.readiness(60);
  assert.deepEqual(r.sources.map((s) => s.state), ["streaming", "lagging"]);
  assert.equal(r.ready, false);
  assert.equal(r.sources[1].lagSeconds, 61);
  b.onConnected!(false);
  assert.equal(m.readiness(60).sources[1].state, "disconnected");

  // A removed source leaves the readiness and the exposition.
  await m.removeSource("b", "1");
  assert.deepEqual(m.sources(), [{ database: "a", sid: "1" }]);
  assert.equal(m.readiness(60).ready, true);
  const families = parseExposition(await m.render());
  for (const f of families.values()) {
    for (const s of f.samples) assert.notEqual(s.labels.database, "b", `${s.name} still has b`);
  }
});

Deno.test("the strict parser rejects malformed expositions", () => {
  const bad = [
    'foo{a="b} 1\n',
    "foo 1 2 3\n",
    'foo{a="b",a="c"} 1\n',
    "foo abc\n",
    "1foo 1\n",
    "# TYPE x counter\n# TYPE x gauge\nx 1\n",
    "# TYPE x counter\nx -1\n",
    'x 1\ny 1\nx{a="1"} 2\n',
    "x 1\nx 2\n",
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n',
    '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
    "x 1",
  ];
  for (const text of bad) assert.throws(() => parseExposition(text), Error, text);
  const good = parseExposition(
    '# HELP h a \\\\ help\\n\n# TYPE h histogram\nh_bucket{le="0.5",a="x"} 1\nh_bucket{le="+Inf",a="x"} 2\nh_sum{a="x"} 1.5\nh_count{a="x"} 2\n\nup 1 1700000000000\n',
  );
  assert.equal(good.get("h")?.help, "a \\ help\n");
  assert.equal(good.get("up")?.samples[0].value, 1);
});

Deno.test("kvsz_sync_sources_done counts the sources copied (streaming) out of kvsz_sync_sources", async () => {
  const m = new Metrics({ tty: false });
  const a = m.pipelineEvents("a", "1");
  const b = m.pipelineEvents("b", "1");
  m.pipelineEvents("c", "1");
  const counts = async () => {
    const families = parseExposition(await m.render());
    return [
      valueOf(families, "kvsz_sync_sources_done", {}),
      valueOf(families, "kvsz_sync_sources", {}),
    ];
  };
  assert.deepEqual(await counts(), [0, 3]);
  a.syncProgress!().start("t", 10);
  a.onConnected!(true); // copied, streaming
  b.onConnected!(true); // nothing to copy
  assert.deepEqual(await counts(), [2, 3]);
  a.onConnected!(false); // a failure does not undo a copy
  a.onConnected!(true);
  assert.deepEqual(await counts(), [2, 3]);
  a.syncProgress!().start("added", 10); // a table added later: copying again
  assert.deepEqual(await counts(), [1, 3]);
  a.onConnected!(true);
  await m.removeSource("c", "1");
  assert.deepEqual(await counts(), [2, 2]);
});

/** Series of every family, counted the way Prometheus stores them (each bucket, sum and count). */
async function seriesCount(m: Metrics): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const f of parseExposition(await m.render()).values()) counts.set(f.name, f.samples.length);
  return counts;
}

/** `sources` tenants, each applying inserts and updates to public.accounts, one commit each. */
async function tenants(sources: number, perSourceTables: number): Promise<Map<string, number>> {
  const m = new Metrics({ tty: false, perSourceTables });
  for (let i = 1; i <= sources; i++) {
    const ev = m.pipelineEvents(`tenant_${i}`, String(i));
    ev.onConnected!(true);
    for (const operation of ["insert", "update"] as const) {
      ev.onOperations!("public.accounts", { operation, count: 3, seconds: 0.001 });
    }
    ev.onCommit!(commit());
    ev.onAnomaly!(anomaly("update_missing", "public.accounts"));
  }
  return await seriesCount(m);
}

Deno.test("metrics.per_source_tables: beyond it, per-table series do not grow with the sources", async () => {
  const PER_TABLE = [
    "streamer_operations_total",
    "streamer_operations_seconds",
    "kvsz_anomalies_total",
    "kvsz_batch_size",
    "kvsz_apply_commit_seconds",
  ];
  const PER_SOURCE = ["kvsz_source_connected", "url_heartbeat", "kvsz_transactions_total"];
  const [few, many] = [await tenants(3, 2), await tenants(300, 2)];
  for (const name of PER_TABLE) {
    assert.ok(few.get(name)! > 0, name);
    assert.equal(many.get(name), few.get(name), name);
  }
  for (const name of PER_SOURCE) {
    assert.equal(few.get(name), 3, name);
    assert.equal(many.get(name), 300, name);
  }
  // The formula of README (Operating kvsz, Metrics): 18 per table and operation, 31 for the
  // two per-source histograms, and their count times the sources while per source.
  assert.equal(few.get("streamer_operations_total")! + few.get("streamer_operations_seconds")!, 36);
  const perSource = await tenants(3, 3);
  assert.equal(perSource.get("streamer_operations_seconds"), 3 * 2 * 17);
  assert.equal(
    perSource.get("kvsz_batch_size")! + perSource.get("kvsz_apply_commit_seconds")!,
    3 * 31,
  );
  // Per source, the series name the source, as kuvasz-streamer's do; summed, none.
  const m = new Metrics({ tty: false, perSourceTables: 1 });
  const a = m.pipelineEvents("a", "1");
  a.onOperations!("public.t", { operation: "insert", count: 1, seconds: 0.001 });
  let families = parseExposition(await m.render());
  assert.equal(valueOf(families, "streamer_operations_total", { database: "a", sid: "1" }), 1);
  m.pipelineEvents("b", "1").onOperations!("public.t", {
    operation: "insert",
    count: 2,
    seconds: 0,
  });
  a.onOperations!("public.t", { operation: "insert", count: 4, seconds: 0.001 });
  families = parseExposition(await m.render());
  const ops = families.get("streamer_operations_total")!.samples;
  assert.deepEqual(ops.map((s) => [s.labels, s.value]), [
    [{ table: "public.t", operation: "insert", result: "success" }, 6],
  ]);
});
