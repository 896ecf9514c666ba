/**
 * `latency`: a steady pgbench load at a fixed rate (half of the measured
 * maximum) while a tick row is inserted on the source every 10 ms. Latency of
 * a tick = the time the engine wrote it at the destination (a `dst_ts`
 * column defaulting to clock_timestamp(), just before that transaction's
 * commit) minus its source commit time (`pg_xact_commit_timestamp`). Both
 * servers share this machine's clock. The destination's own commit timestamp
 * cannot be used: native apply stamps the origin's commit time on it.
 */
import postgres from "postgres";
import { type BenchContext, SOURCE_DB } from "../context.ts";
import type { Engine } from "../engines.ts";
import { pgbench, pgbenchRate, tpcbArgs } from "../pgbench.ts";
import { quantile, say, sleep, waitUntil } from "../util.ts";
import { catchUp } from "./common.ts";

let tickSeq = 0;

/** Measures pgbench's maximum tpcb-like rate on this machine (no engine running). */
export async function measureMaxTps(ctx: BenchContext, seconds = 5): Promise<number> {
  const r = await pgbench(ctx.pgbench, ctx.source.url(SOURCE_DB), [
    ...tpcbArgs(ctx.opts.clients),
    "-T",
    String(seconds),
  ]);
  if (!r.tps) throw new Error(`could not read pgbench's tps:\n${r.output}`);
  return r.tps;
}

/** Runs the steady load under each engine in `order` at `rate` tps. */
export async function runLatency(ctx: BenchContext, order: Engine[], rate: number): Promise<void> {
  const src = ctx.source.sql(SOURCE_DB);
  for (const e of order) {
    await e.start();
    await catchUp(ctx, e, src);
    say(
      `  latency: ${e.label} running, pgbench --rate ${
        Math.round(rate)
      } for ${ctx.opts.latencySeconds} s, a tick every 10 ms`,
    );
    const ticker = startTicker(ctx.source.url(SOURCE_DB));
    const load = await pgbenchRate(
      ctx.pgbench,
      ctx.source.url(SOURCE_DB),
      rate,
      ctx.opts.latencySeconds,
      ctx.opts.clients,
    );
    const { first, last } = await ticker.stop();
    const dest = ctx.dest.sql(e.destDb);
    await waitUntil(async () => {
      const rows = await dest.unsafe(`SELECT 1 FROM bench_tick WHERE id = $1`, [last]);
      return rows.length > 0;
    }, { what: `${e.label}: last tick at the destination`, alive: () => e.checkAlive() });
    const srcTimes = new Map(
      (await src.unsafe(
        `SELECT id::int AS id, extract(epoch FROM pg_xact_commit_timestamp(xmin))::text AS t
           FROM bench_tick WHERE id BETWEEN $1 AND $2`,
        [first, last],
      )).map((r) => [r.id as number, Number(r.t)]),
    );
    const lat: number[] = [];
    for (
      const r of await dest.unsafe(
        `SELECT id::int AS id, extract(epoch FROM dst_ts)::text AS t
           FROM bench_tick WHERE id BETWEEN $1 AND $2`,
        [first, last],
      )
    ) {
      const s = srcTimes.get(r.id);
      if (s !== undefined) lat.push((Number(r.t) - s) * 1000);
    }
    lat.sort((a, b) => a - b);
    const p50 = quantile(lat, 0.5);
    const p99 = quantile(lat, 0.99);
    const max = lat[lat.length - 1];
    ctx.rec.add("latency", "p50_ms", e.label, p50);
    ctx.rec.add("latency", "p99_ms", e.label, p99);
    ctx.rec.add("latency", "max_ms", e.label, max);
    ctx.rec.add("latency", "tps", e.label, load.tps);
    say(
      `  latency: ${e.label} ${lat.length} ticks: p50 ${p50.toFixed(0)} ms, p99 ${
        p99.toFixed(0)
      } ms, max ${max.toFixed(0)} ms (pgbench ${Math.round(load.tps ?? 0)} tps)`,
    );
    await e.stop();
  }
}

/** Inserts a tick row every 10 ms on its own connection until stopped. */
function startTicker(url: string): { stop(): Promise<{ first: number; last: number }> } {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const first = tickSeq + 1;
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      await sql.unsafe(`INSERT INTO bench_tick (id) VALUES ($1)`, [++tickSeq]);
      await sleep(Math.max(0, 10 - (performance.now() - started)));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await sql.end({ timeout: 2 });
      return { first, last: tickSeq };
    },
  };
}
