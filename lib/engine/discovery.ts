/**
 * Tenant discovery: the sources of a config are its `urls` and, for each
 * entry with a `discover` block, the databases of that server whose whole
 * name matches its pattern. A listing goes through one short-lived
 * connection per server URL and round. A discovered source whose slot name
 * (or target and sid) another source already has is refused, the sources
 * kept from earlier rounds and the `urls` winning: one warning, the others
 * go on. A server that cannot be listed keeps what it had.
 */
import { type Config, type DatabaseMapping, type SourceUrl, targetKey } from "../config/types.ts";
import { DEFAULT_DISCOVER } from "../config/defaults.ts";
import { tenantMatcher } from "../config/discover.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { parseConnInfo, serverOf } from "../pg/conninfo.ts";
import { databaseOf, withDatabase } from "../pg/url_database.ts";
import { describeError } from "../pg/describe.ts";
import { listServer, type ServerListing } from "../source/databases.ts";
import { log } from "../log.ts";

/** A discovered database not streamed, with why. */
export interface Refusal {
  /** `databases[i].discover`. */
  entry: string;
  sid: string;
  /** The database's name on its server. */
  name: string;
  /** Why, e.g. the slot name another source has. */
  problem: string;
  /** What to change. */
  fix: string;
  /** `database <name> found by <entry> is not streamed: <problem>; <fix>`. */
  message: string;
}

/** A server that could not be listed. */
export interface ListingFailure {
  /** `databases[i].discover`. */
  entry: string;
  /** `host:port`. */
  server: string;
  /** The URL listed through (password included; never print it). */
  url: string;
  /** What went wrong, without the password. */
  error: string;
  /** The error itself (e.g. for `connectionFix`). */
  cause: unknown;
}

/** The sources of a config after a listing round. */
export interface Discovered {
  /** The config with each entry's `urls` followed by the sources discovered for it. */
  config: Config;
  refused: Refusal[];
  failed: ListingFailure[];
}

/** Options of {@link TenantDiscovery.discover}. */
export interface DiscoverOptions {
  /** List every server now, whatever its interval (default false: only those due). */
  all?: boolean;
  /** Seconds to wait for each listing connection (default 10). */
  connectTimeout?: number;
}

/** A server's last good listing, and when it was taken. */
interface Listing extends ServerListing {
  atMs: number;
}

/**
 * Lists the servers of `discover` blocks and expands a config with what they
 * hold. Between rounds it remembers the last good listing of each server,
 * the discovered sources accepted (they keep their names against
 * newcomers) and what it has said, so that with `logging` each failure,
 * refusal and disappearance is logged once.
 */
export class TenantDiscovery {
  readonly #listings = new Map<string, Listing>();
  readonly #failing = new Set<string>();
  readonly #said = new Map<string, string>();
  /** Discovered sources of the last round, by {@link sourceKey}. */
  #accepted = new Map<string, { source: SourceUrl; database: string }>();
  readonly #log = log("discover");

  constructor(private readonly logging = true) {}

