/**
 * The destination-side lock of a source and the fence on its writes, on a
 * real destination, with no source server: two processes are played by two
 * sets of connections. The lock: one holder at a time, a waiter told once
 * and taking over when the holder's session ends, a lost session noticed.
 * The fence: a write of an attempt whose claim was taken over rolls back
 * (alone, in a group commit), and a claim waits for the old owner's open
 * transaction; a copy of such an attempt commits nothing.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { connect, serverMajor, type Sql } from "../../lib/pg/connect.ts";
import { SourceLock, SourceLocks } from "../../lib/engine/source_locks.ts";
import {
  ensureKvszSchema,
  readProgress,
  recordIdlePositions,
  resetProgress,
  writeProgress,
} from "../../lib/apply/progress.ts";
import {
  ClaimBusy,
  claimSource,
  fenced,
  fenceOwner,
  LostOwnership,
  readOwners,
} from "../../lib/apply/ownership.ts";
import { GroupCommits } from "../../lib/apply/group_commit.ts";
import { WriterPool } from "../../lib/apply/writer_pool.ts";
import { log } from "../../lib/log.ts";
import { waitFor } from "../support/kvsz.ts";
import { createSlotWithSnapshot } from "../../lib/source/slot.ts";
import { resolveTables } from "../../lib/source/tables.ts";
import { readTargetTable } from "../../lib/apply/catalog.ts";
import { copyTables, planCopy } from "../../lib/engine/initial_sync.ts";
import { CopySlots } from "../../lib/engine/copy_slots.ts";
import type { TableMapping } from "../../lib/config/types.ts";

const SLOT = "kvsz_tenant_1";

/** One process's catalog client and its locks (renewed as SharedDestination does). */
function instance(url: string) {
  let catalog = connect(url);
  const locks = new SourceLocks({
    catalog: () => catalog,
    renew: (stale) => {
      if (stale !== catalog) return;
      catalog = connect(url);
      stale.end({ timeout: 0 }).catch(() => {});
    },
    pollMs: 100,
  });
  return {
    locks,
    get catalog(): Sql {
      return catalog;
    },
    async close() {
      locks.close();
      await catalog.end({ timeout: 1 });
    },
  };
}

