/**
 * `transform`: kvsz with a `filter` and two `set` expressions on
 * pgbench_accounts (the other tables plain), timed on the initial copy and
 * on the stream-small catch-up, each against plain kvsz's run of the same
 * round (issue 17's targets: copy ≥ 0.7×, catch-up ≥ 0.85× plain).
 */
import type { Sql } from "../../lib/pg/connect.ts";
import { type BenchContext, SOURCE_DB } from "../context.ts";
import { KvszEngine } from "../engines.ts";
import { replicatedTables } from "../workload.ts";

/** The accounts mapping: 1 row in 100 filtered out, two computed columns, aid passed as key. */
export const ACCOUNTS_TRANSFORM = {
  filter: "aid % 100 != 0",
  set: { abalance: "abalance * 2", filler: 'filler.trim() + "/" + string(bid)' },
};

/** The kvsz engine with the transform, writing into `destDb` (clone tables). */
export function transformEngine(ctx: BenchContext, destDb: string): KvszEngine {
  const tables: Record<string, "clone" | Record<string, unknown>> = {};
  for (const t of replicatedTables(null)) tables[t] = "clone";
  tables.pgbench_accounts = ACCOUNTS_TRANSFORM;
  return new KvszEngine({
    label: "kvsz-transform",
    source: ctx.source,
    dest: ctx.dest,
    destDb,
    sources: [{ database: SOURCE_DB, url: ctx.source.url(SOURCE_DB), sid: "x", tables }],
    workDir: ctx.workDir,
    apply: ctx.opts.apply,
    cpuProfDir: ctx.opts.cpuProfDir,
    logFile: ctx.kvszLog,
  });
}

/** Throws unless the target's accounts are the source's, filtered and transformed (count and sum). */
export async function verifyTransform(source: Sql, dest: Sql, what: string): Promise<void> {
  const [a] = await source.unsafe(
    `SELECT count(*) || '/' || coalesce(sum(abalance * 2), 0) AS d
       FROM pgbench_accounts WHERE aid % 100 <> 0`,
  );
  const [b] = await dest.unsafe(
    `SELECT count(*) || '/' || coalesce(sum(abalance), 0) AS d FROM pgbench_accounts`,
  );
  if (a.d !== b.d) {
    throw new Error(`${what}: accounts differ: source (transformed) ${a.d}, destination ${b.d}`);
  }
}
