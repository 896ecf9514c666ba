/**
 * What every source of a kvsz process shares on the destination, so that its
 * connections there are bounded by configuration, not by the number of
 * sources: the writers (`apply.workers`), one connection for kvsz's catalog
 * and progress reads and schema work, the initial copy's turns
 * (`sync.parallelism`, one connection each), and the session watchdog (one
 * probe at a time). At most `apply.workers + sync.parallelism + 2`. The
 * catalog connection also holds the process's source locks (source_locks.ts).
 */
import type { Config } from "../config/types.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { log } from "../log.ts";
import { WriterPool } from "../apply/writer_pool.ts";
import { SessionWatchdog } from "../apply/session_watchdog.ts";
import { IdlePositions } from "../apply/idle_positions.ts";
import { GroupCommits } from "../apply/group_commit.ts";
import { CopySlots } from "./copy_slots.ts";
import { SourceLocks } from "./source_locks.ts";
import { CatalogReads } from "./catalog_reads.ts";

/** The destination connections and turns every source shares (see the module comment). */
export class SharedDestination {
  #catalogReads: CatalogReads;
  readonly #connectCatalog: () => Sql;
  readonly writers: WriterPool;
  readonly copySlots: CopySlots;
  /** Ready commits of several sources in one destination transaction. */
  readonly groupCommits: GroupCommits;
  /** Every source's idle positions, recorded together. */
  readonly idlePositions: IdlePositions;
  readonly watchdog: SessionWatchdog;
  /** The sources' destination locks, held on the catalog connection. */
  readonly locks: SourceLocks;
  /** Who this process is, as `kvsz.owners` records it: host, process id, shard. */
  readonly instance: string;
  /** The settings these were made with (see {@link sharedKey}). */
  readonly key: string;

  constructor(config: Config, { shard }: { /** `I/N` when sharded. */ shard?: string } = {}) {
    const url = config.destination.url;
    const params = destinationParams(config);
    this.key = sharedKey(config);
    this.#connectCatalog = () => connect(url, { max: 1, params });
    this.#catalogReads = new CatalogReads(this.#connectCatalog(), log("run"));
    this.writers = new WriterPool({ url, size: config.apply.workers, params, log: log("apply") });
    this.groupCommits = new GroupCommits(this.writers);
    this.idlePositions = new IdlePositions(this.writers);
    this.copySlots = new CopySlots(config.sync.parallelism);
    this.watchdog = new SessionWatchdog(url, {
      checkSeconds: config.timeouts.destinationCheckSeconds,
    });
    this.locks = new SourceLocks({
      catalog: () => this.catalog,
      renew: (stale) => this.renewCatalog(stale),
      watch: (poll, session) => this.watchdog.watch(poll, () => session, log("run")),
    });
    this.instance = `${Deno.hostname()} pid ${Deno.pid}${shard ? ` shard ${shard}` : ""}`;
  }

  /** kvsz's catalog, progress reads and schema work: one connection, statements queue. */
  get catalog(): Sql {
    return this.#catalogReads.sql;
  }

  /** Catalog work many sources share, on {@link catalog}. */
  get catalogReads(): CatalogReads {
    return this.#catalogReads;
  }

  /**
   * A source found a destination session dead while it used catalog client
   * `stale`: its connection may be as dead (the same path), and nothing
   * watches its reads, so it is replaced (once, whichever source says it
   * first); reads waiting on it fail and their sources retry.
   */
  renewCatalog(stale: Sql): void {
    if (stale !== this.catalog) return;
    this.#catalogReads.close();
    this.#catalogReads = new CatalogReads(this.#connectCatalog(), log("run"));
    stale.end({ timeout: 0 }).catch(() => {});
  }

  /** Ends every connection; call once no source uses them (the catalog's end releases the locks). */
  async close(): Promise<void> {
    this.locks.close();
    this.#catalogReads.close();
    await this.idlePositions.close();
    await Promise.all([this.writers.close(), this.catalog.end({ timeout: 5 })]).catch(() => {});
  }
}

/** The settings whose change needs a new {@link SharedDestination}. */
export function sharedKey(config: Config): string {
  return JSON.stringify([
    config.destination,
    config.apply.workers,
    config.sync.parallelism,
    config.timeouts.destinationCheckSeconds,
  ]);
}

/**
 * Startup parameters of every destination connection that writes
 * (`destination.replica_role`, `destination.override_read_only`).
 */
export function destinationParams(cfg: Config): Record<string, string> | undefined {
  const params = {
    ...(cfg.destination.replicaRole ? { session_replication_role: "replica" } : {}),
    ...(cfg.destination.overrideReadOnly ? { default_transaction_read_only: "off" } : {}),
  };
  return Object.keys(params).length > 0 ? params : undefined;
}
