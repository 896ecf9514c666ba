/**
 * The initial copy of many tenants, one copy turn (`sync.parallelism: 1`):
 * a tenant in line for its copy holds no slot (no snapshot, no WAL kept) and
 * no connection but its replication one at the source, nothing at the
 * destination; a tenant copied early streams its changes while the others
 * still wait; the metrics and the log count the tenants copied out of all.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { startCluster } from "../support/cluster.ts";
import { createTenants } from "../support/tenants.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { tempDirScope } from "../support/temp_dirs.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";
import { parseExposition, valueOf } from "../support/prometheus.ts";
import { kvszObjectName } from "../../lib/pg/identifiers.ts";

const TENANTS = 4;
const WORKERS = 1;
const PARALLELISM = 1;

interface Tenant {
  sid: string;
  db: string;
  sql: postgres.Sql;
  /** Its target, `t_<sid>`. */
  target: string;
}

/** Holds an ACCESS EXCLUSIVE lock on each target until released: a copy into it waits. */
async function lockTargets(client: () => postgres.Sql, tenants: Tenant[]) {
  const locks = new Map<string, postgres.ReservedSql>();
  for (const t of tenants) {
    const session = await client().reserve();
    await session.unsafe(`BEGIN`);
    await session.unsafe(`LOCK TABLE ${t.target} IN ACCESS EXCLUSIVE MODE`);
    locks.set(t.sid, session);
  }
  return {
    async release(t: Tenant) {
      const session = locks.get(t.sid);
      locks.delete(t.sid);
      await session?.unsafe(`COMMIT`);
      session?.release();
    },
    async releaseAll() {
      for (const t of tenants) await this.release(t);
    },
  };
}

