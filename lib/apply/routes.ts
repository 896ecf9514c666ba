/**
 * Routes source relations (from Relation messages) to destination tables:
 * which columns map, which columns identify a row, which LSN the table's
 * initial copy covers.
 */
import type { TableMapping } from "../config/types.ts";
import type { Sql } from "../pg/connect.ts";
import type { RelationMessage } from "../source/messages.ts";
import { castType, readTargetTable } from "./catalog.ts";
import { log } from "../observe/log.ts";
import type { MappedColumn, TableRoute, TargetTable } from "./types.ts";

/** Columns kvsz writes itself; never mapped from the source. */
export const KVSZ_COLUMNS = new Set(["sid", "kvsz_start", "kvsz_end", "kvsz_deleted"]);

/** A route could not be built: the message names the table and the fix. */
export class RouteError extends Error {}

/** Builds a route for one relation onto its target table. */
export function buildRoute(
  relation: RelationMessage,
  mapping: TableMapping,
  target: TargetTable,
  database: string,
  sid: string,
  syncedLsn: bigint,
): TableRoute {
  const source = `${relation.schema}.${relation.name}`;
  const columns: MappedColumn[] = [];
  relation.columns.forEach((col, i) => {
    const t = target.columns.get(col.name);
    if (t && !KVSZ_COLUMNS.has(col.name)) {
      columns.push({ sourceIndex: i, name: col.name, type: castType(t) });
    }
  });
  if (mapping.mode === "history" && !target.hasHistoryColumns) {
    throw new RouteError(
      `target ${target.schema}.${target.name} of history table ${source} lacks kvsz_start, kvsz_end, kvsz_deleted; ` +
        `add them: ALTER TABLE ${target.schema}.${target.name} ADD kvsz_start timestamptz, ADD kvsz_end timestamptz, ADD kvsz_deleted boolean`,
    );
  }
  const byName = new Map(columns.map((c) => [c.name, c]));
  const identity = relation.columns.filter((c) => c.isKey).map((c) => c.name);
  let key: MappedColumn[] = [];
  let keyless = false;
  if (relation.replicaIdentity === "f") {
    // FULL: every column is sent as the old row. Use the target's primary key
    // when the source provides all of its columns; else compare whole rows.
    const pk = target.primaryKey.filter((c) => c !== "sid");
    if (pk.length > 0 && pk.every((c) => byName.has(c))) {
      key = pk.map((c) => byName.get(c)!);
    } else {
      keyless = true;
    }
  } else if (identity.length > 0) {
    const missing = identity.filter((c) => !byName.has(c));
    if (missing.length > 0) {
      throw new RouteError(
        `target ${target.schema}.${target.name} lacks key column(s) ${
          missing.join(", ")
        } of ${source}: updates and deletes could not find their rows; add the column(s) to the target`,
      );
    }
    key = identity.map((c) => byName.get(c)!);
  }
  return {
    source,
    mode: mapping.mode,
    sid,
    database,
    target,
    columns,
    key,
    keyless,
    syncedLsn,
  };
}

/** The routes of one source, kept current as Relation messages arrive. */
export class RouteTable {
  #routes = new Map<number, TableRoute>();
  /** Column names of each relation's last Relation message. */
  #sourceColumns = new Map<number, Set<string>>();

  constructor(
    private readonly dest: Sql,
    private readonly destSchema: string,
    /** The mapping of a relation named in a Relation message, if any. */
    private readonly mappingOf: (schema: string, name: string) => TableMapping | undefined,
    private readonly database: string,
    private readonly sid: string,
    /** Snapshot LSN of each mapping's initial copy, by `TableMapping.source`. */
    private readonly syncedLsns: Map<string, bigint>,
  ) {}

  /** The route of a relation id, or undefined when the relation is not mapped. */
  get(relationId: number): TableRoute | undefined {
    return this.#routes.get(relationId);
  }

  /** (Re)builds the route of a relation, reading its target's catalog again. */
  async update(relation: RelationMessage): Promise<TableRoute | undefined> {
    const mapping = this.mappingOf(relation.schema, relation.name);
    if (!mapping) {
      this.#routes.delete(relation.relationId);
      return undefined;
    }
    const target = await readTargetTable(this.dest, this.destSchema, mapping.target);
    if (!target) {
      throw new RouteError(
        `target table ${this.destSchema}.${mapping.target} for ${relation.schema}.${relation.name} does not exist; create it (see \`kvsz validate\`)`,
      );
    }
    const route = buildRoute(
      relation,
      mapping,
      target,
      this.database,
      this.sid,
      this.syncedLsns.get(mapping.source) ?? 0n,
    );
    this.#warnNewUnmapped(route, relation);
    this.#routes.set(relation.relationId, route);
    return route;
  }

  /**
   * A column added at the source that the target lacks is not copied: said
   * once, when it appears (columns left out of a target on purpose are not).
   */
  #warnNewUnmapped(route: TableRoute, relation: RelationMessage): void {
    const names = relation.columns.map((c) => c.name);
    const before = this.#sourceColumns.get(relation.relationId);
    this.#sourceColumns.set(relation.relationId, new Set(names));
    if (!before) return;
    const mapped = new Set(route.columns.map((c) => c.name));
    const added = names.filter((n) => !before.has(n) && !mapped.has(n) && !KVSZ_COLUMNS.has(n));
    if (added.length === 0) return;
    log("apply").with({ database: this.database, sid: this.sid }).warn(
      "{source} has new column(s) {columns} that target {target} lacks: their values are not copied. " +
        "Add them to the target and restart kvsz; rows changed before keep NULL there " +
        "(add columns to the destination first, then to the source)",
      {
        source: route.source,
        columns: added.join(", "),
        target: `${route.target.schema}.${route.target.name}`,
      },
    );
  }
}
