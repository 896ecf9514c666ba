/**
 * Group commit on a real destination: the ready commits of sources waiting
 * for a writer share one transaction; when the destination refuses one
 * member's changes or progress row, the group commits nothing and each member
 * runs again alone: the refused one fails with its own error, the others
 * commit; a member whose source stopped meanwhile is dropped.
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

/** Hands `members` in behind a first group (source 0) that waits for a lock on the only writer. */
async function gathered(
  sql: postgres.Sql,
  groups: GroupCommits,
  members: { work: MemberWork; signal?: AbortSignal }[],
): Promise<PromiseSettledResult<void>[]> {
  const settled: Promise<void>[] = [];
  await whileLocked(sql, async () => {
    // The first group holds the only writer, waiting for the lock; the next ones gather.
    settled.push(groups.commit(work(0), { origin: null }));
    await lockWaited(sql);
    for (const m of members) {
      settled.push(groups.commit(m.work, { origin: null, signal: m.signal }));
    }
  });
  return await Promise.allSettled(settled);
}

/** Source, transaction id and progress of every row written, by source. */
async function written(sql: postgres.Sql) {
  return (await sql.unsafe(
    `SELECT t.source, t.xid::text AS xid, p.n FROM t JOIN progress p USING (source) ORDER BY source`,
  )).map((r) => ({ source: r.source as number, xid: r.xid as string, n: r.n as number }));
}

clusterSuite("group commit", {
  "commits waiting for a writer share one transaction": async (c) => {
    const { sql, writers, groups } = await destination(c);
    try {
      const results = await gathered(
        sql,
        groups,
        [1, 2, 3, 4, 5, 6, 7, 8].map((n) => ({ work: work(n) })),
      );
      assert.deepEqual(results.map((r) => r.status), Array(9).fill("fulfilled"));
      const rows = await written(sql);
      assert.deepEqual(
        rows.map((r) => [r.source, r.n]),
        [0, 1, 2, 3, 4, 5, 6, 7, 8].map((n) => [n, n]),
      );
      const xids = new Set(rows.slice(1).map((r) => r.xid));
      assert.equal(xids.size, 1, "the eight commits gathered behind the first share a transaction");
      assert.notEqual(rows[0].xid, [...xids][0]);
    } finally {
      await writers.close();
    }
  },

  "a member the destination refuses fails alone; the others commit; a stopped one is dropped":
    async (c) => {
      const { sql, writers, groups } = await destination(c);
      try {
        const stopped = new AbortController();
        stopped.abort(new Error("its source stopped")); // before its group got a writer
        const results = await gathered(sql, groups, [
          { work: work(1) },
          { work: work(-1) }, // breaks the check on t
          { work: work(2, { progress: null }) }, // its progress row breaks NOT NULL
          { work: work(3) },
          { work: work(99), signal: stopped.signal },
        ]);
        assert.deepEqual(results.map((r) => r.status), [
          "fulfilled",
          "fulfilled",
          "rejected",
          "rejected",
          "fulfilled",
          "rejected",
        ]);
        const reason = (i: number) => String((results[i] as PromiseRejectedResult).reason);
        assert.match(reason(2), /check constraint/);
        assert.match(reason(3), /null value/);
        assert.match(reason(5), /its source stopped/);
        const rows = await written(sql);
        assert.deepEqual(rows.map((r) => [r.source, r.n]), [[0, 0], [1, 1], [3, 3]]);
      } finally {
        await writers.close();
      }
    },
});
