/** `kvsz run`: streams every configured source into the destination until SIGTERM/SIGINT. */
import {
  type Command,
  CONFIG_HELP,
  CONFIG_OPTION,
  EXIT_FAILURE,
  EXIT_OK,
  shardOption,
} from "./command.ts";
import { findAndLoadConfig, loadConfig } from "../config/load.ts";
import type { Config } from "../config/types.ts";
import { configureLogging, log, registerSecrets } from "../log.ts";
import { installCrashGuards } from "../observe/crash_guard.ts";
import { Supervisor } from "../engine/supervisor.ts";
import { DiscoveryLoop } from "../engine/discovery_loop.ts";
import { type ConfiguredSource, configuredSources } from "../preflight/servers.ts";
import { Metrics } from "../observe/metrics.ts";
import { startHttpServer } from "../observe/http_server.ts";
import { startSlotPoller } from "../observe/slot_poller.ts";
import { validateConfig } from "./validate.ts";
import { readKnownSources } from "../preflight/known_sources.ts";
import { expandAllTables } from "../preflight/all_tables.ts";
import { formatChecks } from "./output.ts";
import { passwordsOf } from "../pg/redact.ts";
import { configForShard, describeShard, type Shard } from "../engine/shard.ts";
import { createAfterCopy, createBeforeCopy, type SchemaPlans } from "../schema/create.ts";
import { SchemaPlanner } from "../schema/planner.ts";
import { withDiscovered } from "./discovered.ts";
import { describeError } from "../pg/describe.ts";
import { SourceStatsBoard } from "../observe/source_stats.ts";
import type { MapStore } from "../api/map_store.ts";
import { configWithMap } from "../api/map_config.ts";
import { openMapStore, startApi, watchMapStore } from "./api_setup.ts";

/** Every secret-bearing URL of a config (for log masking). */
export function configUrls(config: Config): string[] {
  return [
    config.destination.url,
    ...config.databases.flatMap((d) => [
      ...d.urls.map((u) => u.url),
      ...(d.discover ? [d.discover.url] : []),
    ]),
  ];
}

export const runCommand: Command = {
  name: "run",
  summary: "stream every configured source into the destination until stopped",
  help: `Usage: kvsz run [--config FILE] [--skip-checks] [--shard I/N]

With destination.create_tables, first creates the targets the destination
lacks from the sources' catalogs (their indexes, constraints and triggers once
copied). Checks the config against the databases (as \`kvsz validate\` does), then for
each source: creates its publication and replication slot when missing, copies
every mapped table in the slot's snapshot, and streams changes into the
destination until SIGTERM or SIGINT. A first signal finishes the current
transaction, commits, acknowledges and exits 0; a second one exits at once
(still safe: progress is stored with the data, nothing is lost or doubled).

Several kvsz processes share the sources of one config with --shard: each
runs only the sources whose slot names hash to its shard (64-bit FNV-1a of
the slot name, mod N), and holds a lock per source in the destination, so
that two processes never apply one source: a second process on a taken
shard waits, and takes over when the first stops.

${CONFIG_HELP}
      --skip-checks   start without the validate checks (sources retry until reachable)
      --shard I/N     run shard I (0 to N-1) of N; I may be a StatefulSet pod
                      name ending in -I (kvsz-2/3). Default: $KVSZ_SHARD, else
                      every source`,
  options: { ...CONFIG_OPTION, "skip-checks": { type: "boolean" }, shard: { type: "string" } },
  async run(flags) {
    const shard = shardFlag(flags.shard as string | undefined);
    const file = await findAndLoadConfig(flags.config as string | undefined);
    registerSecrets(configUrls(file).flatMap(passwordsOf));
    configureLogging(file.log);
    // map_store: destination: the map is the destination's (the file's at the first start).
    const { config: loaded, store } = await openMapStore(file);
    registerSecrets(configUrls(loaded).flatMap(passwordsOf));
    installCrashGuards();
    const logger = log("run");
    // all_tables: read once here, so that the checks and the pipelines see the same tables.
    const expanded = await expandAllTables(loaded, { connectTimeout: 10 });
    const config = expanded.config;
    const expandFailed = expanded.checks.filter((c) => c.status === "FAIL");
    if (expandFailed.length > 0 && flags["skip-checks"]) {
      for (const line of formatChecks(expandFailed)) console.error(line);
      await store?.close();
      return EXIT_FAILURE;
    }
    let plans: SchemaPlans | undefined;
    if (config.destination.createTables && expandFailed.length === 0) {
      // Before the checks: they look for the targets this creates.
      try {
        // A discover entry's tables are read from its first tenant found now (else later).
        const discovering = config.databases.some((d) => d.discover);
        plans = await createBeforeCopy(discovering ? await withDiscovered(config) : config);
      } catch (e) {
        logger.error("create_tables: could not read or create the targets: {error}", {
          error: describeError(e),
        });
        await store?.close();
        return EXIT_FAILURE;
      }
    }
    if (!flags["skip-checks"]) {
      // The shard's sources only: no other source is touched.
      // Sources that streamed before are checked by their own pipelines (known_sources.ts).
      const known = await readKnownSources(config, { connectTimeout: 10 });
      // What create_tables could not create fails here, as it would without it.
      const checked = { ...config, destination: { ...config.destination, createTables: false } };
      const checks = [
        ...expanded.checks,
        ...await validateConfig(checked, { connectTimeout: 10, shard, known }),
      ];
      // An unreachable server is retried by the pipelines; anything else is a real mistake.
      const failed = checks.filter((c) => c.status === "FAIL" && !/reachable$/.test(c.check));
      for (const line of formatChecks(checks.filter((c) => c.status !== "ok"))) {
        console.error(line);
      }
      if (failed.length > 0) {
        logger.error("{count} check(s) failed; nothing was written. Fix them and start again.", {
          count: failed.length,
        });
        await store?.close();
        return EXIT_FAILURE;
      }
    }
    try {
      return await runPipelines(config, shard, { plans, store });
    } finally {
      await store?.close();
    }
  },
};

