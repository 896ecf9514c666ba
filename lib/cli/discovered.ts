/**
 * The discovered tenants for the one-shot subcommands (`status`, `drop`,
 * `validate`): the `discover` servers are listed once, and what could not be
 * listed or is refused is said on stderr or as checks.
 */
import type { Config } from "../config/types.ts";
import { type Discovered, TenantDiscovery } from "../engine/discovery.ts";
import type { Check } from "../preflight/check.ts";
import { connectionFix, connectionProblem } from "../pg/describe.ts";
import { serverOf } from "../pg/conninfo.ts";

/** Options of {@link discoverOnce}. */
export interface DiscoverOnceOptions {
  /** Seconds to wait for each listing connection (default 10). */
  connectTimeout?: number;
}

/** Lists every `discover` server of `config` once, quietly. */
export function discoverOnce(config: Config, opts: DiscoverOnceOptions = {}): Promise<Discovered> {
  if (!config.databases.some((db) => db.discover)) {
    return Promise.resolve({ config, refused: [], failed: [] });
  }
  return new TenantDiscovery(false).discover(config, { all: true, ...opts });
}

/**
 * The sources of `config` with its discovered tenants, for `status` and
 * `drop`; a server that cannot be listed and a refused database are said on
 * stderr (their sources are left out).
 */
export async function withDiscovered(config: Config): Promise<Config> {
  const found = await discoverOnce(config);
  for (const f of found.failed) {
    console.error(
      `WARN ${f.entry}: cannot list the databases of ${f.server}: ${f.error} (its tenants are left out)`,
    );
  }
  for (const r of found.refused) console.error(`WARN ${r.message}`);
  return found.config;
}

/**
 * The checks of a listing round: per `discover` block, its server reachable
 * and how many databases match (a WARN for none), and a WARN for each
 * database refused. A failed listing FAILs with a check named `… reachable`.
 */
export function discoveryChecks(config: Config, found: Discovered): Check[] {
  const checks: Check[] = [];
  config.databases.forEach((db, i) => {
    if (!db.discover) return;
    const entry = `databases[${i}].discover`;
    const server = serverOf(db.discover.url);
    const label = `discover ${entry} (${db.database} on ${server})`;
    const failure = found.failed.find((f) => f.entry === entry);
    if (failure) {
      checks.push({
        status: "FAIL",
        check: `${label} reachable`,
        problem: connectionProblem(failure.cause, failure.url),
        fix: connectionFix(failure.cause, failure.url),
      });
      return;
    }
    const count = found.config.databases[i].urls.filter((u) => u.discovered).length;
    checks.push(
      count > 0 ? { status: "ok", check: `${label}: ${count} database(s) match` } : {
        status: "WARN",
        check: `${label} matches`,
        problem: `no database of the server matches ${JSON.stringify(db.discover.pattern)}`,
        fix: `check the pattern (it must match the whole name) and the server; ` +
          `kvsz run picks up a matching database within ${db.discover.intervalSeconds} s`,
      },
    );
  });
  for (const r of found.refused) {
    checks.push({
      status: "WARN",
      check: `discover ${r.entry} database ${r.name}`,
      problem: `not streamed (the others are): ${r.problem}`,
      fix: r.fix,
    });
  }
  return checks;
}
