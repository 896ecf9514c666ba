/**
 * A slot kvsz cannot trust is never streamed from: a slot dropped while kvsz
 * was stopped, or dropped and created again at a later LSN (its
 * confirmed_flush_lsn ahead of the progress stored in the destination), is
 * said in a log line naming the slot and both LSNs, and the source is copied
 * again from a new slot; other sources stream on. The copy never doubles and
 * never erases what the mode keeps: clone with `sid` replaces that sid's rows
 * (other sids stay), clone without `sid` that no other source writes becomes
 * the source's table exactly, append keeps rows the source no longer has,
 * history adds a version for changed rows and closes vanished ones. A second
 * kvsz on the same slot is refused with the pid of the first. WAL with
 * nothing for kvsz is confirmed only once recorded: a restart after it
 * streams on without copying anything again; a clean stop records and
 * confirms the last such position at once.
 */
import assert from "node:assert/strict";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import type { Sql } from "../../lib/pg/connect.ts";

const RECOPY = /copying every table again from a new slot/g;

function config(c: TestCluster, srcDb: string, dstDb: string, otherDb: string) {
  return {
    destination: { url: c.url(dstDb) },
    databases: [{
      database: srcDb,
      urls: [{ url: c.url(srcDb), sid: 1 }],
      tables: { c: null, n: null, a: { type: "append" }, h: { type: "history" } },
    }, {
      database: otherDb,
      urls: [{ url: c.url(otherDb), sid: 2 }],
      tables: { c: null },
    }],
    apply: { commit_interval_ms: 50 },
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
  };
}

/** The LSN kvsz stored for source `sid` in the destination. */
async function storedLsn(dst: Sql, sid: string): Promise<string> {
  const [r] = await dst.unsafe(`SELECT end_lsn::text AS lsn FROM kvsz.progress WHERE sid = $1`, [
    sid,
  ]);
  return r.lsn;
}

/**
 * Streams both sources, stops kvsz, then (`how`) drops source 1's slot or
 * drops and creates it again, changing every table of source 1 in between,
 * and checks what each mode holds after kvsz starts again.
 */