  /** The sources of `config`: its `urls` and what its `discover` blocks find now. */
  async discover(config: Config, opts: DiscoverOptions = {}): Promise<Discovered> {
    const now = performance.now();
    const failed: ListingFailure[] = [];
    const listings = new Map<string, Promise<Listing | undefined>>();
    config.databases.forEach((db, i) => {
      if (!db.discover) return;
      const url = listingUrl(db.discover.url);
      const due = (this.#listings.get(url)?.atMs ?? -Infinity) +
        db.discover.intervalSeconds * 1000 - 500;
      if (listings.has(url)) return;
      if (!opts.all && due > now) {
        listings.set(url, Promise.resolve(this.#listings.get(url)));
        return;
      }
      listings.set(url, this.#list(url, { entry: entryLabel(i), failed, opts }));
    });
    const byUrl = new Map<string, Listing | undefined>();
    for (const [url, listing] of listings) byUrl.set(url, await listing);
    const expanded = expandSources(config, {
      listing: (db) => byUrl.get(listingUrl(db.discover!.url)),
      kept: new Set(this.#accepted.keys()),
    });
    this.#report(expanded, byUrl);
    return { config: expanded.config, refused: expanded.refused, failed };
  }

  async #list(
    url: string,
    { entry, failed, opts }: { entry: string; failed: ListingFailure[]; opts: DiscoverOptions },
  ): Promise<Listing | undefined> {
    const server = serverOf(url);
    try {
      const found = await listServer(url, { connectTimeout: opts.connectTimeout });
      const listing = { ...found, atMs: performance.now() };
      this.#listings.set(url, listing);
      if (this.#failing.delete(url) && this.logging) {
        this.#log.info("listing the databases of {server} works again", { server });
      }
      return listing;
    } catch (e) {
      const error = describeError(e);
      failed.push({ entry, server, url, error, cause: e });
      if (!this.#failing.has(url) && this.logging) {
        this.#log.warn(
          "cannot list the databases of {server} ({entry}): {error}; its discovered sources stay as they are, listing again at the next interval",
          { server, entry, error },
        );
      }
      this.#failing.add(url);
      return this.#listings.get(url);
    }
  }

  /** Logs, once each, what changed: new sources, refusals, sources whose database is gone. */
  #report(expanded: Expansion, listings: Map<string, Listing | undefined>): void {
    const accepted = new Map<string, { source: SourceUrl; database: string }>();
    for (const db of expanded.config.databases) {
      for (const source of db.urls) {
        if (source.discovered) {
          accepted.set(sourceKey(db.database, source), { source, database: db.database });
        }
      }
    }
    const previous = this.#accepted;
    this.#accepted = accepted;
    if (!this.logging) return;
    const added = [...accepted.entries()].filter(([key]) => !previous.has(key));
    if (added.length > 10) {
      this.#log.info("discovered {count} databases", { count: added.length });
    } else {
      for (const [, { source, database }] of added) {
        this.#log.info("discovered database {name} on {server}: source {database} sid {sid}", {
          name: source.discovered!.name,
          server: serverOf(source.url),
          database,
          sid: source.sid,
        });
      }
    }
    for (const [key, { source, database }] of previous) {
      if (accepted.has(key)) continue;
      const listing = listings.get(source.discovered!.serverUrl);
      if (listing === undefined || listing.databases.includes(source.discovered!.name)) continue;
      this.#log.warn(
        "database {name} is gone from {server} (dropped, or no longer accepting connections): " +
          "stopping source {database} sid {sid}; its rows stay in the destination",
        {
          name: source.discovered!.name,
          server: serverOf(source.url),
          database,
          sid: source.sid,
        },
      );
    }
    const said = new Map<string, string>();
    for (const r of expanded.refused) {
      const key = `${r.entry}\n${r.name}`;
      said.set(key, r.message);
      if (this.#said.get(key) !== r.message) this.#log.warn("{message}", { message: r.message });
    }
    this.#said.clear();
    for (const [k, v] of said) this.#said.set(k, v);
  }
}

/** The sources a config and its listings give (see {@link expandSources}). */
export interface Expansion {
  config: Config;
  refused: Refusal[];
}

/**
 * `config` with each `discover` entry's `urls` followed by the databases its
 * server lists (undefined: not listed) that match, sorted by name. A
 * database one of the entry's `urls` names on the same server is left to
 * it. Every explicit source claims its names first, then the discovered
 * ones that hold their slot already or are in `kept` (accepted earlier),
 * then the new ones: a newcomer whose slot name or (target, sid) is taken,
 * or whose sid is empty, is refused.
 */
