/**
 * Tenant discovery on real servers: kvsz runs with a `discover` block (a
 * server URL without database, a pattern, the sid from a capture group,
 * listed every second) over a source server holding tenant databases and
 * some that do not match. Every matching tenant's rows arrive with its sid;
 * a database created while kvsz runs is copied and streams while the others
 * keep their walsenders; a newcomer whose sid collides is refused with one
 * warning; a database dropped while running (walsender ended, slot dropped,
 * database dropped) stops its source with one warning and the others go on;
 * a SIGHUP that changes the block and adds a URL stops and starts only what
 * changed; `status`, `validate` and `drop` know the discovered tenants.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { startCluster, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, tableRows, waitFor, waitForEqualRows, writeConfig } from "../support/kvsz.ts";
import { runCli } from "../support/run_cli.ts";
import { tempDirScope } from "../support/temp_dirs.ts";
import { TcpProxy } from "../support/tcp_proxy.ts";

const PATTERN = "tenant_(\\d+)_[0-9a-f]{6}";

/** A tenant database on the source server, with its expected sid. */
interface Tenant {
  name: string;
  sid: string;
  sql: postgres.Sql;
}

/** Makes database `name` from the template (accounts 1..50, v = id * n). */
async function createFromTemplate(
  c: TestCluster,
  admin: postgres.Sql,
  { name, template, n }: { name: string; template: string; n: number },
): Promise<postgres.Sql> {
  await admin.unsafe(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
  const sql = c.sql(name);
  await sql.unsafe(`UPDATE accounts SET v = id * $1`, [n]);
  return sql;
}

/** Makes a template database holding accounts; returns a maker of databases copied from it. */
async function tenantMaker(
  source: TestCluster,
  admin: postgres.Sql,
): Promise<(name: string, n: number) => Promise<postgres.Sql>> {
  const template = await source.createDatabase("tpl");
  const tpl = source.sql(template);
  await tpl.unsafe(`CREATE TABLE accounts (id int PRIMARY KEY, v int)`);
  await tpl.unsafe(`INSERT INTO accounts SELECT g, g FROM generate_series(1, 50) g`);
  await tpl.end(); // a template is copied only while nobody is connected to it
  return (name, n) => createFromTemplate(source, admin, { name, template, n });
}

function tenantName(n: number | string, suffix = ""): string {
  return `tenant_${n}_${crypto.randomUUID().slice(0, 6)}${suffix}`;
}

function config(
  source: TestCluster,
  dest: TestCluster,
  dstDb: string,
  opts: { pattern?: string; urls?: { url: string; sid: string }[]; discoverUrl?: string } = {},
) {
  return {
    destination: { url: dest.url(dstDb) },
    databases: [{
      database: "tenants",
      ...(opts.urls ? { urls: opts.urls } : {}),
      discover: {
        url: opts.discoverUrl ?? source.url().replace(/\/postgres$/, ""), // the server, no database
        pattern: opts.pattern ?? PATTERN,
        sid: "$1",
        interval_seconds: 1,
      },
      tables: { accounts: null },
    }],
    apply: { commit_interval_ms: 20 },
    metrics: { listen: "" },
    log: { level: "info", format: "text" },
  };
}

/** Every tenant's accounts as the destination should hold them (sid first). */
async function expectedRows(tenants: Tenant[]): Promise<string[]> {
  const all = await Promise.all(tenants.map(async (t) =>
    (await t.sql.unsafe(
      `SELECT row_to_json(x)::text AS j FROM (SELECT $1::text AS sid, * FROM accounts) x`,
      [t.sid],
    )).map((r) => r.j as string)
  ));
  return all.flat().sort();
}

/** The walsender pid of each active kvsz slot, by slot name. */
async function walsenders(admin: postgres.Sql): Promise<Record<string, number>> {
  const rows = await admin.unsafe(
    `SELECT slot_name, active_pid FROM pg_replication_slots
      WHERE slot_name LIKE 'kvsz\\_%' AND active ORDER BY slot_name`,
  );
  return Object.fromEntries(rows.map((r) => [r.slot_name, r.active_pid]));
}

/** {@link walsenders} once every tenant of `tenants` streams (its slot active). */
async function streaming(admin: postgres.Sql, tenants: Tenant[]): Promise<Record<string, number>> {
  let pids: Record<string, number> = {};
  await waitFor(async () => {
    pids = await walsenders(admin);
    return tenants.every((x) => pids[`kvsz_tenants_${x.sid}`] !== undefined);
  }, { what: "every tenant streaming", context: () => JSON.stringify(pids) });
  return pids;
}

/** Lines of `text` matching `pattern`. */
function linesMatching(text: string, pattern: RegExp): string[] {
  return text.split("\n").filter((line) => pattern.test(line));
}

Deno.test({
  name: "kvsz run: tenants discovered while running",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await using _dirs = tempDirScope();
    await using source = await startCluster({
      settings: { max_wal_senders: 20, max_replication_slots: 20 },
    });
    await using dest = await startCluster();
    const dstDb = await dest.createDatabase("warehouse");
    const dst = dest.sql(dstDb);
    await dst.unsafe(`CREATE TABLE accounts (sid text, id int, v int, PRIMARY KEY (sid, id))`);
    const admin = source.sql("postgres");
    const make = await tenantMaker(source, admin);

    const tenants: Tenant[] = [];
    for (const n of [1, 2, 3]) {
      const name = tenantName(n);
      tenants.push({ name, sid: String(n), sql: await make(name, n) });
    }
    // Not tenants: the pattern must match the whole name, and a database closed to
    // connections is not listed.
    await make(`other_${tenantName(5)}`, 5);
    await make(tenantName(6, "_old"), 6);
    const closed = tenantName(7);
    await make(closed, 7);
    await admin.unsafe(`ALTER DATABASE "${closed}" ALLOW_CONNECTIONS false`);

    const cfg = await writeConfig(config(source, dest, dstDb));
    const rowsEqual = (what: string, kvsz: KvszProcess) =>
      waitForEqualRows(() => expectedRows(tenants), () => tableRows(dst, "accounts"), {
        what,
        kvsz,
      });
    const insert = (list: Tenant[], id: number) =>
      Promise.all(list.map((x) => x.sql.unsafe(`INSERT INTO accounts VALUES ($1, $1)`, [id])));

    await using kvsz = KvszProcess.start(["run", "--config", cfg]);
    let twin = "";

    await t.step("every matching tenant is copied and streams with its sid", async () => {
      await rowsEqual("the three tenants' accounts", kvsz);
      await insert(tenants, 1001);
      await rowsEqual("their new rows", kvsz);
      const sids = await dst.unsafe(`SELECT DISTINCT sid FROM accounts ORDER BY sid`);
      assert.deepEqual(sids.map((r) => r.sid), ["1", "2", "3"]);
      assert.deepEqual(
        Object.keys(await streaming(admin, tenants)),
        ["kvsz_tenants_1", "kvsz_tenants_2", "kvsz_tenants_3"],
      );
    });

    await t.step(
      "a database created while running is copied and streams; the others are untouched",
      async () => {
        const before = await streaming(admin, tenants);
        const mark = kvsz.output.length;
        const name = tenantName(4);
        tenants.push({ name, sid: "4", sql: await make(name, 4) });
        await insert(tenants.slice(0, 3), 1002); // the others stream meanwhile
        await kvsz.waitForOutput(
          new RegExp(`discovered database ${name} on .*sid 4`),
          30_000,
          mark,
        );
        await rowsEqual("the new tenant's copy and the others' rows", kvsz);
        await insert(tenants, 1003);
        await rowsEqual("every tenant's new rows", kvsz);
        const after = await streaming(admin, tenants);
        for (const slot of Object.keys(before)) {
          assert.equal(after[slot], before[slot], `${slot} kept its walsender`);
        }
        assert.ok(after.kvsz_tenants_4, "the new tenant streams");
        assert.deepEqual(linesMatching(kvsz.output.slice(mark), /stopping|sid=[123]\b/), []);
      },
    );

    await t.step("a newcomer whose sid is taken is refused with one warning", async () => {
      const before = await streaming(admin, tenants);
      const mark = kvsz.output.length;
      twin = tenantName(1); // sid 1 again: slot kvsz_tenants_1 is tenant 1's
      await make(twin, 8);
      const refusal = new RegExp(
        `WRN discover: database ${twin} found by databases\\[0\\]\\.discover is not streamed: .*kvsz_tenants_1, which are database ${
          tenants[0].name
        } found by`,
      );
      await kvsz.waitForOutput(refusal, 30_000, mark);
      // A later listing (it finds tenant 5) says nothing more about the twin.
      const name = tenantName(5);
      tenants.push({ name, sid: "5", sql: await make(name, 5) });
      await kvsz.waitForOutput(new RegExp(`discovered database ${name}`), 30_000, mark);
      await insert(tenants, 1004);
      await rowsEqual("every tenant's rows, the twin's not among them", kvsz);
      assert.equal(linesMatching(kvsz.output.slice(mark), new RegExp(twin)).length, 1);
      assert.equal((await walsenders(admin)).kvsz_tenants_1, before.kvsz_tenants_1);
    });

    await t.step(
      "the slot poller reads the tenants' slots through the listing database",
      async () => {
        // Streaming, a tenant holds only its walsender (its other connection closes when
        // idle); the one lasting client connection of kvsz is the slot poller's, on the
        // database discovery lists through, not on a tenant's (which could then not be dropped).
        let seen: string[] = [];
        await waitFor(async () => {
          seen = (await admin.unsafe(
            `SELECT datname FROM pg_stat_activity
            WHERE application_name = 'kvsz' AND backend_type = 'client backend'
              AND backend_start < now() - interval '3 seconds'`,
          )).map((r) => r.datname);
          return JSON.stringify(seen) === '["postgres"]';
        }, {
          what: "the slot poller's connection alone",
          timeoutMs: 60_000,
          context: () => seen.join(", "),
        });
      },
    );

    await t.step("status and validate list the discovered tenants", async () => {
      const status = await runCli(["status", "--config", cfg, "--json"]);
      assert.equal(status.code, 0, status.output);
      const report = JSON.parse(status.stdout);
      assert.deepEqual(
        report.sources.map((s: { sid: string; endpoint: string }) => `${s.sid} ${s.endpoint}`)
          .sort(),
        tenants.map((x) => `${x.sid} 127.0.0.1:${source.server.port}/${x.name}`).sort(),
      );
      assert.match(
        status.stderr,
        /WARN database tenant_1_\w{6} found by databases\[0\]\.discover is not streamed/,
      );
      const validate = await runCli(["validate", "--config", cfg, "--json"]);
      const checks: {
        status: string;
        check: string;
        problem?: string;
        source?: { sid: string; endpoint: string };
      }[] = JSON.parse(validate.stdout);
      const discover = checks.filter((c) => c.check.startsWith("discover "));
      assert.deepEqual(discover.map((c) => [c.status, c.check.replace(/\d+\)/, "PORT)")]), [
        ["ok", "discover databases[0].discover (tenants on 127.0.0.1:PORT): 5 database(s) match"],
        ["WARN", `discover databases[0].discover database ${twin}`],
      ]);
      assert.match(
        discover[1].problem!,
        /^not streamed \(the others are\): database "tenants" sid "1" would use .* kvsz_tenants_1/,
      );
      const reachable = checks.filter((c) => c.source && c.check.endsWith(" reachable"));
      assert.deepEqual(
        reachable.map((c) =>
          `${c.status} ${c.source!.sid} ${c.source!.endpoint.replace(/.*\//, "")}`
        ).sort(),
        tenants.map((x) => `ok ${x.sid} ${x.name}`).sort(),
      );
      assert.doesNotMatch(validate.output, new RegExp(source.server.password));
    });

    await t.step("a database dropped while running stops its source with one warning", async () => {
      const gone = tenants.splice(1, 1)[0];
      const [{ n: kept }] = await dst.unsafe(
        `SELECT count(*)::int AS n FROM accounts WHERE sid = '2'`,
      );
      const before = await streaming(admin, tenants);
      const mark = kvsz.output.length;
      await gone.sql.end();
      // As a person would: end kvsz's walsender, drop the slot (PostgreSQL refuses to drop a
      // database with a logical slot), drop the database; again if kvsz came back in between.
      await waitFor(async () => {
        await admin.unsafe(
          `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
            WHERE slot_name = 'kvsz_tenants_2' AND active_pid IS NOT NULL`,
        );
        const slots = await admin.unsafe(
          `SELECT active FROM pg_replication_slots WHERE slot_name = 'kvsz_tenants_2'`,
        );
        if (slots[0]?.active) return false;
        if (slots.length) await admin.unsafe(`SELECT pg_drop_replication_slot('kvsz_tenants_2')`);
        await admin.unsafe(`DROP DATABASE "${gone.name}" WITH (FORCE)`);
        return true;
      }, { what: `${gone.name} dropped`, context: () => kvsz.output.slice(-3000) });
      const warning = new RegExp(
        `WRN discover: database ${gone.name} is gone from 127\\.0\\.0\\.1:\\d+ .*stopping source tenants sid 2; its rows stay in the destination`,
      );
      await kvsz.waitForOutput(warning, 30_000, mark);
      await insert(tenants, 1005);
      // A later listing (it finds tenant 6) stops nothing more and says nothing more.
      const name = tenantName(6);
      tenants.push({ name, sid: "6", sql: await make(name, 6) });
      await kvsz.waitForOutput(new RegExp(`discovered database ${name}`), 30_000, mark);
      await waitForEqualRows(
        () => expectedRows(tenants),
        () => tableRows(dst, "accounts", "*", "sid <> '2'"),
        { what: "the other tenants' rows", kvsz },
      );
      const after = kvsz.output.slice(mark);
      assert.equal(
        linesMatching(after, /WRN|ERR/).filter((l) => !/terminating connection/.test(l)).length,
        1,
        after,
      );
      assert.equal(linesMatching(after, warning).length, 1);
      const since = after.slice(after.search(warning));
      assert.deepEqual(
        linesMatching(since, /sid=2\b/).filter((l) => !/stopped cleanly/.test(l)),
        [],
        since,
      );
      const [{ n: still }] = await dst.unsafe(
        `SELECT count(*)::int AS n FROM accounts WHERE sid = '2'`,
      );
      assert.equal(still, kept, "the dropped tenant's rows stay");
      const now = await walsenders(admin);
      for (const slot of Object.keys(before).filter((s) => s !== "kvsz_tenants_2")) {
        assert.equal(now[slot], before[slot], `${slot} kept its walsender`);
      }
    });

    await t.step(
      "SIGHUP: a changed discover block and a new URL stop and start only what changed",
      async () => {
        const before = await streaming(admin, tenants);
        const mark = kvsz.output.length;
        const extra = await make(`extra_${tenantName(9)}`, 9);
        const [{ db }] = await extra.unsafe(`SELECT current_database() AS db`);
        await Deno.writeTextFile(
          cfg,
          JSON.stringify(config(source, dest, dstDb, {
            pattern: "tenant_([1456])_[0-9a-f]{6}",
            urls: [{ url: source.url(db), sid: "x" }],
          })),
        );
        Deno.kill(kvsz.pid, "SIGHUP");
        await kvsz.waitForOutput(/stopping tenants sid 3 \(no longer discovered\)/, 30_000, mark);
        const dropped = tenants.splice(tenants.findIndex((x) => x.sid === "3"), 1);
        tenants.push({ name: db, sid: "x", sql: extra });
        await insert(tenants, 1006);
        await waitForEqualRows(
          () => expectedRows(tenants),
          () => tableRows(dst, "accounts", "*", "sid NOT IN ('2', '3')"),
          { what: "the new URL's copy and the tenants' rows", kvsz },
        );
        const now = await walsenders(admin);
        for (const x of tenants.filter((x) => x.sid !== "x")) {
          const slot = `kvsz_tenants_${x.sid}`;
          assert.equal(now[slot], before[slot], `${slot} kept its walsender`);
        }
        assert.equal(now.kvsz_tenants_3, undefined, `${dropped[0].name} no longer streams`);
        assert.deepEqual(linesMatching(kvsz.output.slice(mark), /stopping/), [
          ...linesMatching(
            kvsz.output.slice(mark),
            /stopping tenants sid 3 \(no longer discovered\)/,
          ),
        ]);
      },
    );

    await t.step(
      "a tenant closed to connections stops quietly; then its slot and database drop",
      async () => {
        const retired = tenants.splice(tenants.findIndex((x) => x.sid === "5"), 1)[0];
        const mark = kvsz.output.length;
        await retired.sql.end();
        await admin.unsafe(`ALTER DATABASE "${retired.name}" ALLOW_CONNECTIONS false`);
        await kvsz.waitForOutput(new RegExp(`database ${retired.name} is gone`), 30_000, mark);
        await waitFor(async () => !(await walsenders(admin)).kvsz_tenants_5, {
          what: "kvsz_tenants_5 no longer streamed",
        });
        await admin.unsafe(`SELECT pg_drop_replication_slot('kvsz_tenants_5')`);
        await admin.unsafe(`DROP DATABASE "${retired.name}"`); // no session of kvsz is left there
        assert.deepEqual(linesMatching(kvsz.output.slice(mark), /ERR|WRN/).length, 1);
      },
    );

    await t.step("drop removes the discovered tenants' slots and publications", async () => {
      assert.equal(await kvsz.stop(), 0, kvsz.output.slice(-3000));
      const drop = await runCli(["drop", "--config", cfg, "--yes"]);
      assert.equal(drop.code, 0, drop.output);
      for (const x of tenants) {
        assert.match(
          drop.stdout,
          new RegExp(
            `dropped +slot kvsz_tenants_${x.sid} on source tenants sid ${x.sid} \\(127\\.0\\.0\\.1:\\d+/${x.name}\\)`,
          ),
        );
      }
      const slots = await admin.unsafe(`SELECT slot_name FROM pg_replication_slots ORDER BY 1`);
      // sid 3 left the config before: its slot is left to the person who removed it (5's was
      // dropped with its database).
      assert.deepEqual(slots.map((r) => r.slot_name), ["kvsz_tenants_3"]);
    });
  },
});

