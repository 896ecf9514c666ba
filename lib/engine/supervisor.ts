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

/** The key of a source in the supervisor's maps. */
function sourceKey(database: string, sid: string): string {
  return `${database} sid ${sid}`;
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
  /** Sources paused through the API (keys): left out of every apply until resumed. */
  readonly #paused = new Set<string>();
  /** The config of the last apply: what pause, resume and restart apply again. */
  #last: Config | null = null;
  #queue: Promise<void> = Promise.resolve();

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
  apply(config: Config, opts: { recheckDrift?: boolean } = {}): Promise<void> {
    return this.#serial(() => this.#apply(config, opts));
  }

  async #apply(
    config: Config,
    { recheckDrift = true }: { recheckDrift?: boolean },
  ): Promise<void> {
    this.#last = config;
    const wanted = this.#wanted(config);
    for (const key of this.#paused) {
      if (!wanted.delete(key)) this.#paused.delete(key); // gone from the config: forgotten
    }
    const stopping: Promise<void>[] = [];
    for (const [key, running] of this.#running) {
      const next = wanted.get(key);
      const changed = !next || fingerprint(config, next.db, next.source) !== running.fingerprint;
      if (changed || (recheckDrift && running.pipeline.hasColumnDrift)) {
        this.#log.info("stopping {source} ({reason})", {
          source: key,
          reason: this.#paused.has(key)
            ? "paused"
            : !next
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

  /** The sources of `config` this process runs (of its shard), by key. */
  #wanted(config: Config): Map<string, { db: DatabaseMapping; source: SourceUrl }> {
    const wanted = new Map<string, { db: DatabaseMapping; source: SourceUrl }>();
    for (const db of config.databases) {
      for (const source of db.urls) wanted.set(sourceKey(db.database, source.sid), { db, source });
    }
    if (this.shard) keepShard(wanted, this.shard);
    return wanted;
  }

  /** Runs `step` after every apply, pause, resume or restart before it. */
  #serial<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(step);
    this.#queue = run.then(() => {}, () => {});
    return run;
  }

  /** Whether a source runs here, is paused, or is none of this process's. */
  stateOf(database: string, sid: string): "running" | "paused" | "absent" {
    const key = sourceKey(database, sid);
    if (this.#paused.has(key)) return "paused";
    return this.#running.has(key) ? "running" : "absent";
  }

  /** Stops a source until {@link resume} (its slot stays, retaining WAL); false when absent. */
  pause(database: string, sid: string): Promise<boolean> {
    return this.#serial(async () => {
      const key = sourceKey(database, sid);
      if (!this.#last || !this.#wanted(this.#last).has(key)) return false;
      this.#paused.add(key);
      await this.#apply(this.#last, { recheckDrift: false });
      return true;
    });
  }

  /** Starts a paused source again; false when it is not paused. */
  resume(database: string, sid: string): Promise<boolean> {
    return this.#serial(async () => {
      if (!this.#paused.delete(sourceKey(database, sid)) || !this.#last) return false;
      await this.#apply(this.#last, { recheckDrift: false });
      return true;
    });
  }

  /**
   * Stops a running source, runs `between` (e.g. marks a table to be copied
   * again), and starts it again; false when it does not run here.
   */
  restart(database: string, sid: string, between: () => Promise<void>): Promise<boolean> {
    return this.#serial(async () => {
      const running = this.#running.get(sourceKey(database, sid));
      if (!running || !this.#last) return false;
      running.pipeline.stop();
      await running.done;
      this.#running.delete(sourceKey(database, sid));
      try {
        await between();
      } finally {
        await this.#apply(this.#last, { recheckDrift: false });
      }
      return true;
    });
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
