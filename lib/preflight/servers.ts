/**
 * Source servers: the sources of a config grouped by the PostgreSQL server
 * (host and port) they live on. Slots, WAL senders and connections are
 * limited per server, and `pg_replication_slots` shows every slot of it.
 */
import type { Config, DatabaseMapping, SourceUrl } from "../config/types.ts";
import { serverOf } from "../pg/conninfo.ts";

/** At most this many sources are read at once by `status` and `validate`. */
export const SOURCE_CONCURRENCY = 16;

/** One configured source with its database mapping. */
export interface ConfiguredSource {
  db: DatabaseMapping;
  source: SourceUrl;
}

/** Every configured source, in config order. */
export function configuredSources(config: Pick<Config, "databases">): ConfiguredSource[] {
  return config.databases.flatMap((db) => db.urls.map((source) => ({ db, source })));
}

/** `items` grouped by {@link serverOf} their URL, servers in order of first appearance. */
export function groupByServer<T>(
  items: readonly T[],
  urlOf: (item: T) => string,
): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const server = serverOf(urlOf(item));
    const group = out.get(server);
    if (group) group.push(item);
    else out.set(server, [item]);
  }
  return out;
}
