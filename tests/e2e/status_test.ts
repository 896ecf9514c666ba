/**
 * `kvsz status` against a real server: a kvsz slot and publication made by
 * hand (as `kvsz run` would leave them), the progress row in the destination,
 * an active walsender, a retained-WAL warning and an unreachable source.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { type CliResult, runCli, tempConfig } from "../support/run_cli.ts";
import { connect } from "../../lib/pg/connect.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";
import { kvszObjectName } from "../../lib/pg/identifiers.ts";
import type { StatusReport } from "../../lib/observe/status_report.ts";

interface Setup {
  srcDb: string;
  /** Name of the slot and publication (slots are per cluster: one per setup). */
  slot: string;
  dstDb: string;
  status(
    args?: string[],
    extra?: { urls?: { url: string; sid: string }[]; warnMb?: number },
  ): Promise<CliResult>;
  json(extra?: { urls?: { url: string; sid: string }[]; warnMb?: number }): Promise<StatusReport>;
}

/**
 * A source database with t1, the kvsz slot and publication of its sid 1 (the
 * config names the database after it), and an empty destination.
 */
async function setup(c: TestCluster): Promise<Setup> {
  const srcDb = await c.createDatabase("src");
  const dstDb = await c.createDatabase("dst");
  const slot = kvszObjectName(srcDb, "1");
  const src = c.sql(srcDb);
  await src.unsafe(`CREATE TABLE t1 (id int PRIMARY KEY, v text)`);
  await src.unsafe(`CREATE PUBLICATION ${slot} FOR TABLE t1`);
  await src.unsafe(`SELECT pg_create_logical_replication_slot('${slot}', 'pgoutput')`);
  const status = async (
    args: string[] = [],
    extra: { urls?: { url: string; sid: string }[]; warnMb?: number } = {},
  ) => {
    const config = {
      destination: { url: c.url(dstDb) },
      databases: [{
        database: srcDb,
        urls: extra.urls ?? [{ url: c.url(srcDb), sid: "1" }],
        tables: { t1: null },
      }],
      ...(extra.warnMb !== undefined ? { status: { retained_wal_warn_mb: extra.warnMb } } : {}),
    };
    await using file = await tempConfig(stringify(config));
    const r = await runCli(["status", "--config", file.path, ...args]);
    assert.ok(!r.output.includes(c.server.password), `password printed:\n${r.output}`);
    assert.equal(r.code, 0, r.output);
    return r;
  };
  return {
    srcDb,
    slot,
    dstDb,
    status,
    async json(extra) {
      const r = await status(["--json"], extra);
      return JSON.parse(r.stdout) as StatusReport;
    },
  };
}

/** The per-source table of the text output: its header line, then one line per source. */
function table(stdout: string): string[] {
  const lines = stdout.split("\n");
  const start = lines.findIndex((l) => l.startsWith("SOURCE "));
  assert.ok(start >= 0, `no per-source table:\n${stdout}`);
  const end = lines.indexOf("", start);
  return lines.slice(start, end < 0 ? undefined : end);
}

/** Writes `n` rows to t1 in committed, flushed transactions. */
async function write(c: TestCluster, db: string, from: number, n: number): Promise<void> {
  await c.sql(db).begin(async (tx) => {
    await tx.unsafe(`SET LOCAL synchronous_commit = on`);
    await tx.unsafe(
      `INSERT INTO t1 SELECT g, repeat('x', 200) FROM generate_series($1::int, $2::int) g`,
      [from, from + n - 1],
    );
  });
}