/** The shard of `--shard`, else of `$KVSZ_SHARD`, else none; a bad value is a UsageError naming it. */
function shardFlag(flag: string | undefined): Shard | undefined {
  const env = Deno.env.get("KVSZ_SHARD");
  const [text, origin] = flag !== undefined ? [flag, "--shard"] : [env, "KVSZ_SHARD"];
  return text === undefined || text === "" ? undefined : shardOption(text, origin);
}

/** A source's `[database, sid]` as text, to compare sets of sources. */
function sourceLabel({ db, source }: ConfiguredSource): string {
  return JSON.stringify([db.database, source.sid]);
}

/**
 * Runs one pipeline per source (URL or discovered database; of `shard` only,
 * when given) until a signal; SIGHUP reloads the config (and the map of
 * `store`, in database mode, which the API changes too). With `plans`
 * (`destination.create_tables`), an entry's indexes, constraints and triggers
 * are created once its sources are copied.
 */
export async function runPipelines(
  config: Config,
  shard?: Shard,
  { plans, store = null }: { plans?: SchemaPlans; store?: MapStore | null } = {},
): Promise<number> {
  const logger = log("run");
  const metrics = new Metrics({ perSourceTables: config.metrics.perSourceTables });
  // create_tables of entries changed by a reload or first discovered (see SchemaPlanner).
  const planner = new SchemaPlanner(plans ?? new Map(), config);
  const afterCopy = async (database: string) => {
    const plan = planner.plans.get(database);
    if (plan) await createAfterCopy(config.destination.url, database, plan);
  };
  const stats = new SourceStatsBoard();
  const supervisor = new Supervisor(
    (database, sid) => stats.wrap(database, sid, metrics.pipelineEvents(database, sid)),
    shard,
    { afterCopy },
  );
  let poller = startSlotPoller({ databases: [] }, metrics);
  // The sources running: the config's urls and the discovered ones, of the shard.
  let running = new Set<string>();
  let runningSources = config;
  const sources = new DiscoveryLoop(supervisor, {
    beforeApply: async (all) => {
      for (const database of await planner.update(all)) supervisor.afterCopyAgain(database);
    },
    onSources: async (all) => {
      const next = shard ? configForShard(all, shard) : all;
      runningSources = next;
      const keys = new Set(configuredSources(next).map((s) => sourceLabel(s)));
      for (const key of running) {
        if (keys.has(key)) continue;
        const [database, sid] = JSON.parse(key) as [string, string];
        await metrics.removeSource(database, sid);
        stats.remove(database, sid);
      }
      running = keys;
      await poller.stop();
      poller = startSlotPoller(next, metrics);
    },
  });
  let reloading = Promise.resolve();
  /** Reloads the config file (and the store's map): what SIGHUP and the API's changes run. */
  const reload = () => {
    const run = reloading.then(async () => {
      const read = store
        ? configWithMap(config.file, await store.read())
        : await loadConfig(config.file);
      const { config: next, checks } = await expandAllTables(read);
      const failed = checks.find((c) => c.status === "FAIL");
      if (failed) throw new Error(`${failed.check}: ${failed.problem}`);
      registerSecrets(configUrls(next).flatMap(passwordsOf));
      config = next;
      metrics.setPerSourceTables(config.metrics.perSourceTables);
      logger.info("reloading {file}{map}", {
        file: config.file,
        map: store ? " and the destination's map" : "",
      });
      await sources.apply(config);
    });
    reloading = run.catch(() => {});
    return run;
  };
  // Database mode: another instance's change of the shared map is applied here too.
  const watched = store ? watchMapStore(store, reload) : null;
  const http = startHttpServer(
    config.metrics.listen,
    metrics,
    () => metrics.readiness(config.metrics.readyMaxLagSeconds),
    {
      handler: startApi({
        config: () => config,
        sources: () => runningSources,
        metrics,
        stats,
        control: supervisor,
        store,
        reload: watched?.reload ?? reload,
      }),
    },
  );
  let signals = 0;
  let stopRequested: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (stopRequested = resolve));
  const onStop = (name: string) => () => {
    signals++;
    if (signals === 1) {
      logger.info("{signal}: finishing the current transactions, then stopping", {
        signal: name,
      });
      stopRequested();
    } else {
      logger.warn("{signal} again: stopping now (progress is safe)", { signal: name });
      Deno.exit(EXIT_FAILURE);
    }
  };
  const onReload = () => {
    logger.info("SIGHUP received");
    reload().catch((e) =>
      logger.error("SIGHUP: config not reloaded, keeping the running one: {error}", {
        error: (e as Error).message,
      })
    );
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", onStop("SIGTERM")],
    ["SIGINT", onStop("SIGINT")],
    ["SIGHUP", onReload],
  ];
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  try {
    const count = (c: Config) => c.databases.reduce((n, d) => n + d.urls.length, 0);
    const discovering = config.databases.filter((d) => d.discover).length;
    logger.info("starting {count} source(s){more}{of}", {
      count: count(shard ? configForShard(config, shard) : config),
      more: discovering ? ` and the tenants of ${discovering} discover block(s)` : "",
      of: shard ? `: shard ${describeShard(shard)} of the config's ${count(config)}` : "",
    });
    await sources.apply(config);
    await stopped;
    await reloading;
    await sources.stop();
    await supervisor.stop();
    return EXIT_OK;
  } finally {
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    watched?.stop();
    await poller.stop();
    await http?.shutdown();
  }
}