Deno.test({
  name: "kvsz run: tenants wait for their copy holding nothing, copied ones stream meanwhile",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using _dirs = tempDirScope();
    await using source = await startCluster();
    await using dest = await startCluster();
    const dstDb = await dest.createDatabase("queue");
    const dst = dest.sql(dstDb);
    const names = await createTenants(source, TENANTS, {
      ddl: `CREATE TABLE accounts (id int PRIMARY KEY, v int);
            INSERT INTO accounts SELECT g, g FROM generate_series(1, 500) g;`,
    });
    const tenants: Tenant[] = names.map((db, i) => ({
      sid: String(i + 1),
      db,
      sql: source.sql(db),
      target: `t_${i + 1}`,
    }));
    for (const t of tenants) {
      await dst.unsafe(`CREATE TABLE ${t.target} (id int PRIMARY KEY, v int)`);
    }
    const port = freePort();
    const cfg = await writeConfig({
      destination: { url: dest.url(dstDb) },
      databases: tenants.map((t) => ({
        database: t.db,
        urls: [{ url: source.url(t.db), sid: t.sid }],
        tables: { accounts: { target: t.target } },
      })),
      apply: { commit_interval_ms: 50, workers: WORKERS },
      sync: { parallelism: PARALLELISM },
      metrics: { listen: `127.0.0.1:${port}` },
      log: { level: "info", format: "text" },
    });
    const admin = source.sql("postgres");
    const slots = async () =>
      (await admin.unsafe(`SELECT slot_name FROM pg_replication_slots ORDER BY 1`)).map((r) =>
        r.slot_name as string
      );
    const sourceSessions = async () => {
      const [r] = await admin.unsafe(
        `SELECT count(*) FILTER (WHERE backend_type = 'walsender')::int AS walsenders,
                count(*) FILTER (WHERE backend_type = 'client backend')::int AS clients
           FROM pg_stat_activity WHERE application_name = 'kvsz'`,
      );
      return { walsenders: Number(r.walsenders), clients: Number(r.clients) };
    };
    /** The tenant whose copy waits for its target's lock. */
    const blockedCopy = async (): Promise<Tenant | undefined> => {
      const rows = await dst.unsafe(
        `SELECT query FROM pg_stat_activity
          WHERE datname = $1 AND application_name = 'kvsz' AND wait_event_type = 'Lock'`,
        [dstDb],
      );
      return tenants.find((t) => rows.some((r) => r.query.includes(`"${t.target}"`)));
    };
    const copied = async () => {
      const m = parseExposition(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
      return [valueOf(m, "kvsz_sync_sources_done", {}), valueOf(m, "kvsz_sync_sources", {})];
    };
    const rowsEqual = (t: Tenant) =>
      waitForEqualRows(() => tableRows(t.sql, "accounts"), () => tableRows(dst, t.target), {
        what: `${t.target} equal to tenant ${t.sid}'s accounts`,
      });

    const locks = await lockTargets(() => dest.sql(dstDb), tenants);
    await using kvsz = KvszProcess.start(["run", "--config", cfg, "--skip-checks"]);
    try {
      // One copy holds the turn (waiting for its target's lock); the others wait in line.
      let first: Tenant | undefined;
      await waitFor(async () => (first = await blockedCopy()) !== undefined, {
        what: "a copy waiting for its target's lock",
        context: () => kvsz.output.slice(-3000),
      });
      await waitFor(() => (kvsz.output.match(/created publication/g) ?? []).length === TENANTS, {
        what: "every tenant prepared",
      });
      await new Promise((r) => setTimeout(r, 1000)); // a slot made while in line would show by now
      // In line, a tenant holds no slot (nor its snapshot) ...
      assert.deepEqual(await slots(), [kvszObjectName(first!.db, first!.sid)]);
      // ... and at the source only its replication connection: the copy's one connection and
      // the slot poller's remain beside the walsenders (a tenant's own closes once unused).
      let sessions = { walsenders: 0, clients: 0 };
      await waitFor(async () => {
        sessions = await sourceSessions();
        return sessions.clients <= PARALLELISM + 1;
      }, {
        what: "kvsz's client connections at the source",
        context: () => JSON.stringify(sessions),
      });
      assert.equal(sessions.walsenders, TENANTS);
      const [{ n: atDest }] = await dst.unsafe(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = $1 AND application_name = 'kvsz'`,
        [dstDb],
      );
      assert.ok(atDest <= WORKERS + PARALLELISM + 2, `${atDest} destination connections`);
      assert.deepEqual(await copied(), [0, TENANTS]);

      // The first is copied and streams; the next copy waits for its lock.
      await locks.release(first!);
      await rowsEqual(first!);
      let second: Tenant | undefined;
      await waitFor(async () => (second = await blockedCopy()) !== undefined, {
        what: "the next copy waiting for its target's lock",
      });
      assert.notEqual(second, first);
      await waitFor(async () => (await copied())[0] === 1, { what: "one tenant copied" });
      await kvsz.waitForOutput(
        new RegExp(
          `initial copy done, streaming: 1 of ${TENANTS} sources copied database=${first!.db} `,
        ),
      );

      // The copied tenant's changes are applied while the others still wait for their copy.
      await first!.sql.unsafe(`INSERT INTO accounts SELECT g, g FROM generate_series(501, 600) g`);
      await first!.sql.unsafe(`UPDATE accounts SET v = -v WHERE id <= 50`);
      await rowsEqual(first!);
      assert.equal(await blockedCopy(), second, "the next copy still waits");
      assert.equal((await slots()).length, 2, "the two others still have no slot");
      assert.deepEqual(await copied(), [1, TENANTS]);

      // Every lock released: every tenant is copied and streams.
      await locks.releaseAll();
      for (const t of tenants) await rowsEqual(t);
      await waitFor(async () => (await copied())[0] === TENANTS, { what: "every tenant copied" });
      await kvsz.waitForOutput(new RegExp(`${TENANTS} of ${TENANTS} sources copied`));
      for (const t of tenants) {
        await t.sql.unsafe(`DELETE FROM accounts WHERE id > 450`);
        await rowsEqual(t);
      }
    } finally {
      await locks.releaseAll();
    }
    assert.equal(await kvsz.stop(), 0, kvsz.output.slice(-3000));
  },
});
