/** `kvsz validate`: checks a config against the live databases, writing nothing. */
import { type Command, CONFIG_HELP, CONFIG_OPTION, EXIT_FAILURE, EXIT_OK } from "./command.ts";
import { findAndLoadConfig } from "../config/load.ts";
import type { Config } from "../config/types.ts";
import { preflightSource, type SourcePreflight } from "../preflight/source.ts";
import { serverBudgetChecks } from "../preflight/server_budget.ts";
import { type Limiter, limiter, mapBounded } from "../preflight/bounded.ts";
import { configuredSources, groupByServer, SOURCE_CONCURRENCY } from "../preflight/servers.ts";
import { preflightDestination, type SourceTables } from "../preflight/destination.ts";
import { formatChecks, GROUP_MIN, printJson } from "./output.ts";
import { type Check } from "../preflight/check.ts";
import { serverOf } from "../pg/conninfo.ts";
import { discoverOnce, discoveryChecks } from "./discovered.ts";
import { configForShard, type Shard } from "../engine/shard.ts";
import { checkGroup, type KnownSources, sourcesToCheck } from "../preflight/known_sources.ts";
import { expandAllTables } from "../preflight/all_tables.ts";

/** Replication connection checks that may run at once on one server (each takes a WAL sender). */
const REPLICATION_CHECKS_PER_SERVER = 2;

/**
 * Runs every check of `loaded` in a stable order: its `discover` blocks
 * (listed once: their tenants are checked as sources), the sources
 * {@link SOURCE_CONCURRENCY} at a time (with the destination's reads
 * alongside), then what each source server must have free for all its
 * sources (slots, WAL senders, connections), then the destination's.
 */
export async function validateConfig(
  loaded: Config,
  opts: {
    connectTimeout?: number;
    /** Check only this shard's sources. */
    shard?: Shard;
    /** Sources the destination knows: one per server and table list stands for them (known_sources.ts). */
    known?: KnownSources;
  } = {},
): Promise<Check[]> {
  const found = await discoverOnce(loaded, opts);
  const expanded = await expandAllTables(found.config, opts);
  const config = opts.shard ? configForShard(expanded.config, opts.shard) : expanded.config;
  const configured = configuredSources(config);
  const checked = opts.known ? sourcesToCheck(configured, opts.known) : configured;
  const limiters = new Map<string, Limiter>();
  const replicationLimiter = (url: string) => {
    const server = serverOf(url);
    if (!limiters.has(server)) limiters.set(server, limiter(REPLICATION_CHECKS_PER_SERVER));
    return limiters.get(server)!;
  };
  const sourceResults = mapBounded(checked, SOURCE_CONCURRENCY, async (c) => ({
    ...c,
    result: await preflightSource(c.db, c.source, {
      ...opts,
      replicationLimiter: replicationLimiter(c.source.url),
    }),
  }));
  const tables = sourceResults.then((results) => {
    const byDatabase: SourceTables = new Map();
    const byGroup = new Map<string, SourcePreflight["tables"]>();
    for (const r of results) {
      if (!r.result.reachable) continue;
      if (!byDatabase.has(r.db.database)) byDatabase.set(r.db.database, r.result.tables);
      const group = checkGroup(r);
      if (!byGroup.has(group)) byGroup.set(group, r.result.tables);
    }
    // An entry whose sources were all represented by another entry's: that one's tables.
    for (const c of configured) {
      const stand = byGroup.get(checkGroup(c));
      if (!byDatabase.has(c.db.database) && stand) byDatabase.set(c.db.database, stand);
    }
    return byDatabase;
  });
  // Once the source checks are done, none of their connections counts as in use.
  // Each server's budget counts all its sources, checked one by one or not.
  const budgets = sourceResults.then((results) => {
    const servers = [...groupByServer(configured, (c) => c.source.url)].flatMap(([server, cs]) => {
      const answered = results.find((r) => r.result.reachable && serverOf(r.source.url) === server);
      return answered ? [{ server, sources: cs, url: answered.source.url }] : [];
    });
    return mapBounded(
      servers,
      SOURCE_CONCURRENCY,
      (s) => serverBudgetChecks(s, { ...opts, sync: config.sync }),
    );
  });
  const [results, budget, destination] = await Promise.all([
    sourceResults,
    budgets,
    preflightDestination(config, tables, opts),
  ]);
  const unchecked = configured.length - checked.length;
  return [
    ...discoveryChecks(loaded, found),
    ...expanded.checks,
    ...results.flatMap((r) => r.result.checks),
    ...(unchecked > 0
      ? [{
        status: "ok" as const,
        check:
          `${unchecked} source(s) that streamed before: checked by their pipelines as they start`,
      }]
      : []),
    ...budget.flat(),
    ...destination,
  ];
}

export const validateCommand: Command = {
  name: "validate",
  summary: "check the config against the real databases and say what is wrong",
  help: `Usage: kvsz validate [--config FILE] [--json]

Loads the config, then checks every source and the destination without
writing anything, one line per check:

  ok   <what>
  WARN <what>: <problem> — fix: <how>     (works, with a caveat)
  FAIL <what>: <problem> — fix: <how>     (kvsz run would fail)

Sources (${SOURCE_CONCURRENCY} at a time): reachable, wal_level = logical, REPLICATION
privilege, a replication connection allowed by pg_hba.conf, the slot, the
publication, and each mapped table (exists, readable, replica identity).
Source servers (host:port), counted over all the sources each holds: free
replication slots (one per source without its slot, max_replication_slots),
WAL senders (one replication connection per source, max_wal_senders) and
connections (the initial copy's, at most sync.parallelism, plus one for
catalog reads; max_connections less the reserved ones), each against what
others use there; a FAIL names the server, the numbers and the setting.
Destination: reachable, schema kvsz, each target table (exists, privileges,
history columns, same column types as the source, replica identity key).

The same result on ${GROUP_MIN} or more sources of one server prints once, with
their number and the first few (<slot> and <database> stand for each one's
slot and database); --json lists every check.

Exit status: 0 when nothing FAILs, 1 when a check fails, 2 for a bad config.

${CONFIG_HELP}
      --json          print every check as a JSON array of {status, check, problem?,
                      fix?, source?: {database, sid, server, endpoint}}`,
  options: { ...CONFIG_OPTION, json: { type: "boolean" } },
  async run(flags) {
    const config = await findAndLoadConfig(flags.config as string | undefined);
    const checks = await validateConfig(config);
    const failed = checks.filter((c) => c.status === "FAIL").length;
    const warned = checks.filter((c) => c.status === "WARN").length;
    if (flags.json) {
      printJson(checks);
    } else {
      for (const line of formatChecks(checks)) console.log(line);
      const ok = checks.length - failed - warned;
      console.log(
        `\n${config.file}: ${ok} ok, ${warned} warning${warned === 1 ? "" : "s"}, ${failed} failed`,
      );
    }
    return failed > 0 ? EXIT_FAILURE : EXIT_OK;
  },
};
