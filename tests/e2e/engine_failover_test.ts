/**
 * Source failover (PostgreSQL 17+), on a real physical standby. With
 * `failover: true` the slot is synchronized to the standby; when the primary
 * dies and the standby is promoted, kvsz follows the URL's read-write host to
 * it and resumes from its copy of the slot, exactly once. A promoted standby
 * without kvsz's slot, or one that lacks transactions kvsz already applied
 * (not listed in synchronized_standby_slots), is never streamed from
 * silently: kvsz says why and copies the source again. Keyless tables show
 * any change applied twice or lost.
 */
import assert from "node:assert/strict";
import { clusterSuite, startCluster, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { startStandby, waitForSyncedSlot } from "../support/standby.ts";
import { runCli } from "../support/run_cli.ts";
import type { Sql } from "../../lib/pg/connect.ts";

/** A URL listing both servers, primary first, that connects only to the read-write one. */
function failoverUrl(primary: TestCluster, standby: TestCluster, database: string): string {
  const hosts = `127.0.0.1:${primary.server.port},127.0.0.1:${standby.server.port}`;
  return `${
    primary.url(database).replace(`127.0.0.1:${primary.server.port}`, hosts)
  }?target_session_attrs=read-write`;
}

/** Inserts rows `from`… `from + count - 1` into `t`, ten per transaction. */
async function insert(sql: Sql, from: number, what: string, count = 50): Promise<void> {
  for (let i = from; i < from + count; i += 10) {
    await sql.unsafe(`INSERT INTO t SELECT g, $1 FROM generate_series($2::int, $3::int) g`, [
      what,
      i,
      Math.min(i + 9, from + count - 1),
    ]);
  }
}

/** A source database on `primary` with keyless table `t`, its target on `dest`, and a kvsz config. */
async function setup(
  dest: TestCluster,
  primary: TestCluster,
  standby: TestCluster,
  failover: boolean,
) {
  const srcDb = await primary.createDatabase("src");
  const dstDb = await dest.createDatabase("dst");
  const src = primary.sql(srcDb);
  const dst = dest.sql(dstDb);
  await src.unsafe(`CREATE TABLE t (n int, v text)`);
  await insert(src, 1, "copied", 100);
  await dst.unsafe(`CREATE TABLE t (n int, v text)`);
  const path = await writeConfig({
    destination: { url: dest.url(dstDb) },
    databases: [{
      database: srcDb,
      urls: [{ url: failoverUrl(primary, standby, srcDb), sid: 1, failover }],
      tables: { t: null },
    }],
    apply: { commit_interval_ms: 50 },
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
  });
  const slot = `kvsz_${srcDb}_1`.toLowerCase();
  /** The primary's slot's confirmed_flush_lsn. */
  const slotLsn = async () =>
    (await src.unsafe(
      `SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`,
      [slot],
    ))[0].lsn as string;
  return { srcDb, src, dst, path, slot, slotLsn, onStandby: standby.sql(srcDb) };
}

/** Waits until the destination equals the (promoted) standby's table. */
function waitForEqual(onStandby: Sql, dst: Sql, kvsz: KvszProcess): Promise<void> {
  return waitForEqualRows(() => tableRows(onStandby, "t"), () => tableRows(dst, "t"), {
    kvsz,
    what: "destination equal to the promoted standby",
    timeoutMs: 120_000,
  });
}

/**
 * Kills the primary and waits until kvsz has given up its connections (no
 * more progress is written); returns the progress kvsz stored.
 */
async function killPrimary(primary: TestCluster, kvsz: KvszProcess, dst: Sql): Promise<string> {
  const since = kvsz.output.length;
  await primary.server.stop("immediate");
  await kvsz.waitForOutput(/retrying in/, 60_000, since);
  const [r] = await dst.unsafe(`SELECT end_lsn::text AS lsn FROM kvsz.progress`);
  return r.lsn;
}

clusterSuite("kvsz run: source failover", {
  "primary dies, standby promoted: kvsz follows it and resumes from the synced slot exactly once":
    async (dest) => {
      await using primary = await startCluster({ major: dest.major });
      await using standby = await startStandby(primary);
      const { src, dst, path, slot, slotLsn, onStandby } = await setup(
        dest,
        primary,
        standby,
        true,
      );
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await kvsz.waitForOutput(/streaming from/);
      await insert(src, 101, "streamed");
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
      // The standby's copy of the slot catches up with what kvsz confirmed ...
      await waitForSyncedSlot(onStandby, slot, await slotLsn(), src);
      // ... then stops following it (its sync worker off), so that after the
      // promotion it is behind what kvsz applied.
      await onStandby.unsafe(`ALTER SYSTEM SET sync_replication_slots = off`);
      await onStandby.unsafe(`SELECT pg_reload_conf()`);
      await waitFor(async () =>
        (await onStandby.unsafe(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'slotsync worker'`,
        ))[0].n === 0, { what: "the standby's slot sync worker to stop" });
      await insert(src, 151, "applied before the promotion");
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
      const [r] = await onStandby.unsafe(
        `SELECT confirmed_flush_lsn < $2::pg_lsn AS behind FROM pg_replication_slots
          WHERE slot_name = $1`,
        [slot, await slotLsn()],
      );
      assert.equal(r.behind, true, "the standby's copy of the slot lags behind kvsz");

      const since = kvsz.output.length;
      await killPrimary(primary, kvsz, dst);
      await standby.server.promote();
      await insert(onStandby, 201, "written on the new primary");
      await waitForEqual(onStandby, dst, kvsz);
      assert.equal((await tableRows(dst, "t")).length, 250);
      const after = kvsz.output.slice(since);
      assert.match(after, /streaming from/);
      assert.doesNotMatch(after, /created slot|copying every table again/, after);
      assert.equal(await kvsz.stop(), 0);
    },

  "standby promoted without kvsz's slot (failover off): said, the source copied again": async (
    dest,
  ) => {
    await using primary = await startCluster({ major: dest.major });
    await using standby = await startStandby(primary);
    const { src, dst, path, slot, onStandby } = await setup(dest, primary, standby, false);
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await kvsz.waitForOutput(/streaming from/);
    await insert(src, 101, "streamed");
    await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
    const [{ lsn }] = await src.unsafe(`SELECT pg_current_wal_lsn()::text AS lsn`);
    // Everything kvsz applied has reached the standby.
    await waitFor(async () =>
      (await onStandby.unsafe(
        `SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS replayed`,
        [lsn],
      ))[0].replayed, { what: "the standby to replay what kvsz applied" });

    const stored = await killPrimary(primary, kvsz, dst);
    await standby.server.promote();
    await kvsz.waitForOutput(
      new RegExp(
        `replication slot ${slot} does not exist, but the destination holds this source's ` +
          `progress up to ${stored}: .*a standby promoted without a synchronized slot.*` +
          `copying every table again`,
      ),
      120_000,
    );
    await insert(onStandby, 151, "written on the new primary");
    await waitForEqual(onStandby, dst, kvsz);
    assert.equal((await tableRows(dst, "t")).length, 200);
    assert.equal(await kvsz.stop(), 0);
  },

  "standby promoted lacking what kvsz applied (synchronized_standby_slots unset): said, copied again":
    async (dest) => {
      await using primary = await startCluster({ major: dest.major });
      await using standby = await startStandby(primary, { synchronized: false });
      const { src, dst, path, slot, slotLsn, onStandby } = await setup(
        dest,
        primary,
        standby,
        true,
      );
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await kvsz.waitForOutput(/streaming from/);
      await waitForSyncedSlot(onStandby, slot, await slotLsn(), src);
      // The standby stops; kvsz applies transactions it never receives.
      await standby.server.stop("fast");
      await insert(src, 101, "applied, lost with the old primary", 2000);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });

      const stored = await killPrimary(primary, kvsz, dst);
      await standby.server.start();
      await standby.server.promote();
      await kvsz.waitForOutput(
        new RegExp(
          `the source's WAL ends at [0-9A-F]+/[0-9A-F]+, before the progress stored in the ` +
            `destination \\(${stored}\\) for replication slot ${slot}: this server lacks ` +
            `transactions kvsz already applied.*copying every table again`,
        ),
        120_000,
      );
      // Written on the new primary at LSNs kvsz had stored for the lost ones: not skipped.
      await insert(onStandby, 101, "written on the new primary");
      await waitForEqual(onStandby, dst, kvsz);
      assert.equal((await tableRows(dst, "t")).length, 150);
      assert.equal(await kvsz.stop(), 0);
    },

  "failover turned on and off for an existing slot": async (c) => {
    const srcDb = await c.createDatabase("src");
    const dstDb = await c.createDatabase("dst");
    const src = c.sql(srcDb);
    await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY)`);
    await c.sql(dstDb).unsafe(`CREATE TABLE t (id int PRIMARY KEY)`);
    const slot = `kvsz_${srcDb}_1`.toLowerCase();
    const failoverOf = async () =>
      (await src.unsafe(`SELECT failover FROM pg_replication_slots WHERE slot_name = $1`, [
        slot,
      ]))[0]?.failover;
    for (const failover of [false, true, false]) {
      const path = await writeConfig({
        destination: { url: c.url(dstDb) },
        databases: [{
          database: srcDb,
          urls: [{ url: c.url(srcDb), sid: 1, failover }],
          tables: { t: null },
        }],
        metrics: { listen: "" },
        log: { level: "info", format: "text" },
      });
      await using kvsz = KvszProcess.start(["run", "--config", path, "--skip-checks"]);
      await kvsz.waitForOutput(/streaming from/);
      assert.equal(await failoverOf(), failover, kvsz.output);
      if (failover) {
        assert.match(kvsz.output, new RegExp(`${slot} is now synchronized to standbys`));
      }
      assert.equal(await kvsz.stop(), 0);
    }
  },

  "kvsz validate: failover needs the standby's slot in synchronized_standby_slots": async (
    dest,
  ) => {
    await using primary = await startCluster({ major: dest.major });
    await using standby = await startStandby(primary, { synchronized: false });
    const { src, path } = await setup(dest, primary, standby, true);
    const validate = () => runCli(["validate", "--config", path]);
    const failover = (out: string) => out.split("\n").filter((l) => / failover/.test(l)).join("\n");

    let r = await validate();
    assert.equal(r.code, 0, r.output);
    assert.match(
      failover(r.output),
      /^WARN .* failover: standby slot kvsz_standby: physical slot kvsz_standby is not listed in synchronized_standby_slots: kvsz may receive and apply changes that standby has not received yet, so its copy of kvsz's slot can lag behind what kvsz confirmed; promoted, it lacks those changes — fix: ALTER SYSTEM SET synchronized_standby_slots = 'kvsz_standby'; SELECT pg_reload_conf\(\);$/,
    );

    await src.unsafe(`ALTER SYSTEM SET synchronized_standby_slots = 'kvsz_standby'`);
    await src.unsafe(`SELECT pg_reload_conf()`);
    r = await validate();
    assert.equal(r.code, 0, r.output);
    assert.match(failover(r.output), /^ok +source \S+ sid 1 \(.*\) failover$/);

    // The standby's slot is gone while still listed: the primary would send kvsz nothing.
    await standby.server.stop("fast");
    await src.unsafe(`SELECT pg_drop_replication_slot('kvsz_standby')`);
    r = await validate();
    assert.equal(r.code, 1, r.output);
    assert.match(
      failover(r.output),
      /FAIL .* failover: synchronized_standby_slots: it names kvsz_standby, which is not a physical replication slot of the source: the source sends kvsz nothing while it waits for that slot — fix: create the standby's slot/,
    );
    assert.match(
      failover(r.output),
      /WARN .* failover: no physical replication slot on the source/,
    );
  },
}, { minMajor: 17 });

// failover: true on an older source is refused by validate (runs with KVSZ_TEST_PG_VERSIONS < 17).
clusterSuite("kvsz validate: failover on a source before PostgreSQL 17", {
  "FAIL naming the version and the fix": async (c) => {
    const srcDb = await c.createDatabase("src");
    await c.sql(srcDb).unsafe(`CREATE TABLE t (id int PRIMARY KEY)`);
    const path = await writeConfig({
      destination: { url: c.url(srcDb) },
      databases: [{
        database: srcDb,
        urls: [{ url: c.url(srcDb), sid: 1, failover: true }],
        tables: { t: null },
      }],
    });
    const r = await runCli(["validate", "--config", path]);
    assert.equal(r.code, 1, r.output);
    assert.match(
      r.output,
      new RegExp(
        `FAIL .* failover: failover: true needs PostgreSQL 17 or later; the source is ${c.major} ` +
          `— fix: remove failover from the source's entry, or upgrade the source`,
      ),
    );
  },
}, { maxMajor: 16 });
