/**
 * `kvsz run`'s API: database mode's map store (opened, and at first start
 * filled from the config file's map) and the handler the metrics listener
 * serves the API with, wired to the running process.
 */
import type { Config } from "../config/types.ts";
import { log } from "../log.ts";
import { MapStore } from "../api/map_store.ts";
import { configWithMap, fileMapRows } from "../api/map_config.ts";
import { rowsOfConfig } from "../api/map_rows.ts";
import { ApiAuth } from "../api/auth.ts";
import type { ApiContext, SourceControl } from "../api/context.ts";
import { apiHandler } from "../api/router.ts";
import { parseListen } from "../observe/http_server.ts";
import type { Metrics } from "../observe/metrics.ts";
import type { SourceStatsBoard } from "../observe/source_stats.ts";
import { dropSources } from "./drop.ts";

/**
 * With `map_store: destination`, the store and `config` with the store's map
 * (the file's, imported at the first start); else no store and `config`.
 */
export async function openMapStore(
  config: Config,
): Promise<{ config: Config; store: MapStore | null }> {
  if (config.mapStore !== "destination") return { config, store: null };
  const store = await MapStore.open(config.destination.url);
  try {
    if (await store.importOnce(fileMapRows(config.file), config.file)) {
      log("api").info("map_store: imported the map of {file} into the destination's kvsz schema", {
        file: config.file,
      });
    }
    return { config: configWithMap(config.file, await store.read()), store };
  } catch (e) {
    await store.close();
    throw e;
  }
}

/** What the API needs of `kvsz run`. */
export interface ApiParts {
  config: () => Config;
  sources: () => Config;
  metrics: Metrics;
  stats: SourceStatsBoard;
  control: SourceControl;
  store: MapStore | null;
  reload: () => Promise<void>;
}

/**
 * The API's handler for the metrics listener; undefined when the listener is
 * off. Logs why when a non-loopback listener has no token (no API then).
 */
export function startApi(parts: ApiParts): ((r: Request) => Promise<Response | null>) | undefined {
  const config = parts.config();
  if (config.metrics.listen === "") return undefined;
  const auth = new ApiAuth(config.api, parseListen(config.metrics.listen).hostname);
  const logger = log("api");
  if (auth.disabledReason) {
    logger.warn("API not started: {reason}; /metrics, /healthz and /readyz are served", {
      reason: auth.disabledReason,
    });
  } else {
    logger.info("API on /api ({mode} mode{reads})", {
      mode: parts.store ? "database" : "declarative",
      reads: auth.openReads ? ", reads without token" : "",
    });
  }
  const ctx: ApiContext = {
    config: parts.config,
    sources: parts.sources,
    rows: async () =>
      parts.store ? await parts.store.read() : rowsOfConfig(parts.config().databases),
    readiness: () => parts.metrics.readiness(parts.config().metrics.readyMaxLagSeconds),
    retainedWal: async () => {
      const { values } = await parts.metrics.retainedWal.get();
      return new Map(values.map((v) => [`${v.labels.database}\u0000${v.labels.sid}`, v.value]));
    },
    stats: parts.stats,
    control: parts.control,
    dropSource: async (database, sid) => {
      const lines: string[] = [];
      const code = await dropSources(parts.sources(), {
        database,
        sid,
        print: (line) => lines.push(line.replace(/\s+/g, " ").trim()),
      });
      return { ok: code === 0, lines };
    },
    store: parts.store,
    reload: parts.reload,
  };
  return apiHandler(ctx, auth);
}

/** Seconds between looks at the store for another instance's change. */
export const MAP_STORE_POLL_SECONDS = 10;

/**
 * Database mode shared by several instances: every
 * {@link MAP_STORE_POLL_SECONDS}, applies a change another instance made
 * (the change log grew). Returns the reload this instance's own changes go
 * through (they are not applied twice) and a stop.
 */
export function watchMapStore(
  store: MapStore,
  reload: () => Promise<void>,
): { reload: () => Promise<void>; stop: () => void } {
  let seen: number | null = null;
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const last = await store.lastChange();
      const changed = seen !== null && last > seen;
      seen = last;
      if (changed) {
        log("api").info("map_store: the map changed in the destination; applying it");
        await reload();
      }
    } catch (e) {
      log("api").warn("map_store: cannot look for changes: {error}", {
        error: (e as Error).message,
      });
    } finally {
      busy = false;
    }
  };
  void tick();
  const timer = setInterval(tick, MAP_STORE_POLL_SECONDS * 1000);
  return {
    reload: async () => {
      seen = await store.lastChange();
      await reload();
    },
    stop: () => clearInterval(timer),
  };
}