async function recopyScenario(c: TestCluster, how: "dropped" | "recreated"): Promise<void> {
  const srcDb = await c.createDatabase("src");
  const otherDb = await c.createDatabase("other");
  const dstDb = await c.createDatabase("dst");
  const src = c.sql(srcDb);
  const other = c.sql(otherDb);
  const dst = c.sql(dstDb);
  for (const t of ["c", "n", "a", "h"]) {
    await src.unsafe(`CREATE TABLE ${t} (id int PRIMARY KEY, v text)`);
    await src.unsafe(`INSERT INTO ${t} VALUES (1, 'one'), (2, 'two'), (3, 'three')`);
  }
  await other.unsafe(`CREATE TABLE c (id int PRIMARY KEY, v text)`);
  await other.unsafe(`INSERT INTO c VALUES (1, 'other one')`);
  await dst.unsafe(`CREATE TABLE c (sid text, id int, v text, PRIMARY KEY (sid, id))`);
  await dst.unsafe(`INSERT INTO c VALUES ('x', 1, 'not from any source')`);
  await dst.unsafe(`CREATE TABLE n (id int PRIMARY KEY, v text)`);
  await dst.unsafe(`CREATE TABLE a (id int PRIMARY KEY, v text)`);
  await dst.unsafe(
    `CREATE TABLE h (sid text, id int, v text, kvsz_start timestamptz, kvsz_end timestamptz, kvsz_deleted boolean)`,
  );
  const path = await writeConfig(config(c, srcDb, dstDb, otherDb));
  const sidRows = (sid: string) => () => tableRows(dst, "c", "id, v", `sid = '${sid}'`);
  {
    await using kvsz = KvszProcess.start(["run", "--config", path]);
    await waitForEqualRows(
      () => tableRows(src, "h", "id, v"),
      () => tableRows(dst, "h", "id, v"),
      { kvsz },
    );
    await waitForEqualRows(() => tableRows(other, "c", "id, v"), sidRows("2"), { kvsz });
    if (how === "dropped") {
      // A second kvsz on the same source waits for the first (its destination lock), naming it.
      await using second = KvszProcess.start(["run", "--config", path, "--skip-checks"]);
      await second.waitForOutput(new RegExp(`another kvsz process \\(\\S+ pid ${kvsz.pid}\\)`));
      await second.stop();
    }
    assert.equal(await kvsz.stop(), 0);
  }
  const slot = `kvsz_${srcDb}_1`.toLowerCase();
  const stored = await storedLsn(dst, "1");
  await src.unsafe(`SELECT pg_drop_replication_slot($1)`, [slot]);
  for (const t of ["c", "n", "a", "h"]) {
    await src.unsafe(`UPDATE ${t} SET v = 'TWO' WHERE id = 2`);
    await src.unsafe(`DELETE FROM ${t} WHERE id = 3`);
    await src.unsafe(`INSERT INTO ${t} VALUES (4, 'four')`);
  }
  let expected: RegExp;
  if (how === "recreated") {
    const [r] = await src.unsafe(
      `SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')`,
      [slot],
    );
    expected = new RegExp(
      `replication slot ${slot} has confirmed_flush_lsn ${r.lsn}, ahead of the progress stored ` +
        `in the destination \\(${stored}\\).*not streaming from it: copying every table again`,
    );
  } else {
    expected = new RegExp(
      `replication slot ${slot} does not exist, but the destination holds this source's progress ` +
        `up to ${stored}.*copying every table again`,
    );
  }
  await other.unsafe(`INSERT INTO c VALUES (2, 'other two')`);

  await using kvsz = KvszProcess.start(["run", "--config", path]);
  await kvsz.waitForOutput(expected);
  // Every table of source 1 is copied once it streams.
  await kvsz.waitForOutput(new RegExp(`streaming from [0-9A-F]+/[0-9A-F]+ [^\\n]*${srcDb}`));
  assert.deepEqual(
    await sidRows("1")(),
    await tableRows(src, "c", "id, v"),
    "clone: sid 1 replaced",
  );
  assert.deepEqual(await tableRows(dst, "c", "id, v", "sid = 'x'"), [
    '{"id":1,"v":"not from any source"}',
  ]);
  assert.deepEqual(await tableRows(dst, "n"), await tableRows(src, "n"), "clone without sid");
  assert.deepEqual(await tableRows(dst, "a", "id, v"), [
    '{"id":1,"v":"one"}',
    '{"id":2,"v":"TWO"}',
    '{"id":3,"v":"three"}',
    '{"id":4,"v":"four"}',
  ]);
  await waitFor(async () => {
    const rows = await tableRows(
      dst,
      "h",
      "id, v, kvsz_end = '9999-01-01' AS current, kvsz_deleted AS deleted",
    );
    return JSON.stringify(rows) === JSON.stringify([
      '{"id":1,"v":"one","current":true,"deleted":false}',
      '{"id":2,"v":"TWO","current":true,"deleted":false}',
      '{"id":2,"v":"two","current":false,"deleted":false}',
      '{"id":3,"v":"three","current":false,"deleted":true}',
      '{"id":4,"v":"four","current":true,"deleted":false}',
    ]);
  }, {
    what: "history merged",
    context: async () => JSON.stringify(await tableRows(dst, "h")) + kvsz.output,
  });
  // Both stream on: source 1 from its new slot, source 2 as before, never copied again.
  await src.unsafe(`INSERT INTO c VALUES (5, 'five')`);
  await other.unsafe(`INSERT INTO c VALUES (3, 'other three')`);
  await waitForEqualRows(() => tableRows(src, "c", "id, v"), sidRows("1"), { kvsz });
  await waitForEqualRows(() => tableRows(other, "c", "id, v"), sidRows("2"), { kvsz });
  assert.equal(kvsz.output.match(RECOPY)?.length, 1, kvsz.output);
  assert.equal(await kvsz.stop(), 0);
}

/**
 * A source with `t` (mapped, also at the destination) and `unmapped` (WAL
 * with nothing for kvsz), and its config (`extra` added to it).
 */
