/**
 * Values of hundreds of MiB (PostgreSQL takes up to 1 GB): one of 300 MiB
 * and one of 520 MiB, longer than V8's longest string, arrive intact (md5
 * compared on both sides) through the initial copy, a transaction the server
 * streams while it runs (applied as it arrives, and spooled), and a normal
 * transaction (`stream_in_progress: false`), in clone and history tables,
 * while kvsz's peak memory (VmHWM) stays a small multiple of the largest
 * value. Measured on a 2-core shared box: about the largest value plus
 * 100–250 MiB; the bound asserted is 4 × 520 MiB + 300 MiB. A value the
 * destination cannot hold stops only its table, which the next start copies
 * again. The servers take most of the time (about 3 minutes under load).
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, waitFor, writeConfig } from "../support/kvsz.ts";
import type { Sql } from "../../lib/pg/connect.ts";

const MiB = 1 << 20;
/** V8's longest string, in characters (2^29 - 24). */
const V8_MAX_STRING = 2 ** 29 - 24;
/** 128 bytes, 127 characters: a quote, a backslash, a tab, a two-byte character, a newline. */
const PATTERN = `'a"b\\c' || chr(9) || 'é' || chr(10) || repeat('x', 119)`;
/** Sizes of the values, in MiB: 300, 520 (more characters than V8_MAX_STRING), 20 and 24 (over 16). */
const SIZES = [300, 520, 20, 24];
/** The peak memory allowed to kvsz, in MiB. */
const BOUND_MIB = 4 * 520 + 300;
/** Generous: the servers take a while to write, decode and read back hundreds of MiB. */
const ARRIVAL_MS = 240_000;

/**
 * Source and destination with `big` (clone) and `hist` (history) tables, the
 * values of `sizes` (MiB) made once at the source in `vals` (not published)
 * with their md5.
 */
async function setup(c: TestCluster, sizes: number[]) {
  const srcDb = await c.createDatabase("src");
  const dstDb = await c.createDatabase("dst");
  const src = c.sql(srcDb), dst = c.sql(dstDb);
  for (const db of [src, dst]) {
    await db.unsafe(`CREATE TABLE big (id int PRIMARY KEY, n int, v text)`);
  }
  await src.unsafe(`CREATE TABLE hist (id int PRIMARY KEY, n int, v text)`);
  await dst.unsafe(
    `CREATE TABLE hist (id int, n int, v text, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
  );
  await src.unsafe(`CREATE TABLE vals (n int PRIMARY KEY, v text)`);
  for (const n of sizes) {
    await src.unsafe(`INSERT INTO vals VALUES ($1, repeat(${PATTERN}, $1 * ${MiB / 128}))`, [n]);
  }
  const sums = new Map<number, string>();
  for (const r of await src.unsafe(`SELECT n, md5(v) AS md5, length(v)::int8 AS chars FROM vals`)) {
    sums.set(r.n, r.md5);
    if (r.n === 520) assert.ok(Number(r.chars) > V8_MAX_STRING, "longer than V8's longest string");
  }
  const config = (streamInProgress: boolean) =>
    writeConfig({
      destination: { url: c.url(dstDb) },
      databases: [{
        database: srcDb,
        urls: [{ url: c.url(srcDb), sid: 1 }],
        tables: { big: null, hist: { type: "history" } },
      }],
      apply: { commit_interval_ms: 50, stream_in_progress: streamInProgress },
      metrics: { listen: "" },
      log: { level: "info", format: "text" },
    });
  return { src, dst, sums, config };
}

/** `INSERT INTO table` of rows `[id, n]`, each taking value `n` of `vals`. */
function insertValues(table: string, rows: [number, number][]): string {
  const list = rows.map(([id, n]) => `(${id}, ${n})`).join(", ");
  return `INSERT INTO ${table} SELECT r.id, r.n, v.v FROM (VALUES ${list}) AS r(id, n) JOIN vals v USING (n)`;
}

/** Waits until `rows` (`[id, n]`) of `table` are in the destination, then checks each value's md5. */
async function arrived(
  dst: Sql,
  table: string,
  rows: [number, number][],
  opts: { sums: Map<number, string>; kvsz: KvszProcess; where?: string },
): Promise<void> {
  const ids = rows.map(([id]) => id);
  const where = `id = ANY($1::int[]) AND ${opts.where ?? "true"}`;
  await waitFor(async () => {
    const [r] = await dst.unsafe(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`, [
      `{${ids}}`,
    ]);
    return r.n === rows.length;
  }, {
    timeoutMs: ARRIVAL_MS,
    what: `rows ${ids} of ${table}`,
    context: () => opts.kvsz.output.slice(-2000),
  });
  const got = await dst.unsafe(
    `SELECT id, n, md5(v) AS md5 FROM ${table} WHERE ${where} ORDER BY id`,
    [`{${ids}}`],
  );
  assert.deepEqual(
    got.map((r) => [r.id, r.n, r.md5]),
    [...rows].sort((a, b) => a[0] - b[0]).map(([id, n]) => [id, n, opts.sums.get(n)]),
    `${table}: every value intact`,
  );
}

/** Peak resident memory of process `pid`, in MiB. */
function peakMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024;
}

/** Transactions the slot streamed while they ran (pg_stat_replication_slots). */
async function streamedTransactions(src: Sql): Promise<number> {
  const [row] = await src.unsafe(
    `SELECT coalesce(sum(stream_txns), 0)::int AS n FROM pg_stat_replication_slots`,
  );
  return row.n;
}

