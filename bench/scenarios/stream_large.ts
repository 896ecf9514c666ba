/**
 * `stream-large`: with the engine running and up to date, one source
 * transaction inserts N rows into a keyed table (each engine has its own
 * table, published only to it); timed from the commit until the destination
 * has it. For kvsz also its peak resident memory (VmHWM).
 */
import { type BenchContext, SOURCE_DB } from "../context.ts";
import { type Engine, KvszEngine } from "../engines.ts";
import { now, say } from "../util.ts";
import { insertMarker, largeTable } from "../workload.ts";
import { catchUp, waitMarker } from "./common.ts";

/** Runs the large transaction once per engine in `order`. */
export async function runLarge(ctx: BenchContext, order: Engine[]): Promise<void> {
  const src = ctx.source.sql(SOURCE_DB);
  const rows = ctx.opts.largeRows;
  for (const e of order) {
    await e.start();
    // The other engine's large transaction may still be in this slot: decode it untimed.
    await catchUp(ctx, e, src);
    const table = largeTable(e instanceof KvszEngine ? "kvsz" : "native");
    say(
      `  stream-large: ${e.label} running, one transaction inserts ${
        rows.toLocaleString("en-US")
      } rows`,
    );
    const t0 = now();
    await src.unsafe(
      `INSERT INTO ${table} SELECT g, g % 1000, md5(g::text) FROM generate_series(1, $1::int) g`,
      [rows],
    );
    const tCommit = now();
    const marker = await insertMarker(src, "after large transaction");
    await waitMarker(ctx, e, marker);
    const seconds = (now() - tCommit) / 1000;
    const [c] = await ctx.dest.sql(e.destDb).unsafe(`SELECT count(*)::int AS n FROM ${table}`);
    if (c.n !== rows) {
      throw new Error(`stream-large ${e.label}: ${c.n} rows at the destination, want ${rows}`);
    }
    const rss = e instanceof KvszEngine ? e.peakRssMb() : null;
    ctx.rec.add("stream-large", "seconds", e.label, seconds);
    ctx.rec.add("stream-large", "rows_per_s", e.label, rows / seconds);
    if (e instanceof KvszEngine) ctx.rec.add("stream-large", "peak_rss_mb", e.label, rss);
    say(
      `  stream-large: ${e.label} applied ${seconds.toFixed(2)} s after commit (insert took ${
        ((tCommit - t0) / 1000).toFixed(2)
      } s)${rss !== null ? `, kvsz peak RSS ${rss.toFixed(0)} MiB` : ""}`,
    );
    await e.stop();
  }
}
