/**
 * Many sources, one destination, a bounded set of destination connections:
 * twelve source databases stream into shared target tables (with `sid`)
 * through two shared writers and two copy turns, against a destination whose
 * `max_connections` (20) one connection set per source would exhaust. Every
 * copy finishes, every source's changes arrive in order, kvsz's connections
 * on the destination stay within `apply.workers + sync.parallelism + 2`, and
 * a `kill -9` while all sources write loses and doubles nothing. Quiet
 * sources record their positions together.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { startCluster, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { tempDirScope } from "../support/temp_dirs.ts";

const SOURCES = 12;
const WORKERS = 2;
const PARALLELISM = 2;
const BUDGET = WORKERS + PARALLELISM + 2;
const ACCOUNTS = 3000;

interface Source {
  sid: string;
  db: string;
  sql: postgres.Sql;
}

function config(source: TestCluster, dest: TestCluster, dstDb: string, sources: Source[]) {
  return {
    destination: { url: dest.url(dstDb) },
    databases: sources.map((s) => ({
      database: s.db,
      urls: [{ url: source.url(s.db), sid: s.sid }],
      tables: { accounts: null, h: { type: "history" }, ev: { type: "append" } },
    })),
    apply: { commit_interval_ms: 20, workers: WORKERS },
    sync: { parallelism: PARALLELISM },
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
  };
}

/** Samples kvsz's connections to the destination database until stopped; keeps the peak. */
function sampleConnections(dst: postgres.Sql, dstDb: string) {
  let peak = 0;
  let samples = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      const [row] = await dst.unsafe(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = $1 AND application_name = 'kvsz'`,
        [dstDb],
      );
      peak = Math.max(peak, row.n);
      samples++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  return {
    async stop(): Promise<{ peak: number; samples: number }> {
      running = false;
      await done;
      return { peak, samples };
    },
  };
}

/**
 * Locks `accounts` in the destination until kvsz has `waiters` sessions
 * waiting for the lock, and a second longer: sessions beyond the bound would
 * show by then.
 */
async function whileLocked(
  dst: postgres.Sql,
  dstDb: string,
  { waiters, meanwhile }: { waiters: number; meanwhile: () => Promise<unknown> },
): Promise<void> {
  const locker = await dst.reserve();
  try {
    await locker.unsafe(`BEGIN`);
    await locker.unsafe(`LOCK TABLE accounts IN EXCLUSIVE MODE`);
    await meanwhile();
    await waitFor(async () => {
      const [r] = await dst.unsafe(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = $1 AND application_name = 'kvsz' AND wait_event_type = 'Lock'`,
        [dstDb],
      );
      return r.n >= waiters;
    }, { what: `${waiters} kvsz sessions waiting for the lock` });
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    await locker.unsafe(`COMMIT`);
    locker.release();
  }
}

/** Per source: `updates` updates of h (one row) and inserts into ev, one transaction each. */
async function write(sources: Source[], from: number, to: number): Promise<void> {
  await Promise.all(sources.map(async (s) => {
    for (let n = from; n <= to; n++) {
      await s.sql.begin(async (tx) => {
        await tx.unsafe(`UPDATE h SET n = $1 WHERE id = 1`, [n]);
        await tx.unsafe(`INSERT INTO ev VALUES ($1, $1)`, [n]);
      });
    }
  }));
}

/** Every source's rows of `table` as the destination should hold them (sid first). */
async function sourceRows(sources: Source[], table: string): Promise<string[]> {
  const all = await Promise.all(
    sources.map(async (s) =>
      (await s.sql.unsafe(
        `SELECT row_to_json(x)::text AS j FROM (SELECT $1::text AS sid, * FROM ${table}) x`,
        [s.sid],
      )).map((r) => r.j as string)
    ),
  );
  return all.flat().sort();
}

/**
 * Checks that the destination holds, per source, ev rows 1..last exactly once
 * and the history of h as versions 0..last in commit order, chained, one current.
 */
