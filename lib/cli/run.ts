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
import { Metrics } from "../observe/metrics.ts";
import { startHttpServer } from "../observe/http_server.ts";
import { startSlotPoller } from "../observe/slot_poller.ts";
import { validateConfig } from "./validate.ts";
import { formatChecks } from "./output.ts";
import { passwordsOf } from "../pg/redact.ts";
import { configForShard, describeShard, type Shard } from "../engine/shard.ts";

/** Every secret-bearing URL of a config (for log masking). */
export function configUrls(config: Config): string[] {
  return [config.destination.url, ...config.databases.flatMap((d) => d.urls.map((u) => u.url))];
}

export const runCommand: Command = {
  name: "run",
  summary: "stream every configured source into the destination until stopped",
  help: `Usage: kvsz run [--config FILE] [--skip-checks] [--shard I/N]

Checks the config against the databases (as \`kvsz validate\` does), then for
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
    const all = await findAndLoadConfig(flags.config as string | undefined);
    registerSecrets(configUrls(all).flatMap(passwordsOf));
    // The checks look at the shard's sources only (no other source is touched).
    const config = shard ? configForShard(all, shard) : all;
    configureLogging(config.log);
    installCrashGuards();
    const logger = log("run");
    if (!flags["skip-checks"]) {
      const checks = await validateConfig(config, { connectTimeout: 10 });
      // An unreachable server is retried by the pipelines; anything else is a real mistake.
      const failed = checks.filter((c) => c.status === "FAIL" && !/reachable$/.test(c.check));
      for (const line of formatChecks(checks.filter((c) => c.status !== "ok"))) {
        console.error(line);
      }
      if (failed.length > 0) {
        logger.error("{count} check(s) failed; nothing was written. Fix them and start again.", {
          count: failed.length,
        });
        return EXIT_FAILURE;
      }
    }
    return await runPipelines(all, shard);
  },
};

/** The shard of `--shard`, else of `$KVSZ_SHARD`, else none; a bad value is a UsageError naming it. */
function shardFlag(flag: string | undefined): Shard | undefined {
  const env = Deno.env.get("KVSZ_SHARD");
  const [text, origin] = flag !== undefined ? [flag, "--shard"] : [env, "KVSZ_SHARD"];
  return text === undefined || text === "" ? undefined : shardOption(text, origin);
}

/**
 * Runs one pipeline per source URL (of `shard` only, when given) until a
 * signal; SIGHUP reloads the config.
 */
export async function runPipelines(config: Config, shard?: Shard): Promise<number> {
  const logger = log("run");
  const metrics = new Metrics();
  const supervisor = new Supervisor(
    (database, sid) => metrics.pipelineEvents(database, sid),
    shard,
  );
  const mine = (c: Config) => shard ? configForShard(c, shard) : c;
  let poller = startSlotPoller(mine(config), metrics);
  const http = startHttpServer(
    config.metrics.listen,
    metrics,
    () => metrics.readiness(config.metrics.readyMaxLagSeconds),
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
  let reloading = Promise.resolve();
  const onReload = () => {
    reloading = reloading.then(async () => {
      try {
        const next = await loadConfig(config.file);
        registerSecrets(configUrls(next).flatMap(passwordsOf));
        const removed = config.databases.flatMap((d) =>
          d.urls.filter((u) =>
            !next.databases.some((n) =>
              n.database === d.database && n.urls.some((x) => x.sid === u.sid)
            )
          ).map((u) => [d.database, u.sid] as const)
        );
        for (const [database, sid] of removed) await metrics.removeSource(database, sid);
        config = next;
        await poller.stop();
        poller = startSlotPoller(mine(config), metrics);
        logger.info("SIGHUP: reloading {file}", { file: config.file });
        await supervisor.apply(config);
      } catch (e) {
        logger.error("SIGHUP: config not reloaded, keeping the running one: {error}", {
          error: (e as Error).message,
        });
      }
    });
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", onStop("SIGTERM")],
    ["SIGINT", onStop("SIGINT")],
    ["SIGHUP", onReload],
  ];
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  try {
    const sources = (c: Config) => c.databases.reduce((n, d) => n + d.urls.length, 0);
    const count = sources(mine(config));
    if (shard) {
      logger.info("starting {count} source(s): shard {shard} of the config's {all}", {
        count,
        shard: describeShard(shard),
        all: sources(config),
      });
    } else logger.info("starting {count} source(s)", { count });
    await supervisor.apply(config);
    await stopped;
    await reloading;
    await supervisor.stop();
    return EXIT_OK;
  } finally {
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
    await poller.stop();
    await http?.shutdown();
  }
}