Deno.test({
  name: "kvsz run: a server that cannot be listed keeps its tenants, said once",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await using _dirs = tempDirScope();
    await using source = await startCluster();
    await using dest = await startCluster();
    const dstDb = await dest.createDatabase("warehouse");
    const dst = dest.sql(dstDb);
    await dst.unsafe(`CREATE TABLE accounts (sid text, id int, v int, PRIMARY KEY (sid, id))`);
    const admin = source.sql("postgres");
    const make = await tenantMaker(source, admin);
    const tenants: Tenant[] = [];
    for (const n of [1, 2]) {
      const name = tenantName(n);
      tenants.push({ name, sid: String(n), sql: await make(name, n) });
    }
    // The server reached through a proxy that can stop carrying new connections.
    await using proxy = new TcpProxy(source.server.port);
    const discoverUrl = source.url().replace(/:\d+\/postgres$/, `:${proxy.port}?connect_timeout=2`);
    const cfg = await writeConfig(config(source, dest, dstDb, { discoverUrl }));
    await using kvsz = KvszProcess.start(["run", "--config", cfg]);
    const rowsEqual = (what: string) =>
      waitForEqualRows(() => expectedRows(tenants), () => tableRows(dst, "accounts"), {
        what,
        kvsz,
      });
    await rowsEqual("both tenants copied");
    const before = await streaming(admin, tenants);

    const mark = kvsz.output.length;
    proxy.blackholeNew = true; // listings time out; open connections still carry
    const accepted = proxy.accepted;
    await waitFor(() => proxy.accepted >= accepted + 3, { what: "three listings tried" });
    await Promise.all(tenants.map((x) => x.sql.unsafe(`INSERT INTO accounts VALUES (1001, 1)`)));
    await rowsEqual("rows streamed while the server cannot be listed");
    const failing = linesMatching(kvsz.output.slice(mark), /cannot list the databases/);
    assert.equal(failing.length, 1, kvsz.output.slice(mark));
    assert.match(
      failing[0],
      new RegExp(
        `^\\S+ WRN discover: cannot list the databases of 127\\.0\\.0\\.1:${proxy.port} \\(databases\\[0\\]\\.discover\\): .*its discovered sources stay as they are`,
      ),
    );
    assert.deepEqual(linesMatching(kvsz.output.slice(mark), /gone|stopping/), []);
    assert.deepEqual(await streaming(admin, tenants), before, "every tenant kept its walsender");

    proxy.blackholeNew = false;
    const name = tenantName(3);
    tenants.push({ name, sid: "3", sql: await make(name, 3) });
    await kvsz.waitForOutput(/listing the databases of 127\.0\.0\.1:\d+ works again/, 30_000, mark);
    await kvsz.waitForOutput(new RegExp(`discovered database ${name}`), 30_000, mark);
    await rowsEqual("the tenant created meanwhile copied");
    assert.equal(await kvsz.stop(), 0, kvsz.output.slice(-3000));
    assert.doesNotMatch(kvsz.output, new RegExp(source.server.password));
  },
});
