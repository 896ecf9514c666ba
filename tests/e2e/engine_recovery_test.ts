/**
 * Exactly-once under failure: `kill -9` of kvsz while a history table streams,
 * a source server restart, and the destination down for a while. After each,
 * the destination equals the source with no lost change and no doubled
 * history version.
 */
import assert from "node:assert/strict";
import { startCluster, type TestCluster, testVersions } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { tempDirScope } from "../support/temp_dirs.ts";

function config(source: TestCluster, dest: TestCluster, tables: Record<string, unknown>) {
  return {
    destination: { url: dest.url("postgres") },
    databases: [{ database: "postgres", urls: [{ url: source.url("postgres"), sid: 1 }], tables }],
    apply: { commit_interval_ms: 20, batch_size: 500 },
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
  };
}

/** Expected history of `h` computed from the source's own change log. */
const HISTORY_CHECK = `
  SELECT id, count(*)::int AS versions,
         count(*) FILTER (WHERE kvsz_end = '9999-01-01')::int AS current,
         max(v) FILTER (WHERE kvsz_end = '9999-01-01') AS v
    FROM h GROUP BY id`;

for (const major of testVersions()) {
  Deno.test({
    name: `kvsz run: recovery [source PostgreSQL ${major}]`,
    sanitizeOps: false,
    sanitizeResources: false,
    fn: async (t) => {
      await using _dirs = tempDirScope();
      await using source = await startCluster({ major });
      await using dest = await startCluster();
      const src = source.sql();
      const dst = dest.sql();

      await t.step("kill -9 while a history table streams, then restart", async () => {
        await src.unsafe(`CREATE TABLE h (id int PRIMARY KEY, v int)`);
        await src.unsafe(`INSERT INTO h SELECT g, 0 FROM generate_series(1, 50) g`);
        await dst.unsafe(
          `CREATE TABLE h (id int, v int, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
        );
        const cfg = await writeConfig(config(source, dest, { h: { type: "history" } }));
        const updates = 20; // per row: 50 rows x 20 updates, one transaction each
        let kvsz = KvszProcess.start(["run", "--config", cfg]);
        await kvsz.waitForOutput(/streaming from/);
        const writer = (async () => {
          for (let round = 1; round <= updates; round++) {
            await src.unsafe(`UPDATE h SET v = $1`, [round]);
          }
        })();
        // Kill it twice at arbitrary moments while the writer runs.
        for (let i = 0; i < 2; i++) {
          await new Promise((r) => setTimeout(r, 300));
          await kvsz.stop("SIGKILL");
          kvsz = KvszProcess.start(["run", "--config", cfg]);
          await kvsz.waitForOutput(/streaming from/);
        }
        await writer;
        await waitFor(async () => {
          const rows = await dst.unsafe(HISTORY_CHECK);
          return rows.length === 50 &&
            rows.every((r) => r.versions === updates + 1 && r.current === 1 && r.v === updates);
        }, {
          what: "50 ids with exactly 21 versions each",
          timeoutMs: 60_000,
          context: async () =>
            JSON.stringify(await dst.unsafe(`${HISTORY_CHECK} ORDER BY 1 LIMIT 5`)) + kvsz.output,
        });
        assert.equal(await kvsz.stop(), 0);
      });

      await t.step("source restart and destination down: retries, then converges", async () => {
        await src.unsafe(`CREATE TABLE r (id int PRIMARY KEY, v text)`);
        await dst.unsafe(`CREATE TABLE r (id int PRIMARY KEY, v text)`);
        await src.unsafe(`INSERT INTO r VALUES (1, 'a')`);
        const cfg = await writeConfig(config(source, dest, { h: { type: "history" }, r: null }));
        await using kvsz = KvszProcess.start(["run", "--config", cfg]);
        const rows = () => tableRows(src, "r");
        await waitForEqualRows(rows, () => tableRows(dst, "r"), { kvsz });

        // The walsender ends the stream with an ErrorResponse: the reader (which reads
        // the socket itself) hands it to the driver, and the server's message is logged.
        let mark = kvsz.output.length;
        await waitFor(
          async () =>
            (await src.unsafe(`SELECT 1 FROM pg_stat_replication WHERE state = 'streaming'`))
              .length > 0,
          { what: "kvsz's walsender streaming" },
        );
        await src.unsafe(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE state = 'streaming'`,
        );
        await kvsz.waitForOutput(
          /terminating connection due to administrator command/,
          30_000,
          mark,
        );
        await src.unsafe(`INSERT INTO r VALUES (4, 'after the walsender was terminated')`);
        await waitForEqualRows(rows, () => tableRows(dst, "r"), { kvsz });

        await source.server.restart();
        await src.unsafe(`INSERT INTO r VALUES (2, 'after source restart')`);
        await waitForEqualRows(rows, () => tableRows(dst, "r"), { kvsz });

        mark = kvsz.output.length;
        await dest.server.stop();
        await src.unsafe(`INSERT INTO r VALUES (3, 'while destination down')`);
        await src.unsafe(`UPDATE r SET v = 'changed while down' WHERE id = 1`);
        await kvsz.waitForOutput(/retrying in/, 60_000, mark);
        await dest.server.start();
        await waitForEqualRows(rows, () => tableRows(dst, "r"), { kvsz, timeoutMs: 90_000 });
        assert.equal(await kvsz.stop(), 0);
      });
    },
  });
}
