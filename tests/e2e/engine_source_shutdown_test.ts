/**
 * A source server asked to stop while kvsz cannot apply what it received (a
 * destination lock blocks the apply): the walsender waits at shutdown until
 * the client confirms everything it sent, which kvsz cannot do before its
 * destination commits. kvsz must let the source stop (closing its replication
 * connection), then resume from its stored progress once the source is back,
 * losing and doubling nothing. PostgreSQL's 038_walsnd_shutdown_timeout.pl
 * reproduces the same with an apply worker, once with the walsender's output
 * buffer empty and once full.
 */
import assert from "node:assert/strict";
import { clusterSuite, startCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import type { Sql } from "../../lib/pg/connect.ts";

/** Holds `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` on `table` until the returned function is called. */
async function lockTable(sql: Sql, table: string): Promise<() => Promise<void>> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const holder = sql.begin(async (tx) => {
    await tx.unsafe(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    locked();
    await released;
  });
  await Promise.race([isLocked, holder]);
  return async () => {
    release();
    await holder;
  };
}

clusterSuite("kvsz run: the source stops while the destination is locked", {
  "the source stops; kvsz resumes when it is back, losing and doubling nothing": async (c) => {
    await using source = await startCluster();
    const srcDb = await source.createDatabase("src");
    const dstDb = await c.createDatabase("dst");
    const src = source.sql(srcDb);
    const dst = c.sql(dstDb);
    // A keyless target shows any change applied twice as a duplicate row.
    await src.unsafe(`CREATE TABLE t (id int, v text)`);
    await dst.unsafe(`CREATE TABLE t (id int, v text)`);
    await src.unsafe(`INSERT INTO t SELECT g, 'copied' FROM generate_series(1, 100) g`);
    await using kvsz = KvszProcess.start([
      "run",
      "--config",
      await writeConfig({
        destination: { url: c.url(dstDb) },
        databases: [{
          database: srcDb,
          urls: [{ url: source.url(srcDb), sid: 1 }],
          tables: { t: null },
        }],
        apply: { commit_interval_ms: 50 },
        metrics: { listen: "" },
        log: { level: "info", format: "text" },
      }),
    ]);
    const same = (what: string) =>
      waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz, what });
    await same("initial copy");

    // Once with a few rows (the walsender's output buffer empty), once with more than
    // kvsz reads while it cannot apply (the walsender's output buffer full).
    for (const [round, rows] of [[1, 10], [2, 300_000]]) {
      const unlock = await lockTable(dst, "t");
      await src.unsafe(
        `INSERT INTO t SELECT g, 'round ${round} ' || repeat('x', 100) FROM generate_series(1, ${rows}) g`,
      );
      const [{ lsn }] = await src.unsafe(`SELECT pg_current_wal_lsn()::text AS lsn`);
      await waitFor(async () => {
        const [r] = await dst.unsafe(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE datname = $1 AND application_name = 'kvsz' AND wait_event_type = 'Lock'`,
          [dstDb],
        );
        return r.n > 0;
      }, { what: "kvsz's apply waiting for the lock" });
      // The walsender has sent what it can: all of it, or until kvsz stops reading.
      let sent = "";
      let allSent = false;
      await waitFor(async () => {
        const [r] = await src.unsafe(
          `SELECT sent_lsn::text AS sent, sent_lsn >= $1::pg_lsn AS all_sent
             FROM pg_stat_replication WHERE application_name = 'kvsz'`,
          [lsn],
        );
        const stable = r?.sent === sent;
        sent = r?.sent ?? "";
        allSent = r?.all_sent ?? false;
        await new Promise((r) => setTimeout(r, 500));
        return allSent || stable;
      }, { what: "the walsender to send what it can" });
      // (PostgreSQL 13 reports a sent_lsn past the transaction all the same.)
      if (round === 2 && source.major >= 14) {
        assert.ok(!allSent, "the walsender has WAL left it could not send");
      }

      // pg_ctl's own 60 s wait: past it the source has not stopped at all.
      await source.server.stop("fast", { timeoutSeconds: 60 });
      await unlock();
      await source.server.start();
      await src.unsafe(`INSERT INTO t VALUES (-${round}, 'after restart')`);
      await same(`round ${round}: after the source's restart`);
    }
    assert.match(kvsz.output, /source is shutting down/);
    assert.equal(await kvsz.stop(), 0);
  },
});