async function assertStreamed(dst: postgres.Sql, sources: Source[], last: number): Promise<void> {
  const ev = await dst.unsafe(
    `SELECT sid, count(*)::int AS n, count(DISTINCT id)::int AS ids, min(id) AS lo, max(id) AS hi
       FROM ev GROUP BY sid ORDER BY sid`,
  );
  assert.deepEqual(
    ev.map((r) => [r.sid, r.n, r.ids, r.lo, r.hi]),
    sources.map((s) => [s.sid, last, last, 1, last]).sort(),
    "append target: every insert once",
  );
  const history = await dst.unsafe(
    `SELECT sid, array_agg(n ORDER BY kvsz_start) AS versions,
            count(*) FILTER (WHERE kvsz_end = '9999-01-01')::int AS current,
            bool_and(kvsz_end = next_start OR next_start IS NULL) AS chained
       FROM (SELECT *, lead(kvsz_start) OVER (PARTITION BY sid ORDER BY kvsz_start) AS next_start
               FROM h) v
      GROUP BY sid ORDER BY sid`,
  );
  const expected = Array.from({ length: last + 1 }, (_, i) => i);
  for (const r of history) {
    assert.deepEqual(r.versions, expected, `history of sid ${r.sid}: versions in commit order`);
    assert.equal(r.current, 1, `history of sid ${r.sid}: one current version`);
    assert.equal(
      r.chained,
      true,
      `history of sid ${r.sid}: each version ends when the next starts`,
    );
  }
  assert.equal(history.length, sources.length);
}

