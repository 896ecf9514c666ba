/**
 * One round of the kvsz-vs-native scenarios on the main source (a pgbench
 * database): everything is dropped and recreated first, so rounds are
 * independent. The engines take turns in every phase, kvsz first in odd
 * rounds and native first in even ones.
 *
 *   initial → stream-small (one backlog, each engine catches up in turn; the
 *   history-mode kvsz replays the same backlog) → stream-live → latency →
 *   stream-large
 */
import { type BenchContext, SOURCE_DB } from "../context.ts";
import { dropSlotsAndPublications, type Engine, KvszEngine, NativeEngine } from "../engines.ts";
import { pgbenchInit } from "../pgbench.ts";
import { say } from "../util.ts";
import {
  destinationDdl,
  EXTRA_SOURCE_DDL,
  largeTable,
  PGBENCH_TABLES,
  pgbenchRowCount,
  replicatedTables,
  resetSourceTables,
  type TargetForm,
} from "../workload.ts";
import { runInitial } from "./initial.ts";
import { type CatchUpRun, runCatchUp, runLive } from "./stream_small.ts";
import { runLarge } from "./stream_large.ts";
import { measureMaxTps, runLatency } from "./latency.ts";
import { transformEngine } from "./transform.ts";

const NATIVE = "bench_native";
const NATIVE_TLS = "bench_native_tls";

/** Creates the main source database: pgbench tables at the configured scale plus the bench tables. */
export async function setupMainSource(ctx: BenchContext): Promise<number> {
  await ctx.source.recreateDatabase(SOURCE_DB);
  say(`setup: pgbench -i -s ${ctx.opts.scale} on the source`);
  await pgbenchInit(ctx.pgbench, ctx.source.url(SOURCE_DB), ctx.opts.scale);
  const src = ctx.source.sql(SOURCE_DB);
  for (const ddl of EXTRA_SOURCE_DDL) await src.unsafe(ddl);
  return await pgbenchRowCount(src);
}

/** Rate of the latency load: the flag, or half of pgbench's measured maximum. */
export async function latencyRate(ctx: BenchContext): Promise<number> {
  if (ctx.opts.latencyRate > 0) return ctx.opts.latencyRate;
  say("setup: measuring pgbench's maximum rate on this machine (5 s, no engine running)");
  const max = await measureMaxTps(ctx);
  say(`setup: pgbench maximum ${Math.round(max)} tps; the latency load runs at half of it`);
  return max / 2;
}