clusterSuite("kvsz run: values of hundreds of MiB", {
  "copied, streamed while their transaction runs and streamed whole: intact, memory bounded":
    async (c) => {
      const { src, dst, sums, config } = await setup(c, SIZES);
      await src.unsafe(insertValues("big", [[1, 300], [2, 520]]));

      const first = KvszProcess.start(["run", "--config", await config(true)]);
      try {
        // The initial copy.
        await arrived(dst, "big", [[1, 300], [2, 520]], { sums, kvsz: first });

        // Streamed while it runs (64 kB of decoding memory) and applied as it arrives.
        const streamed = await streamedTransactions(src);
        await src.unsafe(insertValues("big", [[3, 300], [4, 520]]));
        await arrived(dst, "big", [[3, 300], [4, 520]], { sums, kvsz: first });
        assert.ok((await streamedTransactions(src)) > streamed, "streamed while it ran");

        // Streamed while it runs but touching a history table: spooled, applied at its commit.
        await src.begin(async (tx) => {
          await tx.unsafe(insertValues("big", [[5, 20]]));
          await tx.unsafe(insertValues("hist", [[1, 20]]));
        });
        await arrived(dst, "big", [[5, 20]], { sums, kvsz: first });
        await arrived(dst, "hist", [[1, 20]], { sums, kvsz: first });
        assert.match(first.output, /streamed while it ran: \d+ message\(s\), [\d.]+ MB spooled/);

        const peak = peakMiB(first.pid);
        assert.ok(peak < BOUND_MIB, `kvsz peaked at ${peak.toFixed(0)} MiB (bound ${BOUND_MIB})`);
        assert.doesNotMatch(first.output, /ERR/);
        assert.equal(await first.stop(), 0);
      } finally {
        await first.stop("SIGKILL");
      }

      // Streamed whole at its commit: an update to the larger value, a history version.
      await using second = KvszProcess.start(["run", "--config", await config(false)]);
      await second.waitForOutput(/streaming from/);
      const streamed = await streamedTransactions(src);
      await src.begin(async (tx) => {
        await tx.unsafe(
          `UPDATE big SET (n, v) = (SELECT n, v FROM vals WHERE n = 520) WHERE id = 1`,
        );
        await tx.unsafe(
          `UPDATE hist SET (n, v) = (SELECT n, v FROM vals WHERE n = 24) WHERE id = 1`,
        );
      });
      await arrived(dst, "big", [[1, 520]], { sums, kvsz: second, where: "n = 520" });
      await arrived(dst, "hist", [[1, 24]], { sums, kvsz: second, where: "n = 24" });
      assert.equal(await streamedTransactions(src), streamed, "not streamed while it ran");
      const peak = peakMiB(second.pid);
      assert.ok(peak < BOUND_MIB, `kvsz peaked at ${peak.toFixed(0)} MiB (bound ${BOUND_MIB})`);
      assert.doesNotMatch(second.output, /ERR/);
      assert.equal(await second.stop(), 0);
    },

  "a value the destination cannot hold stops only its table, named with its key and size; copied again at the next start":
    async (c) => {
      const { src, dst, sums, config } = await setup(c, [20]);
      // An index entry holds at most 8 kB: a 20 MiB value (compressed: about 350 kB) cannot be indexed.
      await dst.unsafe(`CREATE INDEX big_v ON big (v)`);
      const configFile = await config(true);
      let kvsz = KvszProcess.start(["run", "--config", configFile]);
      try {
        await kvsz.waitForOutput(/streaming from/);
        await src.unsafe(insertValues("big", [[1, 20]]));
        await src.unsafe(`INSERT INTO big VALUES (2, 2, 'after the stop')`);
        await src.unsafe(`INSERT INTO hist VALUES (1, 1, 'streams on')`);
        await waitFor(
          async () => (await dst.unsafe(`SELECT 1 FROM hist WHERE id = 1`)).length > 0,
          {
            what: "the other table streaming on",
            context: () => kvsz.output.slice(-2000),
          },
        );
        assert.match(
          kvsz.output,
          /stopped streaming public\.big into public\.big: index row requires \d+ bytes, maximum size is 8191; key \(id\)=\(1\), source transaction still running, 20\.0 MiB in column v\. Its changes are no longer applied/,
        );
        const [stopped] = await dst.unsafe(`SELECT count(*)::int AS n FROM big`);
        assert.equal(stopped.n, 0, "nothing of the stopped table");
        const [synced] = await dst.unsafe(
          `SELECT synced_lsn::text AS lsn FROM kvsz.synced_tables WHERE source_table = 'big'`,
        );
        assert.equal(synced.lsn, "0/0", "to be copied again at the next start");
        assert.equal(await kvsz.stop(), 0);

        // Fixed, and started again: the table is copied again.
        await dst.unsafe(`DROP INDEX big_v`);
        kvsz = KvszProcess.start(["run", "--config", configFile]);
        await arrived(dst, "big", [[1, 20]], { sums, kvsz });
        await waitFor(async () => (await dst.unsafe(`SELECT 1 FROM big WHERE id = 2`)).length > 0, {
          what: "the row written after the stop",
        });
        assert.equal(await kvsz.stop(), 0);
      } finally {
        await kvsz.stop("SIGKILL");
      }
    },
}, { settings: { logical_decoding_work_mem: "64kB", max_wal_size: "4GB" } });
