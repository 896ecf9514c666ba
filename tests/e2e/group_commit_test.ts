/**
 * Group commit on a real destination: the ready commits of sources waiting
 * for a writer share one transaction; a member whose writes fail is rolled
 * back alone; a failure of the transaction itself commits nothing and fails
 * every member; a member whose source stopped meanwhile is dropped.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { WriterPool } from "../../lib/apply/writer_pool.ts";
import { GroupCommits, type MemberWork } from "../../lib/apply/group_commit.ts";
import { log } from "../../lib/log.ts";
import { waitFor } from "../support/kvsz.ts";

/** A destination with `t(source, xid)` (source unique, a check on it) and one shared writer. */
async function destination(c: TestCluster) {
  const db = await c.createDatabase("group");
  const sql = c.sql(db);
  await sql.unsafe(`CREATE TABLE t (source int PRIMARY KEY CHECK (source >= 0), xid bigint)`);
  await sql.unsafe(`CREATE TABLE progress (source int PRIMARY KEY, n int NOT NULL)`);
  const writers = new WriterPool({ url: c.url(db), size: 1, log: log("apply") });
  return { sql, writers, groups: new GroupCommits(writers) };
}

/** What source `n` writes: its row (with the transaction's id) and its progress row. */
function work(n: number, opts: { progress?: number | null } = {}): MemberWork {
  return {
    write: async (tx) => {
      await tx.unsafe(`INSERT INTO t VALUES ($1, txid_current())`, [n]);
    },
    record: (tx) =>
      tx.unsafe(`INSERT INTO progress VALUES ($1, $2)`, [
        n,
        opts.progress === undefined ? n : opts.progress,
      ]).execute(),
  };
}

/** Holds `t` locked until `then` resolves, once `waiting` kvsz sessions wait for it. */
async function whileLocked(sql: postgres.Sql, then: () => Promise<unknown>): Promise<void> {
  const locker = await sql.reserve();
  try {
    await locker.unsafe(`BEGIN`);
    await locker.unsafe(`LOCK TABLE t IN EXCLUSIVE MODE`);
    await then();
  } finally {
    await locker.unsafe(`COMMIT`);
    locker.release();
  }
}

/** Waits until a session of kvsz waits for a lock. */
function lockWaited(sql: postgres.Sql): Promise<void> {
  return waitFor(async () => {
    const [r] = await sql.unsafe(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE application_name = 'kvsz' AND wait_event_type = 'Lock'`,
    );
    return r.n > 0;
  }, { what: "the first group waiting for the lock" });
}

clusterSuite("group commit", {
  "commits waiting for a writer share one transaction; a failing member fails alone": async (
    c,
  ) => {
    const { sql, writers, groups } = await destination(c);
    try {
      const settled: Promise<unknown>[] = [];
      await whileLocked(sql, async () => {
        // The first group holds the only writer, waiting for the lock; the next ones gather.
        settled.push(groups.commit(work(0), { origin: null }));
        await lockWaited(sql);
        for (let n = 1; n <= 8; n++) settled.push(groups.commit(work(n), { origin: null }));
        settled.push(groups.commit(work(-1), { origin: null })); // breaks the check
        const stopped = new AbortController();
        settled.push(groups.commit(work(99), { origin: null, signal: stopped.signal }));
        stopped.abort(new Error("its source stopped"));
      });
      const results = await Promise.allSettled(settled);
      assert.deepEqual(
        results.map((r) => r.status),
        [...Array(9).fill("fulfilled"), "rejected", "rejected"],
      );
      assert.match(String((results[9] as PromiseRejectedResult).reason), /check constraint/);
      assert.match(String((results[10] as PromiseRejectedResult).reason), /its source stopped/);
      const rows = await sql.unsafe(
        `SELECT t.source, t.xid, p.n FROM t JOIN progress p USING (source) ORDER BY source`,
      );
      assert.deepEqual(rows.map((r) => r.source), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
      const xids = new Set(rows.slice(1).map((r) => String(r.xid)));
      assert.equal(xids.size, 1, "the eight commits gathered behind the first share a transaction");
      assert.notEqual(String(rows[0].xid), [...xids][0]);
    } finally {
      await writers.close();
    }
  },

  "a failure of the group's transaction commits nothing and fails every member": async (c) => {
    const { sql, writers, groups } = await destination(c);
    try {
      const settled: Promise<unknown>[] = [];
      await whileLocked(sql, async () => {
        settled.push(groups.commit(work(0), { origin: null }));
        await lockWaited(sql);
        settled.push(groups.commit(work(1), { origin: null }));
        // Its progress row breaks NOT NULL: the transaction is lost, not only its part.
        settled.push(groups.commit(work(2, { progress: null }), { origin: null }));
        settled.push(groups.commit(work(3), { origin: null }));
      });
      const results = await Promise.allSettled(settled);
      assert.deepEqual(results.map((r) => r.status), [
        "fulfilled",
        "rejected",
        "rejected",
        "rejected",
      ]);
      const rows = await sql.unsafe(`SELECT source FROM t ORDER BY source`);
      assert.deepEqual(rows.map((r) => r.source), [0], "nothing of the failed group committed");
      const [p] = await sql.unsafe(`SELECT count(*)::int AS n FROM progress`);
      assert.equal(p.n, 1);
    } finally {
      await writers.close();
    }
  },
});
