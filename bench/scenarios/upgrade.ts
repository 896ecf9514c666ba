/**
 * `upgrade` (issue 16, item 5): a PostgreSQL 12 database (pgbench's tables at
 * `--upgrade-scale` plus an enum, a domain, identity and generated columns, a
 * partitioned table, a foreign key, an unowned sequence, a view and a
 * trigger) carried into an empty PostgreSQL 18 by kvsz (`all_tables`,
 * `create_tables`), under a live client at `--upgrade-rate` transactions/s
 * that keeps writing through `kvsz switchover`.
 *
 * 1. Native reference: the same tables by a `FOR ALL TABLES` publication and
 *    a `copy_data` subscription into a destination database whose schema is
 *    made by kvsz's lib/schema; timed from the schema to the after-copy
 *    statements (bench/upgrade/native.ts). Dropped afterwards.
 * 2. kvsz into an empty destination database: timed from the start of
 *    `kvsz run` until it streams and has created the after-copy schema.
 * 3. The client writes to the source; `kvsz switchover --yes`; the client
 *    keeps trying the source until the command exits 0. `kvsz verify` (exit
 *    0 required) and the sequences are compared; then the client moves to the
 *    destination and writes there for a few seconds.
 * 4. Every write the source acknowledged is at the destination; every value
 *    the destination's identity and unowned sequence gave is above the
 *    source's. kvsz is stopped, one row changed at the destination, and
 *    `kvsz verify` must exit 1 naming its key.
 *
 * The client-seen write downtime is its last acknowledged write on the source
 * → the switchover's exit, plus its move → its first acknowledged write on
 * the destination: the pause for `kvsz verify` in between is the benchmark's,
 * not the upgrade's (it is recorded on its own).
 */
import type { BenchContext } from "../context.ts";
import { KvszEngine } from "../engines.ts";
import { pgbenchInit } from "../pgbench.ts";
import { startServer } from "../servers.ts";
import { fmt, now, say, sleep, waitUntil } from "../util.ts";
import { runKvsz } from "../upgrade/cli.ts";
import { LiveClient } from "../upgrade/client.ts";
import { nativeReference } from "../upgrade/native.ts";
import { createExtraSchema, sequenceValues, totalRows } from "../upgrade/schema.ts";
import { type UpgradeRun, upgradeTargetLines } from "../upgrade/targets.ts";

const SCENARIO = "upgrade";
const SOURCE_MAJOR = 12;
const DEST_MAJOR = 18;
const DB = "shop";
const NATIVE_DB = "native";
/** Seconds of live load on the source before the switchover, and on the destination after it. */
const LOAD_SECONDS = 10;
const AFTER_SECONDS = 3;
/** Client connections (the rate is shared between them). */
const CONNECTIONS = 4;
/** The row changed behind kvsz's back (a table the client never writes). */
const TAMPER = {
  table: "pgbench_tellers",
  key: "tid=7",
  sql: `UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 7`,
};
const SETTINGS = { shared_buffers: "256MB", max_wal_size: "4GB", checkpoint_timeout: "30min" };

/** Runs the upgrade scenario once, on servers of its own, stopped at its end. */
export async function upgradeScenario(ctx: BenchContext): Promise<void> {
  const rate = ctx.opts.upgradeRate;
  const add = (metric: string, engine: string, value: number | null) =>
    ctx.rec.add(SCENARIO, metric, engine, value);
  const run: UpgradeRun = {
    loadTps: null,
    clientDowntime: null,
    switchoverDowntime: null,
    lost: null,
    acked: null,
    sequencesBehind: null,
    verifyEqual: null,
    tamperFound: null,
    tamperKey: `${TAMPER.table} ${TAMPER.key}`,
    kvszCopySeconds: null,
    nativeCopySeconds: null,
  };
  const src = await startServer("upgrade source", SOURCE_MAJOR, SETTINGS);
  try {
    const dst = await startServer("upgrade destination", DEST_MAJOR, SETTINGS);
    try {
      await runSteps(ctx, src.server, dst.server, run, add);
    } finally {
      ctx.rec.targets.push(...upgradeTargetLines(run, rate));
      await dst.stop();
    }
  } finally {
    await src.stop();
  }
}