/** Runs one round of the main-source scenarios. */
export async function mainRound(
  ctx: BenchContext,
  round: number,
  sourceRows: number,
  rate: number,
): Promise<void> {
  const wants = (s: string) => ctx.opts.scenarios.has(s as never);
  const { source, dest } = ctx;
  const src = source.sql(SOURCE_DB);

  say(`round ${round}: resetting source slots and destination databases`);
  await dropSlotsAndPublications(source, [SOURCE_DB]);
  await resetSourceTables(src, true);
  await src.unsafe(
    `CREATE PUBLICATION ${NATIVE} FOR TABLE ${replicatedTables(largeTable("native")).join(", ")}`,
  );
  const makeDest = async (db: string, form: TargetForm, large: string | null) => {
    await dest.recreateDatabase(db);
    for (const ddl of destinationDdl(form, large)) await dest.sql(db).unsafe(ddl);
  };
  await makeDest("kvsz_dst", "clone", largeTable("kvsz"));
  await makeDest("native_dst", "clone", largeTable("native"));
  if (wants("history")) await makeDest("history_dst", "history", null);
  if (wants("transform")) await makeDest("transform_dst", "clone", null);
  await source.sql().unsafe("CHECKPOINT");
  await dest.sql().unsafe("CHECKPOINT");

  const kvsz = new KvszEngine({
    label: "kvsz",
    source,
    dest,
    destDb: "kvsz_dst",
    sources: [{
      database: SOURCE_DB,
      url: source.url(SOURCE_DB),
      sid: "1",
      tables: Object.fromEntries(replicatedTables(largeTable("kvsz")).map((t) => [t, "clone"])),
    }],
    workDir: ctx.workDir,
    apply: ctx.opts.apply,
    cpuProfDir: ctx.opts.cpuProfDir,
    logFile: ctx.kvszLog,
  });
  const native = new NativeEngine({
    source,
    sourceDb: SOURCE_DB,
    dest,
    destDb: "native_dst",
    name: NATIVE,
    streaming: ctx.opts.nativeStreaming,
  });
  const history = wants("history")
    ? new KvszEngine({
      label: "kvsz-history",
      source,
      dest,
      destDb: "history_dst",
      sources: [{
        database: SOURCE_DB,
        url: source.url(SOURCE_DB),
        sid: "h",
        tables: {
          ...Object.fromEntries(PGBENCH_TABLES.map((t) => [t.name, "history" as const])),
          bench_marker: "clone",
        },
      }],
      workDir: ctx.workDir,
      apply: ctx.opts.apply,
      cpuProfDir: ctx.opts.cpuProfDir,
      logFile: ctx.kvszLog,
    })
    : null;
  // stream-small-tls: the same catch-up with both engines reading the source over TLS.
  const tls = wants("stream-small-tls")
    ? {
      kvsz: new KvszEngine({
        label: "kvsz-tls",
        source,
        dest,
        destDb: "kvsz_tls_dst",
        sources: [{
          database: SOURCE_DB,
          url: source.tlsUrl(SOURCE_DB),
          sid: "tls",
          tables: Object.fromEntries(replicatedTables(null).map((t) => [t, "clone"])),
        }],
        workDir: ctx.workDir,
        apply: ctx.opts.apply,
        cpuProfDir: ctx.opts.cpuProfDir,
        logFile: ctx.kvszLog,
      }),
      native: new NativeEngine({
        source,
        sourceDb: SOURCE_DB,
        dest,
        destDb: "native_tls_dst",
        name: NATIVE_TLS,
        streaming: ctx.opts.nativeStreaming,
        url: source.tlsUrl(SOURCE_DB),
      }),
    }
    : null;
  if (tls) {
    await makeDest("kvsz_tls_dst", "clone", null);
    await makeDest("native_tls_dst", "clone", null);
    await src.unsafe(
      `CREATE PUBLICATION ${NATIVE_TLS} FOR TABLE ${replicatedTables(null).join(", ")}`,
    );
  }
  const transform = wants("transform") ? transformEngine(ctx, "transform_dst") : null;
  const order: Engine[] = round % 2 === 1 ? [kvsz, native] : [native, kvsz];
  say(`round ${round}: order ${order.map((e) => e.label).join(", ")}`);
  try {
    const copied = await runInitial(ctx, order, sourceRows, wants("initial"));
    if (transform) {
      const t = await runInitial(ctx, [transform], sourceRows, false, "transform (initial copy)");
      const [plain, seconds] = [copied.get("kvsz"), t.get(transform.label)];
      ctx.rec.add("transform", "copy_rows_per_s", "kvsz", seconds ? sourceRows / seconds : null);
      ctx.rec.add(
        "transform",
        "copy_over_plain",
        "kvsz",
        plain && seconds ? plain / seconds : null,
      );
    }
    if (history) await runInitial(ctx, [history], sourceRows, false, "history (initial copy)");
    const tlsOrder = tls ? (round % 2 === 1 ? [tls.kvsz, tls.native] : [tls.native, tls.kvsz]) : [];
    if (tls) await runInitial(ctx, tlsOrder, sourceRows, false, "TLS engines (initial copy)");

    if (wants("stream-small") || history || tls || transform) {
      const runs: CatchUpRun[] = [];
      if (wants("stream-small") || tls) {
        for (const e of order) {
          runs.push({ engine: e, scenario: "stream-small", reportAs: e.label, form: "clone" });
        }
      }
      for (const e of tlsOrder) {
        const reportAs = e === tls!.kvsz ? "kvsz" : "native";
        runs.push({ engine: e, scenario: "stream-small-tls", reportAs, form: "clone" });
      }
      if (history) {
        runs.push({ engine: history, scenario: "history", reportAs: "kvsz", form: "history" });
      }
      if (transform) {
        runs.push({
          engine: transform,
          scenario: "transform",
          reportAs: "kvsz",
          form: "transform",
        });
      }
      await runCatchUp(ctx, runs);
    }
    if (history) await history.dispose();
    if (wants("stream-live")) await runLive(ctx, order);
    if (wants("latency")) await runLatency(ctx, order, rate);
    if (wants("stream-large")) await runLarge(ctx, order);
  } finally {
    for (const e of [kvsz, native, history, transform, tls?.kvsz, tls?.native]) {
      await e?.dispose().catch((err) => say(`warning: ${e.label} cleanup: ${err.message}`));
    }
  }
}
