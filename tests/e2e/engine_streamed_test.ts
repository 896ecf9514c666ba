/**
 * Transactions larger than `logical_decoding_work_mem` (64 kB here), which
 * the server streams while they run (`apply.stream_in_progress`, PostgreSQL
 * 14+): written into a destination transaction as they arrive and committed
 * with their commit, or (after a savepoint rollback, or when others waited
 * too long) spooled on disk and applied at their commit; dropped at their
 * abort; nothing of them visible in the destination before their commit.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { makeTempDir } from "../support/temp_dirs.ts";
import type { Sql } from "../../lib/pg/connect.ts";

async function setup(c: TestCluster, spoolDir: string, apply: Record<string, unknown> = {}) {
  const srcDb = await c.createDatabase("src");
  const dstDb = await c.createDatabase("dst");
  const src = c.sql(srcDb), dst = c.sql(dstDb);
  for (const db of [src, dst]) {
    await db.unsafe(`CREATE TABLE big (id int PRIMARY KEY, v text, n int)`);
    await db.unsafe(`CREATE TABLE small (id int PRIMARY KEY, v text)`);
  }
  await src.unsafe(`CREATE TABLE hist (id int PRIMARY KEY, v text)`);
  await dst.unsafe(
    `CREATE TABLE hist (id int, v text, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
  );
  /** A config streaming `tables` of these databases. */
  const configFor = (tables: Record<string, unknown>) =>
    writeConfig({
      destination: { url: c.url(dstDb) },
      databases: [{ database: srcDb, urls: [{ url: c.url(srcDb), sid: 1 }], tables }],
      apply: { commit_interval_ms: 50, spool_dir: spoolDir, ...apply },
      metrics: { listen: "" },
      log: { level: "info", format: "text" },
    });
  const config = await configFor({ big: null, small: null, hist: { type: "history" } });
  return { src, dst, dstDb, config, configFor };
}