clusterSuite("kvsz status", {
  "an inactive kvsz slot: lag grows with writes, publication tables listed": async (c) => {
    const s = await setup(c);
    const before = await s.json();
    assert.equal(before.sources.length, 1);
    const src = before.sources[0];
    assert.equal(src.reachable, true);
    assert.equal(src.error, null);
    assert.equal(src.database, s.srcDb);
    assert.equal(src.sid, "1");
    assert.ok(!src.url.includes(c.server.password));
    assert.ok(src.slot);
    assert.equal(src.slot.name, s.slot);
    assert.equal(src.slot.exists, true);
    assert.equal(src.slot.active, false);
    assert.equal(src.slot.activePid, null);
    assert.match(src.slot.confirmedFlushLsn ?? "", /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.equal(typeof src.slot.lagBytes, "number");
    assert.equal(typeof src.slot.retainedBytes, "number");
    assert.equal(src.slot.walStatus, "reserved");
    assert.equal(src.replication, null);
    assert.deepStrictEqual(src.publication, {
      name: s.slot,
      exists: true,
      tables: ["public.t1"],
    });
    assert.equal(src.progress, null);
    assert.deepStrictEqual(before.warnings, []);
    assert.deepStrictEqual(before.destination.reachable, true);
    assert.deepStrictEqual(before.destination.progressTable, false);

    await write(c, s.srcDb, 1, 500);
    const after = (await s.json()).sources[0];
    assert.ok(
      after.slot!.lagBytes! >= src.slot.lagBytes! + 500 * 200,
      `lag ${src.slot.lagBytes} -> ${after.slot!.lagBytes}`,
    );
    assert.ok(after.slot!.retainedBytes! > src.slot.retainedBytes!);
    assert.equal(after.slot!.confirmedFlushLsn, src.slot.confirmedFlushLsn);

    const text = await s.status();
    const [header, row] = table(text.stdout);
    for (const h of ["SOURCE", "ENDPOINT", "SLOT", "LAG", "RETAINED", "APPLIED LSN", "BEHIND"]) {
      assert.ok(header.includes(h), header);
    }
    assert.match(
      row,
      new RegExp(
        `^${s.srcDb} sid 1 +127\\.0\\.0\\.1:\\d+/${s.srcDb} +inactive +\\d+\\.\\d (KiB|MiB) `,
      ),
    );
    assert.equal(row.indexOf("inactive"), header.indexOf("SLOT"), `aligned:\n${text.stdout}`);
    assert.ok(text.stdout.includes(`\n${s.srcDb} sid 1: publication ${s.slot}: public.t1\n`));
    assert.match(text.stdout, /no kvsz\.progress table yet/);
    assert.doesNotMatch(text.stdout, /^WARN/m);
  },

  "progress from the destination: commit LSN, rows per mode, seconds behind": async (c) => {
    const s = await setup(c);
    await c.sql(s.dstDb).unsafe(`
      CREATE SCHEMA kvsz;
      CREATE TABLE kvsz.progress (database text, sid text, commit_lsn pg_lsn, end_lsn pg_lsn,
        commit_time timestamptz, applied_at timestamptz, rows_clone bigint, rows_append bigint,
        rows_history bigint, anomalies bigint, PRIMARY KEY (database, sid));
      INSERT INTO kvsz.progress VALUES ('${s.srcDb}', '1', '0/1A2B3C4D', '0/1A2B3C80',
        now() - interval '90 seconds', now() - interval '89 seconds', 1200, 34, 5, 2),
        ('other', '9', '0/1', '0/2', now(), now(), 0, 0, 0, 0);`);
    await write(c, s.srcDb, 1, 10);
    const report = await s.json();
    const src = report.sources[0];
    assert.equal(report.destination.progressTable, true);
    assert.ok(src.progress);
    assert.equal(src.progress.commitLsn, "0/1A2B3C4D");
    assert.equal(src.progress.endLsn, "0/1A2B3C80");
    assert.deepStrictEqual(
      [src.progress.rowsClone, src.progress.rowsAppend, src.progress.rowsHistory],
      [1200, 34, 5],
    );
    assert.equal(src.progress.anomalies, 2);
    assert.ok(src.slot!.lagBytes! > 0);
    assert.ok(src.lagSeconds! >= 90 && src.lagSeconds! < 200, `lag ${src.lagSeconds}`);

    const text = await s.status();
    const row = table(text.stdout)[1];
    assert.match(row, / 0\/1A2B3C4D +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00 +1m3\ds +1200\/34\/5 +2/);
    assert.match(text.stdout, /progress read from kvsz\.progress/);
  },

  "an active slot shows its walsender": async (c) => {
    const s = await setup(c);
    const repl = connect(c.url(s.srcDb), { replication: true });
    const stream = await repl.unsafe(
      `START_REPLICATION SLOT ${s.slot} LOGICAL 0/0 (proto_version '1', publication_names '${s.slot}')`,
    ).readable();
    stream.on("data", () => {});
    try {
      let src = (await s.json()).sources[0];
      for (let i = 0; i < 50 && src.replication?.state !== "streaming"; i++) {
        await new Promise((r) => setTimeout(r, 100));
        src = (await s.json()).sources[0];
      }
      assert.equal(src.slot!.active, true);
      assert.equal(typeof src.slot!.activePid, "number");
      assert.ok(src.replication);
      assert.equal(src.replication.pid, src.slot!.activePid);
      assert.equal(src.replication.state, "streaming");
      assert.match(src.replication.sentLsn ?? "", /^[0-9A-F]+\/[0-9A-F]+$/);
      const text = await s.status();
      assert.match(text.stdout, new RegExp(`^${s.srcDb} sid 1 .* active `, "m"));
      assert.match(
        text.stdout,
        new RegExp(`^${s.srcDb} sid 1: walsender pid \\d+ streaming, sent [0-9A-F]+/`, "m"),
      );
    } finally {
      stream.destroy();
      await repl.end({ timeout: 1 });
    }
  },

  "retained WAL above the threshold warns; an unreachable source is a row": async (c) => {
    const s = await setup(c);
    await write(c, s.srcDb, 1, 10_000); // about 3 MiB of WAL
    const closed = freePort();
    const urls = [
      { url: c.url(s.srcDb), sid: "1" },
      { url: `postgres://kvsz:${c.server.password}@127.0.0.1:${closed}/gone`, sid: "2" },
    ];
    const report = await s.json({ urls, warnMb: 1 });
    assert.equal(report.sources.length, 2);
    const [ok, down] = report.sources;
    assert.equal(ok.warnings.length, 1);
    assert.match(
      ok.warnings[0],
      /slot \S+ retains .* of WAL, more than retainedWalWarnBytes \(1\.0 MiB\)/,
    );
    assert.equal(report.warnings.length, 1);
    assert.ok(report.warnings[0].startsWith(`${s.srcDb} sid 1: slot ${s.slot} retains`));
    assert.equal(down.reachable, false);
    assert.match(down.error ?? "", /ECONNREFUSED/);
    assert.equal(down.slot, null);
    assert.equal(down.url, `postgres://kvsz:***@127.0.0.1:${closed}/gone`);

    const text = await s.status([], { urls, warnMb: 1 });
    assert.match(
      text.stdout,
      new RegExp(
        `^${s.srcDb} sid 2 +127\\.0\\.0\\.1:${closed}/gone +- .*unreachable: connect ECONNREFUSED`,
        "m",
      ),
    );
    assert.match(
      text.stdout,
      new RegExp(`^WARN ${s.srcDb} sid 1: slot ${s.slot} retains \\d+\\.\\d MiB of WAL`, "m"),
    );
  },

  "a missing slot and publication are reported, not fatal": async (c) => {
    const s = await setup(c);
    await c.sql(s.srcDb).unsafe(`SELECT pg_drop_replication_slot('${s.slot}')`);
    await c.sql(s.srcDb).unsafe(`DROP PUBLICATION ${s.slot}`);
    const src = (await s.json()).sources[0];
    assert.equal(src.slot!.exists, false);
    assert.equal(src.slot!.lagBytes, null);
    assert.deepStrictEqual(src.publication, { name: s.slot, exists: false, tables: [] });
    const text = await s.status();
    const row = table(text.stdout)[1];
    assert.ok(row.startsWith(`${s.srcDb} sid 1 `), text.stdout);
    assert.match(row, / missing .*no slot \S+ \(kvsz run has not started\)$/);
    assert.ok(text.stdout.includes(`\n${s.srcDb} sid 1: publication ${s.slot}: missing\n`));
  },
});
