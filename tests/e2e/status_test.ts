/**
 * `kvsz status` against a real server: a kvsz slot and publication made by
 * hand (as `kvsz run` would leave them), the progress row in the destination,
 * an active walsender, a retained-WAL warning and an unreachable source; and
 * at 41 sources on one server, the summary (by state, most lagging, WAL
 * retained) and the --source/--database filters.
 */
import assert from "node:assert/strict";
import { stringify } from "yaml";
import { clusterSuite, type TestCluster } from "../support/cluster.ts";
import { type CliResult, runCli, tempConfig } from "../support/run_cli.ts";
import { connect } from "../../lib/pg/connect.ts";
import { freePort } from "../../lib/pg/local_cluster.ts";
import { kvszObjectName } from "../../lib/pg/identifiers.ts";
import type { StatusReport } from "../../lib/observe/status_report.ts";
import { createTenants } from "../support/tenants.ts";
import postgres from "postgres";

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

/** Slots of the tenants that lag most: made first, with WAL written after each. */
const LAGGARDS = [5, 6, 7];

clusterSuite("kvsz status at many tenants", {
  "41 sources on one server: summary by state, most lagging, WAL retained; filters narrow it":
    async (c) => {
      const tenants = await createTenants(c, 40, {
        ddl: `CREATE TABLE accounts (id int PRIMARY KEY, v text)`,
      });
      const sidOf = (i: number) => String(i + 1);
      const slotOf = (sid: number | string) => kvszObjectName("tenants", String(sid));
      const inTenant = async (sid: number, sql: string) => {
        const db = postgres(c.url(tenants[sid - 1]), { max: 1, onnotice: () => {} });
        try {
          await db.unsafe(sql);
        } finally {
          await db.end();
        }
      };
      const createSlot = (sid: number) =>
        inTenant(sid, `SELECT pg_create_logical_replication_slot('${slotOf(sid)}', 'pgoutput')`);
      // Sids 5, 6, 7 first, each followed by about 1 MiB of WAL: they lag most, in that order.
      for (const sid of LAGGARDS) {
        await createSlot(sid);
        await inTenant(
          sid,
          `INSERT INTO accounts SELECT g, repeat('x', 200) FROM generate_series(1, 4000) g`,
        );
      }
      // Slots for sids 1 to 38; 39 and 40 have none (not started).
      for (let sid = 1; sid <= 38; sid++) if (!LAGGARDS.includes(sid)) await createSlot(sid);
      // Sids 1 and 2 stream; the destination records the copy of sids 1 to 30 only.
      const streams = [];
      for (const sid of [1, 2]) {
        await inTenant(sid, `CREATE PUBLICATION ${slotOf(sid)} FOR TABLE accounts`);
        const repl = connect(c.url(tenants[sid - 1]), { replication: true });
        const stream = await repl.unsafe(
          `START_REPLICATION SLOT ${slotOf(sid)} LOGICAL 0/0 ` +
            `(proto_version '1', publication_names '${slotOf(sid)}')`,
        ).readable();
        stream.on("data", () => {});
        streams.push({ repl, stream });
      }
      const dstDb = await c.createDatabase("dst");
      await c.sql(dstDb).unsafe(`
        CREATE SCHEMA kvsz;
        CREATE TABLE kvsz.progress (database text, sid text, commit_lsn pg_lsn, end_lsn pg_lsn,
          commit_time timestamptz, applied_at timestamptz, rows_clone bigint, rows_append bigint,
          rows_history bigint, anomalies bigint, PRIMARY KEY (database, sid));
        CREATE TABLE kvsz.synced_tables (database text, sid text, source_table text, target text,
          synced_lsn pg_lsn, PRIMARY KEY (database, sid, source_table));
        INSERT INTO kvsz.synced_tables
          SELECT 'tenants', g::text, 'accounts', 'accounts', '0/1' FROM generate_series(1, 30) g;`);
      try {
        const admin = c.sql();
        for (let i = 0; i < 100; i++) {
          const [{ n }] = await admin.unsafe(
            `SELECT count(*)::int AS n FROM pg_replication_slots WHERE active`,
          );
          if (n === 2) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        // Sid 0 is first: its database is gone, so the server is read through another's URL.
        const urls = [
          { url: c.url("tenant_gone"), sid: "0" },
          ...tenants.map((db, i) => ({ url: c.url(db), sid: sidOf(i) })),
        ];
        await using file = await tempConfig(stringify({
          destination: { url: c.url(dstDb) },
          databases: [{ database: "tenants", urls, tables: { accounts: null } }],
        }));
        const status = (...args: string[]) =>
          runCli(["status", "--config", file.path, ...args], { timeoutMs: 60_000 });
        const json = async (...args: string[]) => {
          const r = await status("--json", ...args);
          assert.equal(r.code, 0, r.output);
          return JSON.parse(r.stdout) as StatusReport;
        };

        const report = await json();
        const direct = new Map(
          (await admin.unsafe(
            `SELECT slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 AS lag
               FROM pg_replication_slots`,
          )).map((r) => [r.slot_name as string, Number(r.lag)]),
        );
        assert.equal(report.sources.length, 41);
        assert.equal(report.summary.sources, 41);
        assert.equal(report.summary.servers, 1);
        assert.deepStrictEqual(report.summary.byState, {
          streaming: 2,
          copying: 8,
          erroring: 1,
          stopped: 28,
          not_started: 2,
        });
        const state = (sid: string) => report.sources.find((s) => s.sid === sid)!.state;
        assert.deepStrictEqual(
          ["0", "1", "3", "31", "39"].map(state),
          ["erroring", "streaming", "stopped", "copying", "not_started"],
        );
        const top = report.summary.mostLagging;
        assert.equal(top.length, 10);
        assert.deepStrictEqual(top.slice(0, 3).map((l) => l.sid), LAGGARDS.map(String));
        const lags = top.map((l) => l.lagBytes!);
        assert.deepStrictEqual(lags, [...lags].sort((a, b) => b - a));
        const tenth = lags[9];
        for (const s of report.sources) {
          if (!top.some((l) => l.sid === s.sid)) assert.ok((s.slot?.lagBytes ?? 0) <= tenth);
        }
        // The same lag as pg_replication_slots (read just after: only later WAL differs).
        for (const l of top.slice(0, 3)) {
          const now = direct.get(slotOf(l.sid))!;
          assert.ok(l.lagBytes! <= now && l.lagBytes! > now - 256 * 1024, `${l.lagBytes} ${now}`);
        }
        assert.ok(top[2].lagBytes! > top[3].lagBytes! + 512 * 1024, JSON.stringify(top));
        assert.equal(report.summary.worstRetained?.sid, "5");
        // One server: its WAL is what its oldest slot keeps, not the sum over its slots.
        assert.equal(report.summary.walRetainedBytes, report.summary.worstRetained?.retainedBytes);

        const text = await status();
        assert.equal(text.code, 0, text.output);
        const lines = text.stdout.split("\n");
        assert.equal(
          lines[0],
          "41 sources on 1 server: 2 streaming, 8 copying, 1 disconnected/erroring, 28 stopped, " +
            "2 not started",
        );
        assert.ok(!lines.some((l) => l.startsWith("SOURCE ")), text.stdout);
        const at = (sid: string) => lines.findIndex((l) => l.startsWith(`  tenants sid ${sid} `));
        assert.ok(0 < at("5") && at("5") < at("6") && at("6") < at("7"), text.stdout);
        assert.match(text.stdout, /^WAL retained: \d+\.\d MiB in total .* most by tenants sid 5 /m);
        assert.match(
          text.stdout,
          /^disconnected\/erroring:\n {2}tenants sid 0 \(.*\/tenant_gone\): unreachable: .*tenant_gone.* does not exist/m,
        );

        // Filters narrow the summary and the detail, and show the per-source table.
        const two = await status("--source", "5", "--source", "31");
        assert.equal(two.code, 0, two.output);
        assert.ok(
          two.stdout.startsWith(
            "2 sources on 1 server: 0 streaming, 1 copying, 0 disconnected/erroring, 1 stopped, " +
              "0 not started\n",
          ),
          two.stdout,
        );
        assert.deepStrictEqual(
          table(two.stdout).slice(1).map((r) => r.split(/ {2,}/)[0]),
          ["tenants sid 5", "tenants sid 31"],
        );
        assert.match(two.stdout, /^tenants sid 31 .* copying: 0 of 1 tables copied$/m);
        assert.deepStrictEqual(
          (await json("--database", "tenants", "--source", "39")).sources.map((s) => s.state),
          ["not_started"],
        );
        assert.equal(table((await status("--database", "tenants")).stdout).length, 42);
        for (
          const [flag, name, message] of [
            ["--source", "99", `no source with sid "99"`],
            ["--database", "nope", `no database "nope"`],
          ]
        ) {
          const bad = await status(flag, name);
          assert.equal(bad.code, 2, bad.output);
          assert.ok(bad.stderr.startsWith(`kvsz: ${message}`), bad.stderr);
        }
      } finally {
        for (const { repl, stream } of streams) {
          stream.destroy();
          await repl.end({ timeout: 1 });
        }
      }
    },
}, { settings: { max_replication_slots: 50, max_wal_senders: 20 } });