async function unmappedSetup(c: TestCluster, extra: Record<string, unknown> = {}) {
  const srcDb = await c.createDatabase("src");
  const dstDb = await c.createDatabase("dst");
  const src = c.sql(srcDb);
  const dst = c.sql(dstDb);
  await src.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
  await src.unsafe(`CREATE TABLE unmapped (id int, v text)`);
  await dst.unsafe(`CREATE TABLE t (id int PRIMARY KEY, v text)`);
  const path = await writeConfig({
    destination: { url: c.url(dstDb) },
    databases: [{ database: srcDb, urls: [{ url: c.url(srcDb), sid: 1 }], tables: { t: null } }],
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
    ...extra,
  });
  return { src, dst, path, slot: `kvsz_${srcDb}_1`.toLowerCase() };
}

clusterSuite("kvsz run: re-sync", {
  "slot dropped while stopped: said, each mode re-syncs without doubling or erasing": (c) =>
    recopyScenario(c, "dropped"),
  "slot recreated at a later LSN while stopped: refused, said, re-synced the same way": (c) =>
    recopyScenario(c, "recreated"),
  "WAL with nothing for kvsz, confirmed while idle: a restart streams on, nothing copied again":
    async (c) => {
      // Silence is answered with a keepalive after 2 s.
      const { src, dst, path, slot } = await unmappedSetup(c, {
        timeouts: { replication_receive_seconds: 4 },
      });
      await src.unsafe(`INSERT INTO t VALUES (1, 'one')`);
      {
        await using kvsz = KvszProcess.start(["run", "--config", path]);
        await kvsz.waitForOutput(/streaming from/); // the copy's progress is stored
        const applied = await storedLsn(dst, "1");
        // WAL of a table kvsz does not read: kvsz confirms it to the slot, past its last commit.
        await waitFor(async () => {
          await src.unsafe(`INSERT INTO unmapped VALUES (1, 'not mapped')`);
          const [r] = await src.unsafe(
            `SELECT confirmed_flush_lsn > $2::pg_lsn AS moved FROM pg_replication_slots
              WHERE slot_name = $1`,
            [slot, applied],
          );
          return r.moved;
        }, { what: "the slot confirmed beyond the last commit", timeoutMs: 60_000 });
        assert.equal(await kvsz.stop(), 0);
      }
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await kvsz.waitForOutput(/streaming from/);
      await src.unsafe(`INSERT INTO t VALUES (2, 'two')`);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
      assert.doesNotMatch(kvsz.output, RECOPY);
      assert.equal(await kvsz.stop(), 0);
    },

  "a clean stop records and confirms the last position it received: a restart decodes none of it again":
    async (c) => {
      const { src, dst, path, slot } = await unmappedSetup(c);
      await using kvsz = KvszProcess.start(["run", "--config", path]);
      await kvsz.waitForOutput(/streaming from/);
      // A commit of its own (its position written just now: the next idle one waits
      // up to 5 s), then WAL with nothing for kvsz, and a stop before those 5 s.
      await src.unsafe(`INSERT INTO t VALUES (1, 'one')`);
      await waitForEqualRows(() => tableRows(src, "t"), () => tableRows(dst, "t"), { kvsz });
      await src.unsafe(`INSERT INTO unmapped VALUES (1, 'not mapped')`);
      const [{ end }] = await src.unsafe(`SELECT pg_current_wal_insert_lsn()::text AS end`);
      await new Promise((r) => setTimeout(r, 1500)); // its keepalive reaches kvsz
      assert.equal(await kvsz.stop(), 0);
      const [r] = await src.unsafe(
        `SELECT confirmed_flush_lsn::text AS confirmed, confirmed_flush_lsn >= $2::pg_lsn AS past
           FROM pg_replication_slots WHERE slot_name = $1`,
        [slot, end],
      );
      assert.ok(r.past, `slot confirmed at ${r.confirmed}, before ${end}`);
      const [p] = await dst.unsafe(
        `SELECT end_lsn >= $1::pg_lsn AS past FROM kvsz.progress WHERE sid = '1'`,
        [end],
      );
      assert.ok(p.past, "the position is recorded before it is confirmed");
    },
});
