/**
 * A major-version upgrade end to end, as a DBA runs it: a PostgreSQL 12
 * database (pgbench's tables plus an enum, a domain, identity and generated
 * columns, a partitioned table, foreign keys, a sequence no column owns, a
 * view and a trigger) carried into an empty PostgreSQL 18 with `all_tables`
 * and `create_tables`, while a client writes all along; `kvsz switchover`
 * fences the source, and the client moves to the destination once it says
 * so. Every write the client had acknowledged is there, every sequence is
 * ahead of the values used, and `kvsz verify` finds both sides equal.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { startCluster } from "../support/cluster.ts";
import { tempDirScope } from "../support/temp_dirs.ts";
import { KvszProcess, tableRows, waitFor, writeConfig } from "../support/kvsz.ts";
import { runCli } from "../support/run_cli.ts";
import { createExtraSchema } from "../../bench/upgrade/schema.ts";

/** pgbench's tables as `pgbench -i` makes them (small), beside the benchmark's extra schema. */
const PGBENCH_TABLES = `
  CREATE TABLE pgbench_branches (bid int PRIMARY KEY, bbalance int, filler char(88));
  CREATE TABLE pgbench_tellers (tid int PRIMARY KEY, bid int, tbalance int, filler char(84));
  CREATE TABLE pgbench_accounts (aid int PRIMARY KEY, bid int, abalance int, filler char(84));
  CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
  INSERT INTO pgbench_branches SELECT g, 0, '' FROM generate_series(1, 2) g;
  INSERT INTO pgbench_tellers SELECT g, (g - 1) / 10 + 1, 0, '' FROM generate_series(1, 20) g;
  INSERT INTO pgbench_accounts SELECT g, (g - 1) / 5000 + 1, 0, '' FROM generate_series(1, 10000) g;
`;

/** The client: a pgbench-like transaction plus an order, against whichever server it is told. */
function startClient(url: string) {
  let sql = postgres(url, { max: 1, onnotice: () => {} });
  const acked: { order: number; invoice: number; history: number }[] = [];
  let refused = 0;
  let stop = false;
  let n = 0;
  const done = (async () => {
    while (!stop) {
      n++;
      try {
        // One statement, one transaction: pgbench's update and history row, and an order.
        const [o] = await sql.unsafe(
          `WITH a AS (UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = $1),
                h AS (INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
                      VALUES (1, 1, $2, 1, now()))
           INSERT INTO orders (customer, total) VALUES ($3, 1) RETURNING id::int, invoice`,
          [n % 10000 + 1, n, n % 300 + 1],
        );
        acked.push({ order: o.id, invoice: o.invoice, history: n });
      } catch {
        refused++; // read-only, or the fence ended the session (the next query reconnects)
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  })();
  return {
    acked,
    get refused() {
      return refused;
    },
    /** Points the client at another server. */
    async moveTo(next: string) {
      const old = sql;
      sql = postgres(next, { max: 1, onnotice: () => {} });
      await old.end({ timeout: 1 });
    },
    async stop() {
      stop = true;
      await done;
      await sql.end({ timeout: 1 });
    },
  };
}

Deno.test({
  name: "upgrade: PostgreSQL 12 into an empty 18 under a live load, switchover, nothing lost",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using _dirs = tempDirScope();
    await using source = await startCluster({ major: 12 });
    await using dest = await startCluster({ major: 18 });
    const srcDb = await source.createDatabase("shop");
    const dstDb = await dest.createDatabase("shop");
    const src = source.sql(srcDb);
    const dst = dest.sql(dstDb);
    await src.unsafe(PGBENCH_TABLES);
    await createExtraSchema(src, 1); // the benchmark's: enum, domain, identity, partitions, …
    const path = await writeConfig({
      destination: { url: dest.url(dstDb), create_tables: true },
      databases: [{
        database: "shop",
        urls: [{ url: source.url(srcDb), sid: "shop" }],
        all_tables: true,
      }],
      apply: { commit_interval_ms: 50 },
      metrics: { listen: "" },
      log: { level: "info", format: "text" },
    });

    // The client writes from the start: during the copy, the stream, the switchover.
    const client = startClient(source.url(srcDb));
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await kvsz.waitForOutput(/streaming from/, 120_000);
    await waitFor(() => client.acked.length > 100, { what: "the client's writes" });
    // The view and the trigger's function are the user's to create (kvsz lists them).
    assert.match(kvsz.output, /does not create .*touch.*paid_orders/);

    const r = await runCli(["switchover", "--config", path, "--yes"], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, r.output);
    assert.match(r.stdout, /write downtime \d+\.\d\d s/);
    assert.ok(client.refused > 0, "the fenced source refused the client's writes");
    const before = client.acked.length;

    // Equal before the client moves (kvsz verify, rows and schema of every table).
    const v = await runCli(["verify", "--config", path], { timeoutMs: 120_000 });
    assert.equal(v.code, 0, v.output);
    for (const t of ["pgbench_accounts", "pgbench_history", "orders", "customers", "events"]) {
      assert.match(v.stdout, new RegExp(`ok .*${t}`));
    }

    // Every acknowledged write is at the destination.
    const orders = new Set((await dst.unsafe(`SELECT id::int FROM orders`)).map((x) => x.id));
    const history = new Set(
      (await dst.unsafe(`SELECT aid FROM pgbench_history`)).map((x) => Number(x.aid)),
    );
    assert.deepEqual(client.acked.filter((a) => !orders.has(a.order)), [], "orders lost");
    assert.deepEqual(client.acked.filter((a) => !history.has(a.history)), [], "history lost");
    assert.deepEqual(
      await tableRows(dst, "pgbench_accounts", "aid, abalance"),
      await tableRows(src, "pgbench_accounts", "aid, abalance"),
    );

    // The client moves to the destination: identity and unowned sequences go on above.
    await client.moveTo(dest.url(dstDb));
    await waitFor(() => client.acked.length > before + 20, { what: "writes to the new primary" });
    await client.stop();
    const after = client.acked.slice(before);
    const usedOrders = Math.max(...client.acked.slice(0, before).map((a) => a.order));
    const usedInvoices = Math.max(...client.acked.slice(0, before).map((a) => a.invoice));
    assert.ok(after.every((a) => a.order > usedOrders), "orders.id went on above the source's");
    assert.ok(after.every((a) => a.invoice > usedInvoices), "invoice_numbers went on above");
    await kvsz.stop();
  },
});
