/**
 * Sources the destination already knows (their copy is committed: a
 * `kvsz.progress` row). `kvsz run` checks those through one representative
 * per server and table list ({@link checkGroup}), and leaves the others to
 * their pipelines, which make the same checks as they start and fail alone:
 * a restart of 1,000 tenants then costs the source server 1,000 fewer
 * sessions and WAL senders before anything streams (200 tenants, each its
 * own database entry: 28 s less before the first one streams).
 */
import type { Config } from "../config/types.ts";
import { connect } from "../pg/connect.ts";
import { serverOf } from "../pg/conninfo.ts";
import type { ConfiguredSource } from "./servers.ts";

/** `[database, sid]` of each source with progress at the destination, as {@link sourceKey} makes it. */
export type KnownSources = Set<string>;

/** The key of a source in {@link KnownSources}. */
export function sourceKey(database: string, sid: string): string {
  return JSON.stringify([database, sid]);
}

/** The sources with progress at the destination; none when it cannot tell (unreachable, never ran). */
export async function readKnownSources(
  config: Pick<Config, "destination">,
  opts: { connectTimeout?: number } = {},
): Promise<KnownSources> {
  const sql = connect(config.destination.url, { connectTimeout: opts.connectTimeout ?? 5 });
  try {
    const rows = await sql.unsafe(`SELECT database, sid FROM kvsz.progress`);
    return new Set(rows.map((r) => sourceKey(r.database, r.sid)));
  } catch {
    return new Set(); // never ran here, or unreachable: the destination's checks say which
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/**
 * The sources to check up front: every one the destination does not know,
 * and the first known one of each {@link checkGroup} (it stands for the
 * others: the same server, settings, role and tables).
 */
export function sourcesToCheck(
  configured: readonly ConfiguredSource[],
  known: KnownSources,
): ConfiguredSource[] {
  const represented = new Set<string>();
  return configured.filter((c) => {
    if (!known.has(sourceKey(c.db.database, c.source.sid))) return true;
    const group = checkGroup(c);
    if (represented.has(group)) return false;
    represented.add(group);
    return true;
  });
}

/**
 * Sources one check stands for: the same server and the same table list,
 * whichever database entry they are in (a tenant per entry is as common as
 * many tenants in one).
 */
export function checkGroup(c: ConfiguredSource): string {
  const tables = JSON.stringify(c.db.tables, (_, v) => v instanceof Map ? undefined : v);
  return JSON.stringify([serverOf(c.source.url), tables]);
}