Deno.test({
  name: "kvsz run: many sources through shared writers",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await using _dirs = tempDirScope();
    await using source = await startCluster({
      settings: { max_wal_senders: 40, max_replication_slots: 40 },
    });
    // One set of connections per source (4 each before) would need far more than this.
    await using dest = await startCluster({ settings: { max_connections: 20 } });
    const dstDb = await dest.createDatabase("many");
    const dst = dest.sql(dstDb);
    await dst.unsafe(`CREATE TABLE accounts (sid text, id int, v int, PRIMARY KEY (sid, id))`);
    await dst.unsafe(
      `CREATE TABLE h (sid text, id int, n int,
                       kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
    );
    await dst.unsafe(`CREATE TABLE ev (sid text, id int, n int)`); // no key: a duplicate shows
    const sources: Source[] = [];
    for (let i = 1; i <= SOURCES; i++) {
      const db = await source.createDatabase("tenant");
      const sql = source.sql(db);
      await sql.unsafe(`CREATE TABLE accounts (id int PRIMARY KEY, v int)`);
      await sql.unsafe(
        `INSERT INTO accounts SELECT g, g * $1 FROM generate_series(1, ${ACCOUNTS}) g`,
        [i],
      );
      await sql.unsafe(`CREATE TABLE h (id int PRIMARY KEY, n int)`);
      await sql.unsafe(`INSERT INTO h VALUES (1, 0)`);
      await sql.unsafe(`CREATE TABLE ev (id int PRIMARY KEY, n int)`);
      sources.push({ sid: String(i), db, sql });
    }
    const cfg = await writeConfig(config(source, dest, dstDb, sources));
    const accountsEqual = () =>
      waitForEqualRows(() => sourceRows(sources, "accounts"), () => tableRows(dst, "accounts"), {
        what: "accounts of every source",
      });
    const rounds = 25;

    await t.step("every source is copied and streams, within the connection budget", async () => {
      const sampler = sampleConnections(dst, dstDb);
      await using kvsz = KvszProcess.start(["run", "--config", cfg]);
      try {
        // Every copy of accounts waits for the lock holding its copy turn; the others wait
        // for a turn.
        await whileLocked(dst, dstDb, {
          waiters: PARALLELISM,
          meanwhile: () => Promise.resolve(kvsz.waitForOutput(/created slot/)),
        });
        await accountsEqual();
        await write(sources, 1, rounds);
        await sources[0].sql.unsafe(`UPDATE accounts SET v = -v WHERE id <= 10`);
        // Every source writes while the destination table is locked: each destination
        // transaction holds its writer while it waits, and the others wait for a writer.
        await whileLocked(dst, dstDb, {
          waiters: WORKERS,
          meanwhile: () =>
            Promise.all(sources.map((s) => s.sql.unsafe(`UPDATE accounts SET v = v + 1`))),
        });
        await accountsEqual();
        await waitFor(async () => {
          const [r] = await dst.unsafe(`SELECT count(*)::int AS n FROM ev`);
          return r.n >= SOURCES * rounds;
        }, { what: "every source's inserts", context: () => kvsz.output.slice(-3000) });
        await waitFor(async () => {
          const [r] = await dst.unsafe(
            `SELECT count(*)::int AS n FROM h WHERE kvsz_end = '9999-01-01' AND n = $1`,
            [rounds],
          );
          return r.n === SOURCES;
        }, { what: "every source's last update", context: () => kvsz.output.slice(-3000) });
      } finally {
        const { peak, samples } = await sampler.stop();
        console.log(`destination connections of kvsz: peak ${peak} in ${samples} samples`);
        assert.ok(peak >= 1, "the sampler saw kvsz's connections");
        assert.ok(peak <= BUDGET, `kvsz held ${peak} destination connections, budget ${BUDGET}`);
      }
      await assertStreamed(dst, sources, rounds);
      // Streaming, a source holds its replication connection and nothing else at the source;
      // the slot poller holds one connection for the whole server.
      const admin = source.sql("postgres");
      let seen = "";
      await waitFor(async () => {
        seen = JSON.stringify(
          await admin.unsafe(
            `SELECT backend_type, state, left(query, 60) AS q, count(*)::int AS n
               FROM pg_stat_activity WHERE application_name = 'kvsz' GROUP BY 1, 2, 3`,
          ),
        );
        const [r] = await admin.unsafe(
          `SELECT count(*) FILTER (WHERE backend_type = 'walsender')::int AS walsenders,
                  count(*) FILTER (WHERE backend_type = 'client backend')::int AS clients
             FROM pg_stat_activity WHERE application_name = 'kvsz'`,
        );
        return r.walsenders === SOURCES && r.clients <= 1;
      }, {
        what: "only walsenders of kvsz at the source, and the slot poller's connection",
        timeoutMs: 60_000,
        context: () => seen,
      });
      // Quiet sources see WAL that is not theirs (here another database's): each records
      // its position over it, all of them together in one destination transaction or few.
      await admin.unsafe(`CREATE TABLE IF NOT EXISTS noise (n int)`);
      await admin.unsafe(`INSERT INTO noise SELECT generate_series(1, 100)`);
      const [{ lsn }] = await admin.unsafe(`SELECT pg_current_wal_lsn()::text AS lsn`);
      let xmins = 0;
      await waitFor(async () => {
        const [r] = await dst.unsafe(
          `SELECT count(*)::int AS n, count(DISTINCT xmin::text)::int AS xmins
             FROM kvsz.progress WHERE end_lsn >= $1::pg_lsn`,
          [lsn],
        );
        xmins = r.xmins;
        return r.n === SOURCES;
      }, { what: "every quiet source's position past the other database's WAL" });
      assert.ok(
        xmins <= SOURCES / 2,
        `${SOURCES} quiet sources recorded their positions in ${xmins} transactions`,
      );
      assert.equal(await kvsz.stop(), 0, kvsz.output.slice(-3000));
      assert.doesNotMatch(kvsz.output, /too many clients/);
    });

    await t.step("kill -9 while every source writes: nothing lost, nothing doubled", async () => {
      let kvsz = KvszProcess.start(["run", "--config", cfg]);
      try {
        const last = rounds * 3;
        const writing = write(sources, rounds + 1, last);
        for (let i = 0; i < 2; i++) {
          await kvsz.waitForOutput(/streaming from/);
          await new Promise((r) => setTimeout(r, 400));
          await kvsz.stop("SIGKILL");
          kvsz = KvszProcess.start(["run", "--config", cfg]);
        }
        await writing;
        // Every source of the last process resumed (what it applies again would show below).
        await waitFor(() => (kvsz.output.match(/streaming from/g) ?? []).length === SOURCES, {
          what: "every source streaming",
          context: () => kvsz.output.slice(-3000),
        });
        await waitFor(async () => {
          const [r] = await dst.unsafe(
            `SELECT count(*)::int AS n FROM h WHERE kvsz_end = '9999-01-01' AND n = $1`,
            [last],
          );
          return r.n === SOURCES;
        }, {
          timeoutMs: 90_000,
          what: "every source's last update",
          context: () => kvsz.output.slice(-3000),
        });
        // A commit job in flight at the kill is the only place a doubled change could come from.
        await new Promise((r) => setTimeout(r, 500));
        await assertStreamed(dst, sources, last);
        await accountsEqual();
        assert.equal(await kvsz.stop(), 0, kvsz.output.slice(-3000));
      } finally {
        await kvsz.stop("SIGKILL");
      }
    });
  },
});
