/**
 * Runs a config's sources, discovered tenants included: lists the `discover`
 * servers at start and on each reload, then again every `interval_seconds`,
 * and hands the supervisor the sources when they change. The supervisor
 * starts the new ones and stops the gone ones; the others are not touched.
 */
import type { Config } from "../config/types.ts";
import { log } from "../log.ts";
import { describeError } from "../pg/describe.ts";
import { TenantDiscovery } from "./discovery.ts";
import type { Supervisor } from "./supervisor.ts";

/** Options of {@link DiscoveryLoop}. */
export interface DiscoveryLoopOptions {
  /** Told the sources before the supervisor gets them (e.g. to create their targets). */
  beforeApply?: (sources: Config) => Promise<void>;
  /** Told the sources (a config whose `urls` hold the discovered ones) after each change. */
  onSources?: (sources: Config) => void | Promise<void>;
}

/** Keeps a {@link Supervisor} running the sources of a config and of its `discover` blocks. */
export class DiscoveryLoop {
  readonly #discovery = new TenantDiscovery();
  #config: Config | null = null;
  /** The sources handed to the supervisor last, as a comparable text. */
  #signature = "";
  #queue: Promise<void> = Promise.resolve();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stopped = false;
  readonly #log = log("discover");

  constructor(
    private readonly supervisor: Supervisor,
    private readonly opts: DiscoveryLoopOptions = {},
  ) {}

  /** Runs `config` (at start and on reload): lists every `discover` server, then applies. */
  apply(config: Config): Promise<void> {
    return this.#enqueue(async () => {
      this.#config = config;
      const { config: sources } = await this.#discovery.discover(config, { all: true });
      await this.#hand(sources, { recheckDrift: true });
    });
  }

  /** Stops listing; the supervisor's pipelines are left to its own `stop`. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#queue;
  }

  #enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.#queue.then(step);
    this.#queue = run.catch(() => {}).then(() => this.#schedule());
    return run;
  }

  /** Lists the servers that are due; applies only when the sources changed. */
  #tick(): Promise<void> {
    return this.#enqueue(async () => {
      if (this.#stopped || this.#config === null) return;
      try {
        const { config: sources } = await this.#discovery.discover(this.#config);
        await this.#hand(sources, { recheckDrift: false });
      } catch (e) {
        this.#log.error("discovering sources failed: {error}", { error: describeError(e) });
      }
    });
  }

  async #hand(sources: Config, { recheckDrift }: { recheckDrift: boolean }): Promise<void> {
    const signature = JSON.stringify(
      sources.databases.map((db) => [db.database, db.urls.map((u) => [u.sid, u.url])]),
    );
    if (!recheckDrift && signature === this.#signature) return;
    await this.opts.beforeApply?.(sources);
    await this.supervisor.apply(sources, { recheckDrift });
    this.#signature = signature;
    await this.opts.onSources?.(sources);
  }

  /** The next listing, after the shortest interval of the config's `discover` blocks. */
  #schedule(): void {
    clearTimeout(this.#timer);
    const intervals = (this.#config?.databases ?? []).flatMap((db) =>
      db.discover ? [db.discover.intervalSeconds] : []
    );
    if (this.#stopped || intervals.length === 0) return;
    this.#timer = setTimeout(() => this.#tick(), Math.min(...intervals) * 1000);
  }
}
