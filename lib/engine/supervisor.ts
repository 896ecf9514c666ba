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
  pipeline: SourcePipeline;
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

/** Owns the running pipelines of a kvsz process. */
export class Supervisor {
  #running = new Map<string, Running>();
  #shared: SharedDestination | null = null;
  readonly #log = log("run");

  constructor(
    private readonly events: (database: string, sid: string) => PipelineEvents,
    /** Run only this shard's sources (none: every source). */
    private readonly shard?: Shard,
  ) {}

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
        this.events(db.database, source.sid),
      );
      this.#running.set(key, {
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
    this.#running.clear();
    await this.#shared?.close();
    this.#shared = null;
  }
}