/** Sessions on `db` with an open, idle transaction (kvsz applying a transaction as it streams). */
async function openDestinationTransactions(admin: Sql, db: string): Promise<number> {
  const [row] = await admin.unsafe(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND state = 'idle in transaction'`,
    [db],
  );
  return row.n;
}

/** Transactions the slot streamed while they ran (pg_stat_replication_slots). */
async function streamedTransactions(src: Sql): Promise<number> {
  const [row] = await src.unsafe(
    `SELECT coalesce(sum(stream_txns), 0)::int AS n FROM pg_stat_replication_slots`,
  );
  return row.n;
}

/** Spool files in `dir` and its kvsz-stream-* directories. */
async function spoolFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const d of Deno.readDir(dir)) {
    if (!d.isDirectory) continue;
    for await (const f of Deno.readDir(`${dir}/${d.name}`)) found.push(`${d.name}/${f.name}`);
  }
  return found;
}

const bigRows = (src: Sql) => tableRows(src, "big");

/**
 * Spool directories as kvsz processes leave them when killed: one of this
 * host's by a process that has exited (`stale`), one of a running process (this
 * test) and one of another host (`kept`, as `dir/file`).
 */
async function leftSpools(dir: string): Promise<{ stale: string; kept: string[] }> {
  const exited = new Deno.Command("true").spawn();
  await exited.status;
  const host = Deno.hostname();
  const make = async (name: string) => {
    await Deno.mkdir(`${dir}/${name}`);
    await Deno.writeFile(`${dir}/${name}/123.spool`, new Uint8Array(4096));
    return `${name}/123.spool`;
  };
  const stale = `kvsz-stream-${host}-${exited.pid}-abc`;
  await make(stale);
  const kept = [
    await make(`kvsz-stream-${host}-${Deno.pid}-def`),
    await make(`kvsz-stream-elsewhere.example-${exited.pid}-ghi`),
  ];
  return { stale, kept };
}

clusterSuite("kvsz run: transactions streamed while they run", {
  "a savepoint rolled back inside a large transaction: spooled instead, arrives whole at its commit; an aborted one never":
    async (c) => {
      const spoolDir = await makeTempDir("kvsz-spool-test-");
      const { src, dst, config } = await setup(c, spoolDir);
      const left = await leftSpools(spoolDir);
      await using kvsz = KvszProcess.start(["run", "--config", config]);
      await kvsz.waitForOutput(/streaming from/);
      // A spool left by a killed kvsz of this host goes; a running process's and another host's stay.
      await kvsz.waitForOutput(/removed 1 spool directory\(ies\) left by killed kvsz processes/);
      assert.match(kvsz.output, new RegExp(left.stale));
      assert.deepEqual((await spoolFiles(spoolDir)).sort(), left.kept.sort());
      for (const kept of left.kept) {
        await Deno.remove(`${spoolDir}/${kept.split("/")[0]}`, { recursive: true });
      }
      const before = await streamedTransactions(src);

      await src.begin(async (tx) => {
        await tx.unsafe(
          `INSERT INTO big SELECT i, repeat('v', 50) || i, 0 FROM generate_series(1, 20000) i`,
        );
        await tx.unsafe(`UPDATE big SET n = 1 WHERE id % 3 = 0`);
        await tx.unsafe(`DELETE FROM big WHERE id % 7 = 0`);
        // Rolled back: rows and an update that must not arrive.
        await tx.unsafe(`SAVEPOINT a`);
        await tx.unsafe(`INSERT INTO big SELECT i, 'gone', 0 FROM generate_series(20001, 23000) i`);
        await tx.unsafe(`SAVEPOINT b`);
        await tx.unsafe(`UPDATE big SET v = 'gone' WHERE id <= 2000`);
        await tx.unsafe(`ROLLBACK TO SAVEPOINT a`);
        // Released: rows that must arrive.
        await tx.unsafe(`SAVEPOINT c`);
        await tx.unsafe(`INSERT INTO big SELECT i, 'kept', 2 FROM generate_series(30001, 31000) i`);
        await tx.unsafe(`RELEASE SAVEPOINT c`);
        await tx.unsafe(`UPDATE big SET n = n + 10 WHERE id % 5 = 0`);

        // Meanwhile another transaction commits: it arrives first, alone.
        await src.unsafe(`INSERT INTO small VALUES (1, 'during')`);
        await waitFor(
          async () => (await dst.unsafe(`SELECT 1 FROM small WHERE id = 1`)).length > 0,
          {
            what: "the small transaction committed during the large one",
            context: () => kvsz.output.slice(-2000),
          },
        );
        await waitFor(async () => (await spoolFiles(spoolDir)).length > 0, {
          what: "a spool file of the open transaction",
        });
        const [early] = await dst.unsafe(`SELECT count(*)::int AS n FROM big`);
        assert.equal(early.n, 0, "nothing of an uncommitted transaction reaches the destination");
      });
      await waitForEqualRows(() => bigRows(src), () => bigRows(dst), { kvsz });
      assert.ok(
        (await streamedTransactions(src)) > before,
        "the server streamed the transaction while it ran",
      );
      assert.match(kvsz.output, /a savepoint of it was rolled back after its changes were written/);
      await waitFor(async () => (await spoolFiles(spoolDir)).length === 0, {
        what: "the spool deleted after the commit",
      });

      // Aborted after being streamed: its spool goes, nothing arrives.
      const streamed = await streamedTransactions(src);
      await src.begin(async (tx) => {
        await tx.unsafe(
          `INSERT INTO big SELECT i, 'aborted', 0 FROM generate_series(40001, 60000) i`,
        );
        await waitFor(async () => (await streamedTransactions(src)) > streamed, {
          what: "the doomed transaction streamed",
        });
        throw new Error("roll back");
      }).catch((e) => assert.equal(e.message, "roll back"));
      await src.unsafe(`INSERT INTO small VALUES (2, 'after')`);
      await waitForEqualRows(() => tableRows(src, "small"), () => tableRows(dst, "small"), {
        kvsz,
      });
      assert.deepEqual(await bigRows(dst), await bigRows(src));
      await waitFor(async () => (await spoolFiles(spoolDir)).length === 0, {
        what: "the aborted transaction's spool deleted",
      });
      assert.equal(await kvsz.stop(), 0);
    },

  "applied as it streams: a transaction committed meanwhile commits with it, nothing is visible before; killed meanwhile, nothing is lost":
    async (c) => {
      const spoolDir = await makeTempDir("kvsz-spool-test-");
      const { src, dst, dstDb, config } = await setup(c, spoolDir, { stream_wait_ms: 600_000 });
      const admin = c.sql();
      let kvsz = KvszProcess.start(["run", "--config", config]);
      try {
        await kvsz.waitForOutput(/streaming from/);
        const before = await streamedTransactions(src);
        await src.begin(async (tx) => {
          await tx.unsafe(
            `INSERT INTO big SELECT i, repeat('k', 50) || i, 0 FROM generate_series(1, 20000) i`,
          );
          await waitFor(async () => (await openDestinationTransactions(admin, dstDb)) > 0, {
            what: "kvsz writing the open transaction into a destination transaction",
            context: () => kvsz.output.slice(-2000),
          });
          await kvsz.stop("SIGKILL");
          kvsz = KvszProcess.start(["run", "--config", config]);
          await kvsz.waitForOutput(/streaming from/);
          await tx.unsafe(`UPDATE big SET n = 1 WHERE id % 2 = 0`);
          await tx.unsafe(`DELETE FROM big WHERE id % 9 = 0`);
          await src.unsafe(`INSERT INTO small VALUES (1, 'during')`);
          await waitFor(async () => (await openDestinationTransactions(admin, dstDb)) > 0, {
            what: "the open transaction written again after the restart",
          });
          await tx.unsafe(
            `INSERT INTO big SELECT i, 'late', 3 FROM generate_series(20001, 30000) i`,
          );
          await new Promise((r) => setTimeout(r, 1000));
          const [early] = await dst.unsafe(
            `SELECT (SELECT count(*) FROM big)::int AS big, (SELECT count(*) FROM small)::int AS small`,
          );
          assert.deepEqual(early, { big: 0, small: 0 }, "nothing visible before the commit");
        });
        await waitForEqualRows(() => bigRows(src), () => bigRows(dst), { kvsz });
        assert.deepEqual(await tableRows(dst, "small"), await tableRows(src, "small"));
        assert.ok((await streamedTransactions(src)) > before, "the server streamed it");
        assert.doesNotMatch(kvsz.output, /spooled|instead/, "applied as it streamed");
        assert.deepEqual(await spoolFiles(spoolDir), []);
        assert.equal(await kvsz.stop(), 0);
      } finally {
        await kvsz.stop("SIGKILL");
      }
    },

  "transactions committed meanwhile wait at most apply.stream_wait_ms": async (c) => {
    const spoolDir = await makeTempDir("kvsz-spool-test-");
    const { src, dst, config } = await setup(c, spoolDir, { stream_wait_ms: 300 });
    await using kvsz = KvszProcess.start(["run", "--config", config]);
    await kvsz.waitForOutput(/streaming from/);
    await src.begin(async (tx) => {
      await tx.unsafe(
        `INSERT INTO big SELECT i, repeat('w', 50) || i, 0 FROM generate_series(1, 20000) i`,
      );
      await src.unsafe(`INSERT INTO small VALUES (1, 'during')`);
      await waitForEqualRows(() => tableRows(src, "small"), () => tableRows(dst, "small"), {
        kvsz,
        what: "the small transaction while the large one is still open",
      });
      await tx.unsafe(`UPDATE big SET n = 5 WHERE id < 100`);
    });
    await waitForEqualRows(() => bigRows(src), () => bigRows(dst), { kvsz });
    assert.match(kvsz.output, /transactions committed meanwhile waited 300 ms for it/);
    assert.equal(await kvsz.stop(), 0);
  },

  "a table added to the config: a large transaction into it that streams before the stream passed its copy is spooled, not dropped":
    async (c) => {
      const spoolDir = await makeTempDir("kvsz-spool-test-");
      const { src, dst, configFor } = await setup(c, spoolDir);
      await using first = KvszProcess.start(["run", "--config", await configFor({ small: null })]);
      await first.waitForOutput(/streaming from/);
      assert.equal(await first.stop(), 0);
      await src.unsafe(`INSERT INTO big SELECT i, 'copied', 0 FROM generate_series(1, 1000) i`);

      // `big` is added: copied in a snapshot of its own, while the stream resumes before it.
      await using kvsz = KvszProcess.start([
        "run",
        "--config",
        await configFor({ big: null, small: null }),
      ]);
      await kvsz.waitForOutput(/copied big/);
      const before = await streamedTransactions(src);
      // It commits after the copy's snapshot, so it belongs to the stream; when its first
      // changes arrive the stream has seen no commit past the snapshot, so which side of it
      // the transaction commits on is not known yet.
      await src.begin(async (tx) => {
        await tx.unsafe(
          `INSERT INTO big SELECT i, repeat('a', 50) || i, 0 FROM generate_series(1001, 21000) i`,
        );
        await tx.unsafe(`UPDATE big SET n = 1 WHERE id % 3 = 0`);
        await tx.unsafe(`DELETE FROM big WHERE id % 7 = 0`);
      });
      await waitForEqualRows(() => bigRows(src), () => bigRows(dst), { kvsz });
      assert.ok((await streamedTransactions(src)) > before, "the server streamed it");
      assert.match(
        kvsz.output,
        /the stream has not passed the copy of public\.big yet; applying it at its commit/,
      );
      assert.doesNotMatch(kvsz.output, /anomaly/);
      assert.equal(await kvsz.stop(), 0);
    },

  "a large transaction applied as it streams that swaps a unique value: spooled, then applied one change at a time":
    async (c) => {
      const spoolDir = await makeTempDir("kvsz-spool-test-");
      const { src, dst, configFor } = await setup(c, spoolDir);
      for (const db of [src, dst]) {
        await db.unsafe(`CREATE TABLE uq (id int PRIMARY KEY, email text NOT NULL UNIQUE)`);
      }
      await src.unsafe(`INSERT INTO uq VALUES (1, 'a'), (2, 'b')`);
      await using kvsz = KvszProcess.start([
        "run",
        "--config",
        await configFor({ big: null, uq: null }),
      ]);
      await kvsz.waitForOutput(/streaming from/);
      const uqRows = (db: Sql) => tableRows(db, "uq");
      await waitForEqualRows(() => uqRows(src), () => uqRows(dst), { kvsz });
      const before = await streamedTransactions(src);
      await src.begin(async (tx) => {
        await tx.unsafe(
          `INSERT INTO big SELECT i, repeat('s', 50) || i, 0 FROM generate_series(1, 20000) i`,
        );
        // Folded per key, 1 ends 'b' and 2 ends 'a': one UPDATE cannot write that.
        await tx.unsafe(`UPDATE uq SET email = 'swap' WHERE id = 1`);
        await tx.unsafe(`UPDATE uq SET email = 'a' WHERE id = 2`);
        await tx.unsafe(`UPDATE uq SET email = 'b' WHERE id = 1`);
      });
      await waitForEqualRows(() => uqRows(src), () => uqRows(dst), { kvsz });
      await waitForEqualRows(() => bigRows(src), () => bigRows(dst), { kvsz });
      assert.ok((await streamedTransactions(src)) > before, "the server streamed it");
      // Once folded as it streamed, then at most once more after it was spooled.
      const fallbacks = kvsz.output.match(/one change at a time, in source order/g) ?? [];
      assert.ok(fallbacks.length >= 1 && fallbacks.length <= 2, kvsz.output.slice(-3000));
      assert.equal(await kvsz.stop(), 0);
    },

  "a large transaction into a history table is spooled and keeps every version": async (c) => {
    const spoolDir = await makeTempDir("kvsz-spool-test-");
    const { src, dst, config } = await setup(c, spoolDir);
    await using kvsz = KvszProcess.start(["run", "--config", config]);
    await kvsz.waitForOutput(/streaming from/);
    await src.begin(async (tx) => {
      await tx.unsafe(
        `INSERT INTO hist SELECT i, repeat('h', 50) || i FROM generate_series(1, 20000) i`,
      );
      await tx.unsafe(`UPDATE hist SET v = 'second' WHERE id <= 10`);
    });
    const current = (db: Sql) =>
      tableRows(
        db,
        "hist",
        "id, v",
        db === dst ? "kvsz_end = '9999-01-01' AND NOT kvsz_deleted" : "true",
      );
    await waitForEqualRows(() => current(src), () => current(dst), { kvsz });
    // The rows updated in the same transaction keep their first version too.
    const [{ n }] = await dst.unsafe(`SELECT count(*)::int AS n FROM hist`);
    assert.equal(n, 20010);
    assert.match(
      kvsz.output,
      /it changes public\.hist, a history table; applying it at its commit/,
    );
    assert.equal(await kvsz.stop(), 0);
  },
}, { minMajor: 14, settings: { logical_decoding_work_mem: "64kB" } });
