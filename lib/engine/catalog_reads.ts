/**
 * What many sources ask of the destination's catalog at once, asked once.
 * Sources of a kvsz process share one catalog connection (destination.ts);
 * a thousand tenants starting, or all sending a Relation message with their
 * first transaction, would queue a thousand identical reads of the same
 * target table, and a thousand ANALYZEs of it after their copies, in front
 * of every other source's catalog work. Here:
 *
 * - kvsz's own schema is checked once per connection, not once per source;
 * - a read of a target table joins the read of the same table already queued
 *   or running (a read asked after one completed reads again: nothing stale);
 * - an ANALYZE asked while one of the same table waits is not queued again,
 *   and a table is analyzed at most every {@link ANALYZE_EVERY_MS}.
 */
import type { Logger } from "@logtape/logtape";
import type { Sql } from "../pg/connect.ts";
import { describeError } from "../pg/describe.ts";
import { readTargetTable } from "../apply/catalog.ts";
import { ensureKvszSchema } from "../apply/progress.ts";
import type { TargetTable } from "../apply/types.ts";

/** Least milliseconds between two ANALYZEs of one table (the copies of many tenants end together). */
const ANALYZE_EVERY_MS = 10_000;

/** Catalog work shared by the sources of one catalog connection (see the module comment). */
export class CatalogReads {
  #schema: Promise<void> | null = null;
  #targets = new Map<string, Promise<TargetTable | null>>();
  /** Per table: when its last ANALYZE started, and whether another one is due. */
  #analyzed = new Map<string, { at: number; timer?: ReturnType<typeof setTimeout> }>();

  constructor(private readonly sql: Sql, private readonly log: Logger) {}

  /** Creates or upgrades schema `kvsz` (once; again after a failure). */
  ensureKvszSchema(): Promise<void> {
    this.#schema ??= ensureKvszSchema(this.sql).catch((e) => {
      this.#schema = null;
      throw e;
    });
    return this.#schema;
  }

  /** Reads target `schema.name`, with any read of it not yet answered. */
  readTarget(schema: string, name: string): Promise<TargetTable | null> {
    const key = `${schema}.${name}`;
    let read = this.#targets.get(key);
    if (!read) {
      read = readTargetTable(this.sql, schema, name);
      this.#targets.set(key, read);
      const forget = () => this.#targets.delete(key);
      read.then(forget, forget);
    }
    return read;
  }

  /** Analyzes `table` (qualified and quoted) soon: at once, or when its last ANALYZE is old enough. */
  analyze(table: string): void {
    const last = this.#analyzed.get(table);
    if (last?.timer !== undefined) return; // one is due already
    const wait = last ? last.at + ANALYZE_EVERY_MS - performance.now() : 0;
    const run = () => {
      this.#analyzed.set(table, { at: performance.now() });
      this.sql.unsafe(`ANALYZE ${table}`).catch((e) =>
        this.log.warn("ANALYZE {table} failed: {error}", { table, error: describeError(e) })
      );
    };
    if (wait <= 0) run();
    else this.#analyzed.set(table, { at: last!.at, timer: setTimeout(run, wait) });
  }

  /** Cancels the ANALYZEs not started yet. */
  close(): void {
    for (const a of this.#analyzed.values()) clearTimeout(a.timer);
  }
}
