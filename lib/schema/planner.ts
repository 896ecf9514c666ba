/**
 * `destination.create_tables` while kvsz runs: a database entry whose tables
 * change on SIGHUP, or whose sources are all discovered (no `urls` to read
 * its schema from at start), gets its targets created when the sources are
 * next handed to the pipelines, before they start.
 */
import type { Config, DatabaseMapping } from "../config/types.ts";
import { describeError } from "../pg/describe.ts";
import { log } from "../log.ts";
import { createBeforeCopy, entryHasSid, type SchemaPlans } from "./create.ts";

/** What an entry's plan was made from: its tables and whether they get `sid`. */
function signature(db: DatabaseMapping): string {
  return JSON.stringify([
    db.tables.map((m) => [m.source, m.targetSchema ?? null, m.target, m.mode, m.partitionsRegex]),
    entryHasSid(db),
  ]);
}

/** The plans of a running kvsz, kept in line with its config's entries. */
export class SchemaPlanner {
  readonly #signatures = new Map<string, string>();

  /** `plans`: what `createBeforeCopy` made at start for `config`. */
  constructor(readonly plans: SchemaPlans, config: Config) {
    for (const db of config.databases) {
      if (plans.has(db.database)) this.#signatures.set(db.database, signature(db));
    }
  }

  /**
   * Creates what the entries of `sources` (discovered sources in `urls`) that
   * are new, changed or had no source before need; returns their names (an
   * entry's indexes and constraints are then due again). A failure is logged:
   * the pipelines then say which targets are missing.
   */
  async update(sources: Config): Promise<string[]> {
    if (!sources.destination.createTables) return [];
    const due = sources.databases.filter((db) =>
      db.urls.length > 0 && this.#signatures.get(db.database) !== signature(db)
    );
    if (due.length === 0) return [];
    try {
      const made = await createBeforeCopy({ ...sources, databases: due });
      for (const db of due) {
        const plan = made.get(db.database);
        if (!plan) continue;
        this.plans.set(db.database, plan);
        this.#signatures.set(db.database, signature(db));
      }
      return due.map((db) => db.database).filter((d) => made.has(d));
    } catch (e) {
      log("schema").error("create_tables: could not read or create the targets: {error}", {
        error: describeError(e),
      });
      return [];
    }
  }
}
