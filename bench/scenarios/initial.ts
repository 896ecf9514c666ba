/**
 * `initial`: from engine start until every table's copy is committed (kvsz:
 * its "copied <table>" log lines; native: every pg_subscription_rel in state
 * 's' or 'r') and until streaming has begun (kvsz: "streaming from"; native:
 * every pg_subscription_rel in state 'r'). The engine is stopped afterwards
 * with its slot kept, ready for the stream scenarios.
 */
import type { BenchContext } from "../context.ts";
import type { Engine } from "../engines.ts";
import { say } from "../util.ts";
import { startStreaming } from "./common.ts";

/**
 * Runs the initial copy of each engine in `order`, recording it when `record`
 * is set; returns each engine's seconds until every table was copied.
 */
export async function runInitial(
  ctx: BenchContext,
  order: Engine[],
  rows: number,
  record: boolean,
  scenario = "initial",
): Promise<Map<string, number | null>> {
  const seconds = new Map<string, number | null>();
  for (const e of order) {
    say(`  ${scenario}: ${e.label} copies ${rows.toLocaleString("en-US")} rows`);
    const { streaming, copied } = await startStreaming(ctx, e, scenario, record);
    say(
      `  ${scenario}: ${e.label} copied everything after ${copied?.toFixed(2) ?? "?"} s, ${
        streaming === null ? "hung before streaming" : `streaming after ${streaming.toFixed(2)} s`
      }`,
    );
    if (record) {
      ctx.rec.add(scenario, "copied_seconds", e.label, copied);
      ctx.rec.add(scenario, "rows_per_s", e.label, copied === null ? null : rows / copied);
      ctx.rec.add(scenario, "seconds", e.label, streaming);
    }
    seconds.set(e.label, copied);
    await e.stop();
  }
  return seconds;
}
