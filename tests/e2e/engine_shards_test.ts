/**
 * Several kvsz processes over one config (`kvsz run --shard I/N`): thirty
 * tenant databases on one source server, three processes, shards 0/3, 1/3
 * and 2/3, a light write load on every tenant. Each process applies its
 * share and touches no other source; a `kill -9` of one and its restart lose
 * and double nothing; a fourth process started on a taken shard waits
 * (writes nothing, says so, /readyz and metrics show it) and takes over when
 * the holder dies, as in a rolling restart; a lost lock session stops a
 * process's sources until it holds their locks again.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { startCluster, type TestCluster } from "../support/cluster.ts";
import { KvszProcess, waitFor, writeConfig } from "../support/kvsz.ts";
import { tempDirScope } from "../support/temp_dirs.ts";
import { createTenants } from "../support/tenants.ts";
import { parseExposition } from "../support/prometheus.ts";
import { runCli } from "../support/run_cli.ts";
import { shardOf } from "../../lib/engine/shard.ts";
import { kvszObjectName } from "../../lib/pg/identifiers.ts";

const TENANTS = 30;
const SHARDS = 3;

interface Tenant {
  db: string;
  sid: string;
  shard: number;
  sql: postgres.Sql;
}

function config(source: TestCluster, dest: TestCluster, dstDb: string, tenants: Tenant[]) {
  return {
    destination: { url: dest.url(dstDb) },
    databases: tenants.map((t) => ({
      database: t.db,
      urls: [{ url: source.url(t.db), sid: t.sid }],
      tables: { ev: { type: "append" } },
    })),
    apply: { commit_interval_ms: 20, workers: 1 },
    sync: { parallelism: 2 },
    metrics: { listen: "127.0.0.1:0" },
    log: { level: "info", format: "text" },
  };
}

/** Inserts one row into every tenant's `ev` every 100 ms until stopped. */
function startLoad(tenants: Tenant[]) {
  let running = true;
  let round = 0;
  const done = (async () => {
    while (running) {
      round++;
      await Promise.all(
        tenants.map((t) => t.sql.unsafe(`INSERT INTO ev VALUES ($1, $1)`, [1000 + round])),
      );
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    get round(): number {
      return round;
    },
    async stop(): Promise<void> {
      running = false;
      await done;
    },
  };
}

/** Per sid: rows and distinct ids of `ev` in the destination. */
async function destinationCounts(dst: postgres.Sql): Promise<Map<string, [number, number]>> {
  const rows = await dst.unsafe(
    `SELECT sid, count(*)::int AS n, count(DISTINCT id)::int AS ids FROM ev GROUP BY sid`,
  );
  return new Map(rows.map((r) => [String(r.sid), [r.n, r.ids]]));
}

/** Waits until every tenant's `ev` rows with id <= `upTo` are in the destination. */
async function waitApplied(
  dst: postgres.Sql,
  tenants: Tenant[],
  upTo: number,
  kvsz: KvszProcess[],
) {
  await waitFor(async () => {
    const [r] = await dst.unsafe(
      `SELECT count(DISTINCT sid)::int AS n FROM ev WHERE id = $1`,
      [upTo],
    );
    return r.n === tenants.length;
  }, {
    timeoutMs: 180_000, // the first copies on a loaded machine
    what: `every tenant's row ${upTo} in the destination`,
    context: () => kvsz.map((k) => k.output.slice(-1500)).join("\n---\n"),
  });
}

/** The owner recorded for each sid in kvsz.owners. */
async function owners(dst: postgres.Sql): Promise<Map<string, string>> {
  const rows = await dst.unsafe(`SELECT sid, owner FROM kvsz.owners`);
  return new Map(rows.map((r) => [String(r.sid), String(r.owner)]));
}

/** The metrics URL a kvsz process logged. */
async function metricsUrl(kvsz: KvszProcess): Promise<string> {
  await kvsz.waitForOutput(/serving metrics on http:\/\/\S+\/metrics/);
  return /serving metrics on (http:\/\/\S+)\/metrics/.exec(kvsz.output)![1];
}

const count = (text: string, pattern: RegExp) => (text.match(pattern) ?? []).length;

Deno.test({
  name: "kvsz run --shard: three processes share thirty tenants, a fourth waits",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async (t) => {
    await using _dirs = tempDirScope();
    await using source = await startCluster({
      settings: { max_wal_senders: 60, max_replication_slots: 60, max_connections: 200 },
    });
    await using dest = await startCluster();
    const dstDb = await dest.createDatabase("shards");
    const dst = dest.sql(dstDb);
    await dst.unsafe(`CREATE TABLE ev (sid text, id int, n int)`); // no key: a duplicate shows
    const names = await createTenants(source, TENANTS, {
      ddl: `CREATE TABLE ev (id int PRIMARY KEY, n int);
            INSERT INTO ev SELECT g, g FROM generate_series(1, 20) g`,
    });
    const tenants: Tenant[] = names.map((db, i) => ({
      db,
      sid: String(i + 1),
      shard: shardOf(kvszObjectName(db, String(i + 1)), SHARDS),
      sql: source.sql(db),
    }));
    const of = (shard: number) => tenants.filter((x) => x.shard === shard);
    for (let s = 0; s < SHARDS; s++) assert.ok(of(s).length > 0, `shard ${s} has tenants`);
    const cfg = await writeConfig(config(source, dest, dstDb, tenants));
    const start = (shard: number) =>
      KvszProcess.start(["run", "--config", cfg, "--shard", `${shard}/${SHARDS}`]);
    const running: KvszProcess[] = [];
    const load = startLoad(tenants);
    try {
      await t.step("each process applies its share and touches no other tenant", async () => {
        running.push(start(0), start(1), start(2));
        await waitApplied(dst, tenants, 1000 + load.round, running);
        const owned = await owners(dst);
        assert.equal(owned.size, TENANTS, "every tenant claimed");
        for (const x of tenants) {
          assert.match(
            owned.get(x.sid)!,
            new RegExp(`pid ${running[x.shard].pid} shard ${x.shard}/${SHARDS}$`),
            `tenant ${x.sid} belongs to shard ${x.shard}`,
          );
        }
        for (let s = 0; s < SHARDS; s++) {
          await waitFor(() => count(running[s].output, /streaming from/g) === of(s).length, {
            what: `shard ${s} streaming its share`,
            context: () => running[s].output.slice(-3000),
          });
          for (const x of tenants.filter((y) => y.shard !== s)) {
            assert.ok(
              !running[s].output.includes(x.db),
              `shard ${s} never touches ${x.db} (shard ${x.shard})`,
            );
          }
        }
        const slots = await source.sql().unsafe(
          `SELECT count(*)::int AS n FROM pg_replication_slots WHERE active`,
        );
        assert.equal(slots[0].n, TENANTS, "one active slot per tenant");
        // kvsz status --shard shows the shard's tenants and the process that claimed each.
        const status = await runCli(["status", "--config", cfg, "--shard", "1/3", "--json"]);
        assert.equal(status.code, 0, status.output);
        const report = JSON.parse(status.stdout);
        assert.deepEqual(
          report.sources.map((x: { sid: string }) => x.sid).sort(),
          of(1).map((x) => x.sid).sort(),
        );
        for (const x of report.sources) {
          assert.match(x.owner.owner, new RegExp(`pid ${running[1].pid} shard 1/3$`));
          assert.equal(x.owner.connected, true);
        }
      });

      await t.step(
        "kill -9 of one process and its restart: nothing lost, nothing doubled",
        async () => {
          await running[1].stop("SIGKILL");
          running[1] = start(1);
          await running[1].waitForOutput(/streaming from/);
          await waitFor(() => count(running[1].output, /streaming from/g) === of(1).length, {
            what: "the restarted shard streaming its share",
            context: () => running[1].output.slice(-3000),
          });
          await waitApplied(dst, tenants, 1000 + load.round, running);
        },
      );

      await t.step("a fourth process on a taken shard waits, then takes over", async () => {
        const fourth = start(1);
        running.push(fourth);
        const holder = running[1];
        await waitFor(
          () => count(fourth.output, /waiting: another kvsz process/g) === of(1).length,
          {
            what: "the fourth process waiting for each of its tenants",
            context: () => fourth.output.slice(-3000),
          },
        );
        assert.match(
          fourth.output,
          new RegExp(`another kvsz process \\(\\S+ pid ${holder.pid} shard 1/3\\)`),
          "the wait names the holder",
        );
        // Metrics and readiness say it waits.
        const url = await metricsUrl(fourth);
        const families = parseExposition(await (await fetch(`${url}/metrics`)).text());
        const waiting = families.get("kvsz_source_waiting")!.samples.filter((x) => x.value === 1);
        assert.deepEqual(
          waiting.map((x) => x.labels.sid).sort(),
          of(1).map((x) => x.sid).sort(),
          "kvsz_source_waiting is 1 for each tenant of the shard",
        );
        const ready = await fetch(`${url}/readyz`);
        const body = await ready.json();
        assert.equal(ready.status, 503);
        assert.deepEqual(
          [...new Set(body.sources.map((x: { state: string }) => x.state))],
          ["waiting"],
        );
        // The holder keeps applying while the fourth waits; the fourth writes nothing.
        await waitApplied(dst, tenants, 1000 + load.round, running);
        const owned = await owners(dst);
        for (const x of of(1)) assert.match(owned.get(x.sid)!, new RegExp(`pid ${holder.pid} `));
        assert.doesNotMatch(fourth.output, /streaming from|created slot|copying/);

        // The holder dies (a rolling restart's old pod): the fourth takes over.
        await holder.stop("SIGKILL");
        await waitFor(() => count(fourth.output, /streaming from/g) === of(1).length, {
          what: "the fourth process streaming the shard",
          context: () => fourth.output.slice(-3000),
        });
        const now = await owners(dst);
        for (const x of of(1)) assert.match(now.get(x.sid)!, new RegExp(`pid ${fourth.pid} `));
        await waitApplied(dst, tenants, 1000 + load.round, running);
      });

      await t.step(
        "a lost lock session stops the sources until they hold their locks again",
        async () => {
          const fourth = running[3];
          const [{ session_pid: pid }] = await dst.unsafe(
            `SELECT session_pid FROM kvsz.owners WHERE sid = $1`,
            [of(1)[0].sid],
          );
          const since = fourth.output.length;
          await dst.unsafe(`SELECT pg_terminate_backend($1)`, [pid]);
          await waitFor(
            () => count(fourth.output.slice(since), /streaming from/g) === of(1).length,
            {
              what: "every source of the shard streaming again",
              context: () => fourth.output.slice(since).slice(-3000),
            },
          );
          assert.match(fourth.output.slice(since), /lost the destination lock/);
          await waitApplied(dst, tenants, 1000 + load.round, running);
        },
      );

      await t.step("every tenant's rows arrived exactly once", async () => {
        await load.stop();
        await waitApplied(dst, tenants, 1000 + load.round, running);
        const counts = await destinationCounts(dst);
        for (const x of tenants) {
          const [{ n }] = await x.sql.unsafe(`SELECT count(*)::int AS n FROM ev`);
          assert.deepEqual(counts.get(x.sid), [n, n], `tenant ${x.sid}: every row once`);
        }
        for (const k of [running[0], running[2], running[3]]) {
          assert.equal(await k.stop(), 0, k.output.slice(-3000));
        }
      });
    } finally {
      await load.stop();
      await Promise.all(running.map((k) => k.stop("SIGKILL")));
    }
  },
});