export function expandSources(
  config: Config,
  { listing, kept }: {
    /** What an entry's server holds. */
    listing: (db: DatabaseMapping) => ServerListing | undefined;
    /** {@link sourceKey}s of the discovered sources accepted before. */
    kept: ReadonlySet<string>;
  },
): Expansion {
  const claims = new Claims();
  config.databases.forEach((db, i) => {
    db.urls.forEach((source, j) => {
      claims.claim(db, i, { sid: source.sid, owner: `databases[${i}].urls[${j}]` });
    });
  });
  const candidates: {
    db: DatabaseMapping;
    entry: number;
    name: string;
    sid: string;
    incumbent: boolean;
  }[] = [];
  config.databases.forEach((db, entry) => {
    if (!db.discover) return;
    const matcher = tenantMatcher(db.discover.pattern, db.discover.sid);
    const explicit = new Set(db.urls.map((u) => serverDatabase(u.url)));
    const server = serverOf(db.discover.url);
    const found = listing(db);
    for (const name of found?.databases ?? []) {
      const sid = matcher.sidOf(name);
      if (sid === null || explicit.has(`${server}/${name}`)) continue;
      const incumbent = kept.has(`${db.database}\n${sid}\n${name}`) ||
        found!.slots.get(kvszObjectName(db.database, sid)) === name;
      candidates.push({ db, entry, name, sid, incumbent });
    }
  });
  const rank = (c: (typeof candidates)[number]) => c.incumbent ? 0 : 1;
  candidates.sort((a, b) =>
    rank(a) - rank(b) || a.entry - b.entry || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
  const found = new Map<DatabaseMapping, SourceUrl[]>();
  const refused: Refusal[] = [];
  for (const { db, entry, name, sid } of candidates) {
    const label = entryLabel(entry);
    const what = `database ${name} found by ${label}`;
    const taken = sid.trim() === ""
      ? {
        problem: `the sid template ${JSON.stringify(db.discover!.sid)} gives it an empty sid`,
        fix: "make the pattern's groups match in every name it accepts",
      }
      : claims.claim(db, entry, { sid, owner: `${what} (sid ${JSON.stringify(sid)})` });
    if (taken !== null) {
      const message = `${what} is not streamed: ${taken.problem}; ${taken.fix}`;
      refused.push({ entry: label, sid, name, ...taken, message });
      continue;
    }
    const url = withDatabase(db.discover!.url, name);
    const list = found.get(db) ?? [];
    list.push({
      url,
      sid,
      failover: false,
      discovered: { name, serverUrl: listingUrl(db.discover!.url) },
    });
    found.set(db, list);
  }
  const databases = config.databases.map((db) => {
    const more = found.get(db);
    if (!more) return db;
    more.sort((a, b) => (a.discovered!.name < b.discovered!.name ? -1 : 1));
    return { ...db, urls: [...db.urls, ...more] };
  });
  return { config: { ...config, databases }, refused };
}

/** What identifies a discovered source across rounds: its database entry, sid and database name. */
export function sourceKey(database: string, source: SourceUrl): string {
  return `${database}\n${source.sid}\n${source.discovered?.name ?? ""}`;
}

/** The URL a `discover` block's server is listed through: its database, else `postgres`. */
export function listingUrl(discoverUrl: string): string {
  return withDatabase(discoverUrl, databaseOf(discoverUrl, DEFAULT_DISCOVER.database));
}

/** The slot names and (target, sid) pairs taken, with who took them. */
class Claims {
  readonly #names = new Map<string, string>();
  readonly #targets = new Map<string, { entry: number; owner: string }>();

  /** Takes the names of source `sid` of `db` for `owner`; a problem when another has one. */
  claim(
    db: DatabaseMapping,
    entry: number,
    { sid, owner }: { sid: string; owner: string },
  ): { problem: string; fix: string } | null {
    const name = kvszObjectName(db.database, sid);
    const nameOwner = this.#names.get(name);
    if (nameOwner !== undefined) {
      return {
        problem: `database "${db.database}" sid "${sid}" would use the slot, publication and ` +
          `replication origin named ${name}, which are ${nameOwner}'s`,
        fix: "make the sid template give it another sid, or narrow the pattern",
      };
    }
    const keys = db.tables.map((t) => JSON.stringify([targetKey(t), sid]));
    for (const [i, key] of keys.entries()) {
      const other = this.#targets.get(key);
      if (other !== undefined && other.entry !== entry) {
        const target = targetKey(db.tables[i]);
        return {
          problem: `target "${target}" with sid "${sid}" is already fed by ${other.owner}`,
          fix: "give the sources different sids or targets",
        };
      }
    }
    this.#names.set(name, owner);
    for (const key of keys) this.#targets.set(key, { entry, owner });
    return null;
  }
}

/** `databases[i].discover`, as a problem of the entry names it. */
function entryLabel(entry: number): string {
  return `databases[${entry}].discover`;
}

/** `host:port/database` of a source URL (its database as the server names it). */
function serverDatabase(url: string): string {
  try {
    return `${serverOf(url)}/${parseConnInfo(url).dbname ?? ""}`;
  } catch {
    return url;
  }
}