async function runSteps(
  ctx: BenchContext,
  source: Awaited<ReturnType<typeof startServer>>["server"],
  dest: Awaited<ReturnType<typeof startServer>>["server"],
  run: UpgradeRun,
  add: (metric: string, engine: string, value: number | null) => void,
): Promise<void> {
  const { upgradeScale: scale, upgradeRate: rate } = ctx.opts;
  await source.sql().unsafe(`CREATE DATABASE ${DB}`);
  say(`  upgrade: pgbench -i -s ${scale} on PostgreSQL ${SOURCE_MAJOR}, plus the extra schema`);
  await pgbenchInit(ctx.pgbench, source.url(DB), scale);
  await createExtraSchema(source.sql(DB), scale);
  const rows = await totalRows(source.sql(DB));
  ctx.rec.titles[SCENARIO] =
    `upgrade (PostgreSQL ${SOURCE_MAJOR} → ${DEST_MAJOR}, scale ${scale}, ${
      fmt(rows)
    } rows; client at ${rate} transactions/s; 1 run)`;

  // 1. Native reference.
  say(`  upgrade: native copies ${fmt(rows)} rows (schema by kvsz's lib/schema)`);
  const native = await nativeReference(source, DB, dest, NATIVE_DB, ctx.workDir);
  run.nativeCopySeconds = native.totalSeconds;
  add("copy_seconds", "native", native.totalSeconds);
  add("copied_seconds", "native", native.schemaSeconds + native.copySeconds);
  say(
    `  upgrade: native: ${native.tables} tables; schema ${
      native.schemaSeconds.toFixed(2)
    } s, copy ${native.copySeconds.toFixed(2)} s (all 'r'), after-copy schema ${
      native.afterCopySeconds.toFixed(2)
    } s: ${native.totalSeconds.toFixed(2)} s`,
  );

  // 2. kvsz into an empty database.
  await dest.recreateDatabase(DB);
  let schemaDoneAt: number | null = null;
  const kvsz = new KvszEngine({
    label: "kvsz",
    source,
    dest,
    destDb: DB,
    sources: [{ database: DB, url: source.url(DB), sid: DB, tables: {} }],
    workDir: ctx.workDir,
    logFile: ctx.kvszLog,
    cpuProfDir: ctx.opts.cpuProfDir,
    onLine: (line) => {
      if (line.includes("after the initial copy")) schemaDoneAt ??= now();
    },
    config: {
      destination: { url: dest.url(DB), create_tables: true },
      databases: [{ database: DB, urls: [{ url: source.url(DB), sid: DB }], all_tables: true }],
      ...(Object.keys(ctx.opts.apply).length ? { apply: ctx.opts.apply } : {}),
      metrics: { listen: "" },
      log: { level: "info", format: "json" },
    },
  });
  let client: LiveClient | null = null;
  try {
    say(`  upgrade: kvsz copies ${fmt(rows)} rows (all_tables, create_tables)`);
    await kvsz.start();
    await kvsz.waitStreaming(1_800_000, 120_000);
    await waitUntil(() => schemaDoneAt !== null, {
      what: `kvsz: "created … after the initial copy"`,
      timeoutMs: 600_000,
      alive: () => kvsz.checkAlive(),
    });
    const streaming = (kvsz.streamingAt!.time - kvsz.startedAt) / 1000;
    run.kvszCopySeconds = (schemaDoneAt! - kvsz.startedAt) / 1000;
    add("copy_seconds", "kvsz", run.kvszCopySeconds);
    add("copied_seconds", "kvsz", streaming);
    say(
      `  upgrade: kvsz streaming after ${streaming.toFixed(2)} s, after-copy schema done after ${
        run.kvszCopySeconds.toFixed(2)
      } s`,
    );

    // 3. The live load, the switchover, verify, the move.
    const [{ n: accounts }] = await source.sql(DB).unsafe(
      `SELECT count(*)::int AS n FROM pgbench_accounts`,
    );
    client = new LiveClient(source.url(DB), { rate, accounts, connections: CONNECTIONS });
    say(`  upgrade: client writes ${rate} transactions/s to the source for ${LOAD_SECONDS} s`);
    const loadStart = now();
    client.start();
    await sleep(LOAD_SECONDS * 1000);
    const loadAcks = client.acked.length;
    run.loadTps = loadAcks / ((now() - loadStart) / 1000);
    add("load_tps", "kvsz", run.loadTps);
    if (client.failures.length > 0) {
      throw new Error(`the client failed ${client.failures.length} times before the switchover`);
    }

    say(`  upgrade: kvsz switchover --yes (the client keeps writing)`);
    const sw = await runKvsz(["switchover", "--config", kvsz.configPath, "--yes"]);
    if (sw.code !== 0) throw new Error(`kvsz switchover exited ${sw.code}:\n${sw.output}`);
    const printed = sw.stdout.match(/write downtime (\d+\.\d+) s/);
    run.switchoverDowntime = printed ? Number(printed[1]) : null;
    add("switchover_downtime_seconds", "kvsz", run.switchoverDowntime);
    add("switchover_seconds", "kvsz", (sw.endedAt - sw.startedAt) / 1000);
    const sourceAcks = client.acked.filter((a) => a.side === "source");
    const lastSource = Math.max(...sourceAcks.map((a) => a.at));
    const refused = client.failures.filter((f) => f.side === "source");
    say(
      `  upgrade: switchover exited 0 after ${((sw.endedAt - sw.startedAt) / 1000).toFixed(2)} s, ${
        printed ? `printing write downtime ${printed[1]} s` : "printing no write downtime"
      }; the source refused ${refused.length} client attempts`,
    );

    say(`  upgrade: kvsz verify (the client still on the fenced source)`);
    const v = await runKvsz(["verify", "--config", kvsz.configPath]);
    run.verifyEqual = v.code === 0;
    add("verify_seconds", "kvsz", (v.endedAt - v.startedAt) / 1000);
    say(
      `  upgrade: verify exited ${v.code} after ${
        ((v.endedAt - v.startedAt) / 1000).toFixed(2)
      } s: ${v.stdout.trim().split("\n").pop()}`,
    );
    if (!run.verifyEqual) ctx.rec.notes.push(`upgrade: verify after the switchover:\n${v.output}`);
    const srcSeq = await sequenceValues(source.sql(DB));
    const dstSeq = await sequenceValues(dest.sql(DB));
    run.sequencesBehind = [...srcSeq].filter(([name, value]) =>
      value !== null && ((dstSeq.get(name) ?? null) === null || dstSeq.get(name)! < value)
    ).map(([name, value]) => `${name} ${dstSeq.get(name) ?? "missing"} < ${value}`);

    const moveAt = now();
    await client.moveTo(dest.url(DB));
    await waitUntil(() => client!.acked.some((a) => a.side === "destination"), {
      what: "the client's first write on the destination",
      timeoutMs: 60_000,
    });
    const firstDest = Math.min(
      ...client.acked.filter((a) => a.side === "destination").map((a) => a.at),
    );
    run.clientDowntime = (sw.endedAt - lastSource + firstDest - moveAt) / 1000;
    add("client_downtime_seconds", "kvsz", run.clientDowntime);
    add("verify_pause_seconds", "kvsz", (moveAt - sw.endedAt) / 1000);
    say(
      `  upgrade: client-seen write downtime ${
        run.clientDowntime.toFixed(2)
      } s (last source write → switchover exit ${
        ((sw.endedAt - lastSource) / 1000).toFixed(2)
      } s, move → first destination write ${((firstDest - moveAt) / 1000).toFixed(2)} s)`,
    );
    await sleep(AFTER_SECONDS * 1000);
    await client.stop();
    const destAcks = client.acked.filter((a) => a.side === "destination");
    client = null;

    // 4. Proof: nothing lost, sequences ahead, a changed row found.
    const d = dest.sql(DB);
    const orders = new Set(
      (await d.unsafe(`SELECT id::text FROM orders`)).map((r) => Number(r.id)),
    );
    const history = new Set(
      (await d.unsafe(`SELECT aid FROM pgbench_history`)).map((r) => Number(r.aid)),
    );
    run.acked = sourceAcks.length;
    run.lost = sourceAcks.filter((a) => !orders.has(a.order) || !history.has(a.history)).length;
    const usedOrder = Math.max(...sourceAcks.map((a) => a.order));
    const usedInvoice = Math.max(...sourceAcks.map((a) => a.invoice));
    const lowOrder = Math.min(...destAcks.map((a) => a.order));
    const lowInvoice = Math.min(...destAcks.map((a) => a.invoice));
    if (lowOrder <= usedOrder) {
      run.sequencesBehind.push(`orders.id gave ${lowOrder} ≤ ${usedOrder}`);
    }
    if (lowInvoice <= usedInvoice) {
      run.sequencesBehind.push(`invoice_numbers gave ${lowInvoice} ≤ ${usedInvoice}`);
    }
    add("acked_source_writes", "kvsz", sourceAcks.length);
    add("acked_destination_writes", "kvsz", destAcks.length);
    add("lost_writes", "kvsz", run.lost);
    say(
      `  upgrade: ${fmt(run.lost)} of ${
        fmt(sourceAcks.length)
      } acknowledged source writes missing at the destination; ${
        fmt(destAcks.length)
      } destination writes: orders.id from ${lowOrder} (source used up to ${usedOrder}), invoice from ${lowInvoice} (up to ${usedInvoice})${
        run.sequencesBehind.length ? `; BEHIND: ${run.sequencesBehind.join(", ")}` : ""
      }`,
    );

    await kvsz.stop();
    await d.unsafe(TAMPER.sql);
    const t = await runKvsz(["verify", "--config", kvsz.configPath]);
    const named = t.stdout.split("\n").some((l) => l.includes(TAMPER.key)) &&
      t.stdout.includes(TAMPER.table);
    run.tamperFound = t.code === 1 && named;
    say(
      `  upgrade: ${TAMPER.table} ${TAMPER.key} changed at the destination: verify exited ${t.code}, ${
        named ? "naming it" : "NOT naming it"
      }`,
    );
    if (!run.tamperFound) ctx.rec.notes.push(`upgrade: verify after the changed row:\n${t.output}`);
  } finally {
    await client?.stop();
    await kvsz.dispose();
  }
}