/** Backend pids holding an advisory lock on the destination. */
async function lockHolders(c: TestCluster, db: string): Promise<number[]> {
  const rows = await c.sql(db).unsafe(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted ORDER BY pid`,
  );
  return rows.map((r) => Number(r.pid));
}

const progressRecord = (lsn: string) => ({
  commitLsn: lsn,
  endLsn: lsn,
  commitTimeIso: null,
  counts: { clone: 1, append: 0, history: 0, anomalies: 0 },
});

clusterSuite("source locks and the write fence", {
  "a second process waits, is told once, and takes over when the holder's session ends": async (
    c,
  ) => {
    const db = await c.createDatabase("locks");
    const a = instance(c.url(db));
    const b = instance(c.url(db));
    try {
      const held = await a.locks.acquire(SLOT);
      let told = 0;
      let bLock: SourceLock | null = null;
      const waiting = b.locks.acquire(SLOT, { onWait: () => told++ }).then((l) => (bLock = l));
      await waitFor(() => told === 1, { what: "the waiter told the lock is held elsewhere" });
      // Several polls later, still waiting and told once.
      const [aPid] = await a.catalog.unsafe(`SELECT pg_backend_pid() AS pid`);
      await waitFor(async () => (await lockHolders(c, db)).length === 1);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(bLock, null, "the second process does not get a held lock");
      assert.equal(told, 1, "waiting is said once");
      assert.deepEqual(await lockHolders(c, db), [Number(aPid.pid)]);

      // The holder's session ends: it learns it lost the lock, the waiter takes over.
      let lost = false;
      held.onLost(() => (lost = true));
      await c.sql(db).unsafe(`SELECT pg_terminate_backend($1)`, [aPid.pid]);
      await waiting;
      await waitFor(() => lost, { what: "the holder noticing its lock is lost" });
      assert.ok(held.isLost);
      const [bPid] = await b.catalog.unsafe(`SELECT pg_backend_pid() AS pid`);
      assert.deepEqual(await lockHolders(c, db), [Number(bPid.pid)]);

      // The first process asks again: it waits while the second holds it, gets it on release.
      let again: SourceLock | null = null;
      const reacquired = a.locks.acquire(SLOT).then((l) => (again = l));
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(again, null, "a lock held elsewhere is not taken");
      bLock!.release();
      await reacquired;
      assert.equal(again!.isLost, false);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  },

  "sources asking at once for free locks get them, none told another process holds it": async (
    c,
  ) => {
    // At start every source asks within a few ms: those that come while a poll runs are
    // asked in the next poll, not said to be waiting (1,000 false "waiting" lines before).
    const db = await c.createDatabase("locks");
    const a = instance(c.url(db));
    try {
      let told = 0;
      const names = Array.from({ length: 40 }, (_, i) => `kvsz_tenant_${i}`);
      // The first call starts a poll for its own key; the others come while it runs.
      const locks = await Promise.all(
        names.map((n) => a.locks.acquire(n, { onWait: () => told++ })),
      );
      assert.equal(locks.length, names.length);
      assert.equal(told, 0, "no source was told its lock is held elsewhere");
      const holders = await lockHolders(c, db);
      assert.equal(holders.length, names.length, "every lock is held");
      assert.equal(new Set(holders).size, 1, "by one session");
    } finally {
      await a.close();
    }
  },

  "a session given up on while the server keeps it (and its locks) is ended, and the locks taken again":
    async (c) => {
      const db = await c.createDatabase("locks");
      const url = c.url(db);
      let catalog = connect(url);
      let told = 0;
      const locks = new SourceLocks({ catalog: () => catalog, renew: () => {}, pollMs: 100 });
      try {
        const first = await locks.acquire(SLOT);
        const [old] = await catalog.unsafe(`SELECT pg_backend_pid() AS pid`);
        // A connection taken for dead is replaced; the old one stays open, as its server
        // session does behind a dead path.
        const left = catalog;
        catalog = connect(url);
        await waitFor(() => first.isLost, { what: "the hold lost with its session" });
        let again: SourceLock | null = null;
        locks.acquire(SLOT, { onWait: () => told++ }).then((l) => (again = l), () => {});
        await waitFor(() => again !== null, { what: "the lock taken again", timeoutMs: 20_000 });
        left.end({ timeout: 0 }).catch(() => {});
        const [now] = await catalog.unsafe(`SELECT pg_backend_pid() AS pid`);
        assert.deepEqual(await lockHolders(c, db), [Number(now.pid)]);
        const [gone] = await c.sql(db).unsafe(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1`,
          [old.pid],
        );
        assert.equal(gone.n, 0, "the session left behind was ended");
        assert.equal(told, 0, "no wait is said for a lock this process held");
        again!.release();
      } finally {
        locks.close();
        await catalog.end({ timeout: 1 });
      }
    },

  "two holds of one key in a process: the lock stays until both are released": async (c) => {
    const db = await c.createDatabase("locks");
    const a = instance(c.url(db));
    try {
      const first = await a.locks.acquire(SLOT);
      const second = await a.locks.acquire(SLOT);
      first.release();
      await new Promise((r) => setTimeout(r, 300));
      assert.equal((await lockHolders(c, db)).length, 1, "still held for the second");
      second.release();
      await waitFor(async () => (await lockHolders(c, db)).length === 0, {
        what: "the lock released with its last hold",
      });
    } finally {
      await a.close();
    }
  },

  "a write of an attempt whose claim was taken over rolls back": async (c) => {
    const db = await c.createDatabase("fence");
    const dst = c.sql(db);
    const url = c.url(db);
    const [catalogA, catalogB, writerA] = [connect(url), connect(url), connect(url)];
    try {
      await ensureKvszSchema(catalogA);
      await dst.unsafe(`CREATE TABLE t (id int)`);
      const key = { database: "tenant", sid: "1" };
      const a = { ...key, ownerToken: "token-a" };
      const b = { ...key, ownerToken: "token-b" };
      await claimSource(catalogA, key, { token: a.ownerToken, owner: "process A" });
      await resetProgress(catalogA, a, "0/100");

      // A's transaction passed the fence: B's claim waits for it (here: gives up for now).
      await writerA.unsafe(`BEGIN`);
      await writerA.unsafe(`INSERT INTO t VALUES (1)`);
      await writeProgress(writerA, a, progressRecord("0/200"));
      await assert.rejects(
        claimSource(catalogB, key, { token: b.ownerToken, owner: "process B" }),
        ClaimBusy,
      );
      await writerA.unsafe(`COMMIT`);
      await claimSource(catalogB, key, { token: b.ownerToken, owner: "process B" });
      assert.deepEqual((await readOwners(dst)).map((o) => o.owner), ["process B"]);

      // A's next transaction fails at the fence and commits nothing, even with its COMMIT
      // sent right behind the progress row (one round trip, as the applier does).
      await writerA.unsafe(`BEGIN`);
      await writerA.unsafe(`INSERT INTO t VALUES (2)`);
      const progress = writeProgress(writerA, a, progressRecord("0/300"));
      const commit = writerA.unsafe(`COMMIT`).execute();
      await assert.rejects(progress, LostOwnership);
      assert.equal((await commit).command, "ROLLBACK");
      await writerA.unsafe(`BEGIN`);
      await assert.rejects(fenceOwner(writerA, a), LostOwnership);
      await writerA.unsafe(`ROLLBACK`);
      const idle = [{ key: a, lsn: "0/400" }, { key: { database: "other", sid: "1" }, lsn: "0/1" }];
      assert.deepEqual([...await recordIdlePositions(writerA, idle)], ["other\u00001"]);
      await assert.rejects(resetProgress(catalogA, a, "0/500"), LostOwnership);
      assert.deepEqual((await dst.unsafe(`SELECT id FROM t`)).map((r) => r.id), [1]);
      assert.equal((await readProgress(dst, key.database, key.sid))?.endLsn, 0x200n);

      // The new owner writes.
      const recorded = await recordIdlePositions(writerA, [{ key: b, lsn: "0/400" }]);
      assert.deepEqual([...recorded], ["tenant\u00001"]);
      assert.equal((await readProgress(dst, key.database, key.sid))?.endLsn, 0x400n);
      await writerA.unsafe(`BEGIN`);
      await fenceOwner(writerA, b);
      await writeProgress(writerA, b, progressRecord("0/500"));
      await writerA.unsafe(`COMMIT`);
      assert.equal((await readProgress(dst, key.database, key.sid))?.endLsn, 0x500n);
    } finally {
      await Promise.all([catalogA, catalogB, writerA].map((s) => s.end({ timeout: 1 })));
    }
  },

  "a copy whose claim was taken over commits nothing, whole or in page ranges": async (c) => {
    const srcDb = await c.createDatabase("src");
    const dstDb = await c.createDatabase("dst");
    const [src, dst] = [c.sql(srcDb), c.sql(dstDb)];
    for (const sql of [src, dst]) {
      await sql.unsafe(`CREATE TABLE whole (id int PRIMARY KEY, v text)`);
      await sql.unsafe(`CREATE TABLE ranged (id int PRIMARY KEY, v text)`);
    }
    await src.unsafe(`INSERT INTO whole SELECT g, 'w' || g FROM generate_series(1, 100) g`);
    await src.unsafe(`INSERT INTO ranged SELECT g, 'r' || g FROM generate_series(1, 5000) g`);
    const catalog = connect(c.url(dstDb));
    const source = connect(c.url(srcDb));
    const replication = connect(c.url(srcDb), { replication: true });
    try {
      await ensureKvszSchema(catalog);
      const key = { database: "tenant", sid: "1" };
      await claimSource(catalog, key, { token: "current", owner: "the current owner" });
      const major = await serverMajor(source);
      const snapshot = await createSlotWithSnapshot(replication, "kvsz_fence_copy", { major });
      const mapping = (name: string): TableMapping => ({
        source: name,
        sourceSchema: "public",
        sourceName: name,
        target: name,
        mode: "clone",
        onColumnDrift: "stop",
      });
      const copy = async (name: string, opts: { ownerToken: string; splitBytes?: number }) => {
        const [table] = await resolveTables(source, [mapping(name)], major);
        const target = (await readTargetTable(catalog, "public", name))!;
        const plan = await planCopy([{ table, target, resync: false, exclusive: true }], {
          source,
          dest: catalog,
          ...key,
          sourceMajor: major,
          parallelism: 2,
          splitBytes: opts.splitBytes ?? 0,
          ownerToken: opts.ownerToken,
        });
        await copyTables(plan, {
          sourceUrl: c.url(srcDb),
          snapshotName: snapshot.snapshotName,
          snapshotLsn: snapshot.consistentPoint,
          destUrl: c.url(dstDb),
          destSchema: "public",
          slots: new CopySlots(2),
          rate: 0,
          burst: 0,
          progress: { start() {}, update() {}, finish() {} },
        });
      };
      const counts = async () =>
        (await dst.unsafe(
          `SELECT (SELECT count(*) FROM whole)::int AS whole, (SELECT count(*) FROM ranged)::int AS ranged,
                  (SELECT count(*) FROM kvsz.synced_tables WHERE synced_lsn <> '0/0')::int AS synced`,
        ))[0];
      await assert.rejects(copy("whole", { ownerToken: "stale" }), LostOwnership);
      if (major >= 14) { // page ranges need TID range scans
        await assert.rejects(copy("ranged", { ownerToken: "stale", splitBytes: 1 }), LostOwnership);
      }
      assert.deepEqual({ ...await counts() }, { whole: 0, ranged: 0, synced: 0 });

      await copy("whole", { ownerToken: "current" });
      await copy("ranged", { ownerToken: "current", splitBytes: 1 });
      assert.deepEqual({ ...await counts() }, { whole: 100, ranged: 5000, synced: 2 });
    } finally {
      await Promise.all([catalog, source, replication].map((s) => s.end({ timeout: 1 })));
    }
  },

  "in a group commit, a source another process claimed fails alone; the others commit": async (
    c,
  ) => {
    const db = await c.createDatabase("group");
    const dst = c.sql(db);
    await ensureKvszSchema(dst);
    await dst.unsafe(`CREATE TABLE t (sid text, n int)`);
    const writers = new WriterPool({ url: c.url(db), size: 1, log: log("apply") });
    const groups = new GroupCommits(writers);
    try {
      const sources = ["1", "2", "3"].map((sid) => ({ database: "tenant", sid }));
      for (const s of sources) {
        await claimSource(dst, s, { token: `token-${s.sid}`, owner: "this process" });
      }
      await claimSource(dst, sources[1], { token: "newer", owner: "another process" });
      // Handed in together: one group, one transaction, a savepoint each.
      const results = await Promise.allSettled(sources.map((s) => {
        const owned = { ...s, ownerToken: `token-${s.sid}` };
        return groups.commit({
          write: (tx) =>
            fenced(tx, owned, async () => {
              await tx.unsafe(`INSERT INTO t VALUES ($1, 1)`, [s.sid]);
            }),
          record: (tx) => writeProgress(tx, owned, progressRecord("0/100")),
        }, { origin: null });
      }));
      assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected", "fulfilled"]);
      assert.ok((results[1] as PromiseRejectedResult).reason instanceof LostOwnership);
      const rows = await dst.unsafe(`SELECT sid FROM t ORDER BY sid`);
      assert.deepEqual(rows.map((r) => r.sid), ["1", "3"]);
      const progress = await dst.unsafe(`SELECT sid FROM kvsz.progress ORDER BY sid`);
      assert.deepEqual(progress.map((r) => r.sid), ["1", "3"]);
    } finally {
      await writers.close();
    }
  },
});
