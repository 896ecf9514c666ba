/**
 * `fan-in` (kvsz only; native logical replication cannot consolidate several
 * sources into one table): N source databases on the source server, each
 * with its own pgbench tables, stream into one destination whose targets
 * carry `sid`. With kvsz stopped, every source gets its share of the
 * tpcb-like backlog at once; then kvsz is started and timed until every
 * source's marker is applied.
 */
import type { BenchContext } from "../context.ts";
import { dropSlotsAndPublications, KvszEngine, waitConfirmed } from "../engines.ts";
import { pgbenchInit, pgbenchLoad } from "../pgbench.ts";
import { now, say } from "../util.ts";
import {
  destinationDdl,
  EXTRA_SOURCE_DDL,
  insertMarkerId,
  nextMarkerId,
  PGBENCH_TABLES,
} from "../workload.ts";
import { startStreaming, verify, waitMarker } from "./common.ts";

const DEST_DB = "fanin_dst";

function fanDbs(ctx: BenchContext): string[] {
  return Array.from({ length: ctx.opts.fanInSources }, (_, i) => `fan_${i + 1}`);
}

/** Creates the fan-in source databases (pgbench at the fan-in scale). */
export async function setupFanIn(ctx: BenchContext): Promise<void> {
  const dbs = fanDbs(ctx);
  say(`setup: ${dbs.length} fan-in source databases, pgbench -i -s ${ctx.opts.fanInScale} each`);
  await Promise.all(dbs.map(async (db) => {
    await ctx.source.recreateDatabase(db);
    await pgbenchInit(ctx.pgbench, ctx.source.url(db), ctx.opts.fanInScale);
    for (const ddl of EXTRA_SOURCE_DDL) await ctx.source.sql(db).unsafe(ddl);
  }));
}

/** One fan-in round. */
export async function fanInRound(ctx: BenchContext, round: number): Promise<void> {
  const { source, dest } = ctx;
  const dbs = fanDbs(ctx);
  say(`fan-in round ${round}: resetting`);
  await dropSlotsAndPublications(source, dbs);
  for (const db of dbs) {
    await source.sql(db).unsafe(`TRUNCATE pgbench_history, bench_marker`);
    await source.sql(db).unsafe(`VACUUM ANALYZE`);
    await source.close(db);
  }
  await dest.recreateDatabase(DEST_DB);
  for (const ddl of destinationDdl("sid", null)) await dest.sql(DEST_DB).unsafe(ddl);
  const tables = Object.fromEntries(
    [...PGBENCH_TABLES.map((t) => t.name), "bench_marker"].map((t) => [t, "clone" as const]),
  );
  const kvsz = new KvszEngine({
    label: "kvsz",
    source,
    dest,
    destDb: DEST_DB,
    sources: dbs.map((db, i) => ({ database: db, url: source.url(db), sid: `f${i + 1}`, tables })),
    workDir: ctx.workDir,
    apply: ctx.opts.apply,
    cpuProfDir: ctx.opts.cpuProfDir,
    logFile: ctx.kvszLog,
  });
  try {
    say(`  fan-in: kvsz copies ${dbs.length} sources`);
    await startStreaming(ctx, kvsz, "fan-in initial copy", false);
    await kvsz.stop();
    const perSource = Math.max(1, Math.round(ctx.opts.fanInTransactions / dbs.length));
    say(
      `  fan-in: backlog of ${
        perSource.toLocaleString("en-US")
      } transactions in each of ${dbs.length} sources (kvsz stopped)`,
    );
    const loads = await Promise.all(
      dbs.map((db) => pgbenchLoad(ctx.pgbench, source.url(db), perSource, 1)),
    );
    const changes = loads.reduce((n, l) => n + (l.transactions ?? perSource), 0) * 4;
    const marker = nextMarkerId();
    for (const db of dbs) await insertMarkerId(source.sql(db), marker, "end of fan-in backlog");
    const lsnEnd = await source.currentLsn();
    const t0 = now();
    await kvsz.start();
    await waitMarker(ctx, kvsz, marker, dbs.length);
    const seconds = (now() - t0) / 1000;
    let cpu = await kvsz.cpuSeconds();
    if (cpu !== null && kvsz.streamingAt?.cpu != null) cpu -= kvsz.streamingAt.cpu;
    await waitConfirmed(source, kvsz.slots, lsnEnd);
    for (const [i, db] of dbs.entries()) {
      await verify(source.sql(db), dest.sql(DEST_DB), "sid", `fan-in ${db}`, `f${i + 1}`);
    }
    ctx.rec.add("fan-in", "seconds", "kvsz", seconds);
    ctx.rec.add("fan-in", "changes_per_s", "kvsz", changes / seconds);
    ctx.rec.add("fan-in", "engine_cpu_per_m", "kvsz", cpu === null ? null : (cpu / changes) * 1e6);
    say(
      `  fan-in: kvsz applied ${
        changes.toLocaleString("en-US")
      } changes from ${dbs.length} sources in ${seconds.toFixed(2)} s = ${
        Math.round(changes / seconds).toLocaleString("en-US")
      } rows/s; rows equal per sid`,
    );
    await kvsz.stop();
  } finally {
    await kvsz.dispose().catch((e) => say(`warning: fan-in cleanup: ${e.message}`));
    for (const db of dbs) await source.close(db);
  }
}
