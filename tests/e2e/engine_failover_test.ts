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
}, { minMajor: 17 });
