/**
 * Failure isolation: eight tenant databases stream into one destination
 * table through two shared writers, under a light write load. Four of them
 * break — one's database is dropped, one's slot is dropped, one's mapped
 * table is dropped at the destination, one's rows break a destination
 * constraint — and each is retried and reported on its own (a log line
 * naming it and the problem, not a flood; /readyz and the metrics name it),
 * while the other four keep streaming: their latest rows arrive, again and
 * again, while the broken ones are still broken. Fixed, the broken ones
 * resume; the dropped slot's tenant is copied again by itself.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { startCluster } from "../support/cluster.ts";
import { createTenants } from "../support/tenants.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { tempDirScope } from "../support/temp_dirs.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";
import { kvszObjectName } from "../../lib/pg/identifiers.ts";
import { parseExposition, valueOf } from "../support/prometheus.ts";

const TENANTS = 8;
/** First id the write load inserts (the template holds 1..100). */
const FIRST_ID = 1001;

interface Tenant {
  sid: string;
  db: string;
  sql: postgres.Sql;
  /** Highest id the write load committed. */
  last: number;
  /** The write load leaves it alone. */
  paused: boolean;
}

/** Every tenant inserts a row into accounts every 100 ms (one transaction each) until stopped. */
function writeLoad(tenants: Tenant[]) {
  let running = true;
  const loops = tenants.map(async (t) => {
    let id = FIRST_ID;
    while (running) {
      if (!t.paused) {
        try {
          await t.sql.unsafe(`INSERT INTO accounts VALUES ($1, $1)`, [id]);
          t.last = id++;
        } catch (e) {
          if (!t.paused) throw e; // its database is being dropped
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** Highest id of `tenant` in the destination (0: none). */
async function destLast(dst: postgres.Sql, tenant: Tenant): Promise<number> {
  const [r] = await dst.unsafe(
    `SELECT coalesce(max(id), 0)::int AS n FROM accounts WHERE sid = $1`,
    [tenant.sid],
  );
  return r.n;
}

/** Ends whatever uses `slot` and drops it (kvsz takes it again within a second: tried in a loop). */
async function dropSlot(admin: postgres.Sql, slot: string): Promise<void> {
  await waitFor(async () => {
    await admin.unsafe(
      `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
        WHERE slot_name = $1 AND active_pid IS NOT NULL`,
      [slot],
    );
    try {
      await admin.unsafe(`SELECT pg_drop_replication_slot($1)`, [slot]);
      return true;
    } catch {
      return false; // still active
    }
  }, { what: `slot ${slot} dropped` });
}

Deno.test({
  name: "kvsz run: a broken tenant is retried on its own while the others stream",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using _dirs = tempDirScope();
    await using source = await startCluster({
      settings: { max_wal_senders: 30, max_replication_slots: 30 },
    });
    await using dest = await startCluster();
    const dstDb = await dest.createDatabase("iso");
    const dst = dest.sql(dstDb);
    await dst.unsafe(
      `CREATE TABLE accounts (sid text, id int, v int CONSTRAINT v_small CHECK (v < 1000000),
                              PRIMARY KEY (sid, id))`,
    );
    await dst.unsafe(`CREATE TABLE notes (sid text, id int, body text, PRIMARY KEY (sid, id))`);
    const names = await createTenants(source, TENANTS, {
      ddl: `CREATE TABLE accounts (id int PRIMARY KEY, v int);
            INSERT INTO accounts SELECT g, g FROM generate_series(1, 100) g;
            CREATE TABLE notes (id int PRIMARY KEY, body text);`,
    });
    const tenants: Tenant[] = names.map((db, i) => ({
      sid: String(i + 1),
      db,
      sql: source.sql(db),
      last: 0,
      paused: false,
    }));
    const [gone, slotless, tableless, refused, ...healthy] = tenants;
    const port = freePort();
    const cfg = await writeConfig({
      destination: { url: dest.url(dstDb) },
      databases: tenants.map((t) => ({
        database: t.db,
        urls: [{ url: source.url(t.db), sid: t.sid }],
        tables: t === tableless ? { accounts: null, notes: null } : { accounts: null },
      })),
      apply: { commit_interval_ms: 50, workers: 2 },
      sync: { parallelism: 2 },
      metrics: { listen: `127.0.0.1:${port}` },
      log: { level: "info", format: "text" },
    });
    const admin = source.sql("postgres");
    const scrape = async () =>
      parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
    const readyz = async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).json();
    const errors = async (t: Tenant) =>
      valueOf(await scrape(), "kvsz_source_errors_total", { database: t.db, sid: t.sid }) ?? 0;

    await using kvsz = KvszProcess.start(["run", "--config", cfg]);
    await waitFor(() => (kvsz.output.match(/streaming from/g) ?? []).length >= TENANTS, {
      what: "every tenant streaming",
      context: () => kvsz.output.slice(-3000),
    });
    const load = writeLoad(tenants);
    try {
      const arrived = async () => await Promise.all(tenants.map((t) => destLast(dst, t)));
      await waitFor(async () => (await arrived()).every((n) => n >= FIRST_ID), {
        what: "every tenant's first rows",
      });

      // Break four tenants.
      await refused.sql.unsafe(`UPDATE accounts SET v = 2000000 WHERE id = 1`);
      await dst.unsafe(`DROP TABLE notes`);
      await tableless.sql.unsafe(`INSERT INTO notes VALUES (1, 'no target')`);
      await dropSlot(admin, kvszObjectName(slotless.db, slotless.sid));
      gone.paused = true;
      await admin.unsafe(`ALTER DATABASE "${gone.db}" ALLOW_CONNECTIONS false`);
      await admin.unsafe(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`,
        [gone.db],
      );
      await dropSlot(admin, kvszObjectName(gone.db, gone.sid));
      await admin.unsafe(`DROP DATABASE "${gone.db}" WITH (FORCE)`);
      const brokenAt = { tableless: tableless.last, refused: refused.last };

      // Each broken tenant fails again and again (retried, not given up) ...
      const failing = [gone, tableless, refused];
      for (const t of failing) {
        await waitFor(async () => (await errors(t)) >= 3, {
          what: `three failed attempts of ${t.db}`,
          timeoutMs: 60_000,
          context: () => kvsz.output.slice(-3000),
        });
      }
      const mark = kvsz.output.length;
      const failed = await Promise.all(failing.map(errors));
      // ... while the healthy ones keep streaming: their latest rows arrive, twice over.
      for (let round = 0; round < 2; round++) {
        const latest = healthy.map((t) => t.last);
        await waitFor(async () => {
          const now = await Promise.all(healthy.map((t) => destLast(dst, t)));
          return now.every((n, i) => n >= latest[i]);
        }, { what: `round ${round}: the healthy tenants' latest rows` });
      }
      // The broken ones are still broken (nothing past the change that broke them arrived).
      assert.ok(tableless.last > brokenAt.tableless + 10);
      assert.ok((await destLast(dst, tableless)) <= brokenAt.tableless);
      assert.ok(refused.last > brokenAt.refused + 10);
      assert.ok((await destLast(dst, refused)) <= brokenAt.refused);
      // The dropped slot's tenant is copied again by itself, and streams.
      await waitForEqualRows(
        () => tableRows(slotless.sql, "accounts", `'${slotless.sid}' AS sid, *`),
        () => tableRows(dst, "accounts", "*", `sid = '${slotless.sid}'`),
        { kvsz, what: "the dropped slot's tenant copied again" },
      );

      // Reported on its own: /readyz names each broken tenant and its problem; the slot poller
      // (which read the server through the dropped database) still reads the others' slots.
      const ready = await readyz();
      const stateOf = (t: Tenant) => ready.sources.find((s: { sid: string }) => s.sid === t.sid);
      for (const t of healthy) assert.equal(stateOf(t).state, "streaming", JSON.stringify(ready));
      assert.match(stateOf(gone).error, /database "[^"]+" does not exist/);
      assert.match(stateOf(tableless).error, /public\.notes/);
      assert.match(stateOf(refused).error, /check constraint "v_small"/);
      const retained = (t: Tenant, m: Awaited<ReturnType<typeof scrape>>) =>
        valueOf(m, "kvsz_slot_retained_wal_bytes", { database: t.db, sid: t.sid });
      await waitFor(async () => retained(gone, await scrape()) === undefined, {
        what: "a poll of the slots after the drop",
      });
      const polled = await scrape();
      for (const t of healthy) assert.notEqual(retained(t, polled), undefined, t.db);

      // The log names each one and its problem once or twice, not at every retry: while
      // each failed again, nothing more was said of it.
      for (const [i, t] of failing.entries()) {
        await waitFor(async () => (await errors(t)) > failed[i], {
          what: `another failed attempt of ${t.db}`,
          timeoutMs: 60_000,
        });
      }
      const lines = kvsz.output.split("\n");
      const linesOf = (t: Tenant, output = lines) =>
        output.filter((l) => / (ERR|WRN|INF) /.test(l) && l.includes(`database=${t.db} `));
      for (const t of failing) {
        const said = linesOf(t).filter((l) => / ERR /.test(l));
        assert.ok(said.length >= 1 && said.length <= 3, `${t.db}: ${said.join("\n")}`);
        assert.deepEqual(linesOf(t, kvsz.output.slice(mark).split("\n")), [], t.db);
      }
      assert.match(linesOf(gone).join("\n"), /ERR .*database "[^"]+" does not exist/);
      assert.match(linesOf(tableless).join("\n"), /ERR .*public\.notes .*do(es)? not exist/);
      assert.match(linesOf(refused).join("\n"), /ERR .*check constraint "v_small"/);
      for (const t of healthy) assert.deepEqual(linesOf(t).filter((l) => / ERR /.test(l)), []);
    } finally {
      await load.stop();
    }
    assert.equal(await kvsz.stop(), 0, kvsz.output.slice(-3000));
  },
});
