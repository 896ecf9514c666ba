/**
 * Runs one pipeline per source and applies config reloads: a source whose
 * settings did not change keeps streaming; a changed one, or one with column
 * drift (a fixed target is copied again), is stopped cleanly and started
 * again; a removed one stops; a new one starts. It owns the destination
 * connections every source shares (destination.ts): a reload that changes the
 * destination, `apply.workers` or `sync.parallelism` changes every source's
 * fingerprint, so all stop first, and then the shared ones are made again.
 * With a shard (`kvsz run --shard I/N`, shard.ts) it runs only that shard's sources.
 */
import type { Config, DatabaseMapping, SourceUrl } from "../config/types.ts";
import { log } from "../log.ts";
import { SourcePipeline } from "./pipeline.ts";
import { type PipelineEvents } from "./events.ts";
import { SharedDestination, sharedKey } from "./destination.ts";
import { describeShard, keepShard, type Shard } from "./shard.ts";

interface Running {
  /** `DatabaseMapping.database`. */
  database: string;
  pipeline: SourcePipeline;
  /** True once the source streams (its initial copy, if any, is done). */
  copied: boolean;
  fingerprint: string;
  done: Promise<void>;
}

/** Everything that, when changed, requires restarting a source's pipeline. */
function fingerprint(config: Config, db: DatabaseMapping, source: SourceUrl): string {
  return JSON.stringify([
    config.destination,
    config.apply,
    config.sync,
    config.timeouts,
    db.tables,
    source,
  ]);
}

/** Options of {@link Supervisor}. */
export interface SupervisorOptions {
  /**
   * Runs once per database entry, when every running source of it streams
   * (each initial copy done): `destination.create_tables`' indexes,
   * constraints and triggers. Its failure is logged.
   */
  afterCopy?: (database: string) => Promise<void>;
}

/** Owns the running pipelines of a kvsz process. */
export class Supervisor {
  #running = new Map<string, Running>();
  #shared: SharedDestination | null = null;
  readonly #log = log("run");

  /** Database entries whose {@link SupervisorOptions.afterCopy} ran (or runs). */
  readonly #afterCopyDone = new Set<string>();

  constructor(
    private readonly events: (database: string, sid: string) => PipelineEvents,
    /** Run only this shard's sources (none: every source). */
    private readonly shard?: Shard,
    private readonly opts: SupervisorOptions = {},
  ) {}

  /**
   * The events of one source: those of `events`, and once every running
   * source of its entry streams, the entry's {@link SupervisorOptions.afterCopy}.
   */
  #eventsOf(database: string, sid: string, key: string): PipelineEvents {
    const inner = this.events(database, sid);
    if (!this.opts.afterCopy) return inner;
    return {
      ...inner,
      onConnected: (connected) => {
        inner.onConnected?.(connected);
        if (connected) this.#sourceCopied(database, key);
      },
    };
  }

  #sourceCopied(database: string, key: string): void {
    const running = this.#running.get(key);
    if (running) running.copied = true;
    if (this.#afterCopyDone.has(database)) return;
    const entry = [...this.#running.values()].filter((r) => r.database === database);
    if (entry.length === 0 || !entry.every((r) => r.copied)) return;
    this.#afterCopyDone.add(database);
    const after = this.opts.afterCopy!(database).catch((e) =>
      this.#log.error("after the initial copy of {database}: {error}", {
        database,
        error: (e as Error).message,
      })
    );
    this.#afterCopyRuns.push(after);
  }

  /** Runs `database`'s {@link SupervisorOptions.afterCopy} again once its sources stream (new targets). */
  afterCopyAgain(database: string): void {
    this.#afterCopyDone.delete(database);
  }

  /** Runs of {@link SupervisorOptions.afterCopy} (awaited by {@link stop}). */
  readonly #afterCopyRuns: Promise<void>[] = [];

  /**
   * Brings the running pipelines in line with `config`. A source with column
   * drift starts again to look at it (a reload), unless `recheckDrift` is
   * false (a change of the discovered sources only).
   */
  async apply(
    config: Config,
    { recheckDrift = true }: { recheckDrift?: boolean } = {},
  ): Promise<void> {
    const wanted = new Map<string, { db: DatabaseMapping; source: SourceUrl }>();
    for (const db of config.databases) {
      for (const source of db.urls) wanted.set(`${db.database} sid ${source.sid}`, { db, source });
    }
    if (this.shard) keepShard(wanted, this.shard);
    const stopping: Promise<void>[] = [];
    for (const [key, running] of this.#running) {
      const next = wanted.get(key);
      const changed = !next || fingerprint(config, next.db, next.source) !== running.fingerprint;
      if (changed || (recheckDrift && running.pipeline.hasColumnDrift)) {
        this.#log.info("stopping {source} ({reason})", {
          source: key,
          reason: !next
            ? (running.pipeline.source.discovered
              ? "no longer discovered"
              : "removed from the config")
            : changed
            ? "its config changed"
            : "its column drift is looked at again",
        });
        running.pipeline.stop();
        stopping.push(running.done);
        this.#running.delete(key);
      }
    }
    await Promise.all(stopping);
    const shared = await this.#sharedFor(config);
    for (const [key, { db, source }] of wanted) {
      if (this.#running.has(key)) continue;
      const pipeline = new SourcePipeline(
        config,
        { db, source, destination: shared },
        this.#eventsOf(db.database, source.sid, key),
      );
      this.#running.set(key, {
        database: db.database,
        copied: false,
        pipeline,
        fingerprint: fingerprint(config, db, source),
        done: pipeline.run(),
      });
    }
  }

  /**
   * The shared destination for `config`: the current one, or a new one when
   * its settings changed (every pipeline was stopped above: their
   * fingerprints hold those settings).
   */
  async #sharedFor(config: Config): Promise<SharedDestination> {
    if (this.#shared?.key === sharedKey(config)) return this.#shared;
    if (this.#running.size > 0) {
      throw new Error("the shared destination changed under running sources");
    }
    await this.#shared?.close();
    this.#shared = new SharedDestination(config, {
      shard: this.shard && describeShard(this.shard),
    });
    return this.#shared;
  }

  /** Number of running pipelines. */
  get size(): number {
    return this.#running.size;
  }

  /** Stops every pipeline cleanly and waits for them. */
  async stop(): Promise<void> {
    const all = [...this.#running.values()];
    for (const r of all) r.pipeline.stop();
    await Promise.all(all.map((r) => r.done));
    await Promise.all(this.#afterCopyRuns);
    this.#running.clear();
    await this.#shared?.close();
    this.#shared = null;
  }
}
