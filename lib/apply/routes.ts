/**
 * Routes source relations (from Relation messages) to destination tables:
 * which columns map, which columns identify a row, which LSN the table's
 * initial copy covers.
 */
import { type TableMapping, targetSchemaOf } from "../config/types.ts";
import type { Sql } from "../pg/connect.ts";
import type { RelationMessage } from "../source/messages.ts";
import { castType, KVSZ_COLUMNS, readTargetTable } from "./catalog.ts";
import { log } from "../log.ts";
import type { MappedColumn, TableRoute, TargetTable } from "./types.ts";
import { type ColumnDrift, compareColumns, dated, describeDrift, stopsTable } from "./drift.ts";
import { type ColumnState, type SyncedTable, writeColumnState } from "./progress.ts";
import { NeedsPersonError } from "../errors.ts";
import { compileMappingTransform } from "./transform_route.ts";

/** A route could not be built: the message names the table and the fix. */
export class RouteError extends NeedsPersonError {}

/** Options of {@link buildRoute}: the source the relation comes from. */
export interface BuildRouteOptions {
  /** `DatabaseMapping.database`. */
  database: string;
  /** The source's `sid`, written into the target's `sid` column when it has one. */
  sid: string;
  /** The LSN the table's initial copy covers (0 when not copied). */
  syncedLsn: bigint;
}

/** Builds a route for one relation onto its target table. */
export function buildRoute(
  relation: RelationMessage,
  mapping: TableMapping,
  target: TargetTable,
  opts: BuildRouteOptions,
): TableRoute {
  if (!mapping.transform) return plainRoute(relation, mapping, target, opts);
  const transform = compileMappingTransform(mapping, relation.columns, target, {
    database: opts.database,
    sid: opts.sid,
    keyNames: relation.columns.filter((c) => c.isKey).map((c) => c.name),
  })!;
  // With `set`, tuples reach the fold in the transform's output layout.
  const outputs = transform.outputs;
  const shaped = outputs === null ? relation : {
    ...relation,
    columns: outputs.map((o) => ({
      name: o.name,
      isKey: o.source !== undefined || relation.columns.some((c) => c.isKey && c.name === o.name),
      typeOid: 25,
      typeMod: -1,
    })),
  };
  return { ...plainRoute(shaped, mapping, target, opts), transform };
}

function plainRoute(
  relation: RelationMessage,
  mapping: TableMapping,
  target: TargetTable,
  opts: BuildRouteOptions,
): TableRoute {
  const { database, sid, syncedLsn } = opts;
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

/** A table's column drift as the stream saw it: which columns, and whether it stopped. */
export interface DriftReport {
  /** The mapped source table, `schema.name`. */
  table: string;
  drift: ColumnDrift[];
  stopped: boolean;
}

/** Options of {@link RouteTable}. */
export interface RouteTableOptions {
  destSchema: string;
  /** Reads a target table (default: from the catalog connection, each time). */
  readTarget?: (schema: string, name: string) => Promise<TargetTable | null>;
  /** The mapping of a relation named in a Relation message, if any. */
  mappingOf: (schema: string, name: string) => TableMapping | undefined;
  database: string;
  sid: string;
  /** What kvsz recorded per table, by `TableMapping.source`. */
  synced: Map<string, SyncedTable>;
  /** Called when a table's drift or stop changes. */
  onDrift?: (report: DriftReport) => void;
}

/**
 * The routes of one source, kept current as Relation messages arrive. Each
 * layout is compared with the source columns kvsz knows for its table (see
 * drift.ts): a change of drift is recorded, logged once and reported, and a
 * table whose policy is `stop` gets no route from its first drifted layout on.
 */
export class RouteTable {
  #routes = new Map<number, TableRoute>();
  /** The mapping (`TableMapping.source`) of each routed relation. */
  #mappingOfRoute = new Map<number, string>();
  /** Column state per mapped table, by `TableMapping.source`. */
  #columns = new Map<string, ColumnState & { known: boolean }>();
  /** The layout each relation's route (or absence of one) was last made from (see {@link layoutOf}). */
  #layouts = new Map<number, string>();
  readonly #log;

  constructor(
    private readonly dest: Sql,
    private readonly opts: RouteTableOptions,
  ) {
    this.#log = log("apply").with({ database: opts.database, sid: opts.sid });
    for (const [source, r] of opts.synced) {
      this.#columns.set(source, {
        sourceColumns: r.sourceColumns ?? [],
        known: r.sourceColumns !== null,
        columnsLsn: r.columnsLsn > r.lsn ? r.columnsLsn : r.lsn,
        drift: r.drift,
        stoppedLsn: r.stoppedLsn,
      });
    }
  }

  /** The route of a relation, or undefined when the relation is not mapped or its table is stopped. */
  get(relationId: number): TableRoute | undefined {
    return this.#routes.get(relationId);
  }

  /**
   * True when `relation` is the layout the relation's route was last made
   * from: the server sends a Relation message again after any invalidation of
   * its cache (an ANALYZE, a reset of a walsender that fell behind), and the
   * destination's catalog is read again only when the source's layout changed.
   */
  unchanged(relation: RelationMessage): boolean {
    return this.#layouts.get(relation.relationId) === layoutOf(relation);
  }

  /**
   * (Re)builds the route of a relation, reading its target's catalog again;
   * `atLsn` is where the layout was sent (the commit of the transaction it came in).
   */
  async update(relation: RelationMessage, atLsn: bigint): Promise<TableRoute | undefined> {
    this.#routes.delete(relation.relationId);
    this.#layouts.delete(relation.relationId);
    const mapping = this.opts.mappingOf(relation.schema, relation.name);
    if (!mapping) {
      this.#layouts.set(relation.relationId, layoutOf(relation));
      return undefined;
    }
    const schema = targetSchemaOf(mapping, this.opts.destSchema);
    const target = this.opts.readTarget
      ? await this.opts.readTarget(schema, mapping.target)
      : await readTargetTable(this.dest, schema, mapping.target);
    if (!target) {
      throw new RouteError(
        `target table ${schema}.${mapping.target} for ${relation.schema}.${relation.name} does not exist; create it (see \`kvsz validate\`)`,
      );
    }
    const route = buildRoute(relation, mapping, target, {
      database: this.opts.database,
      sid: this.opts.sid,
      syncedLsn: this.opts.synced.get(mapping.source)?.lsn ?? 0n,
    });
    const names = relation.columns.map((c) => c.name);
    const stopped = await this.#stopped(mapping, target, { names, atLsn });
    this.#layouts.set(relation.relationId, layoutOf(relation));
    if (stopped) return undefined;
    this.#routes.set(relation.relationId, route);
    this.#mappingOfRoute.set(relation.relationId, mapping.source);
    return route;
  }

  /** Compares a layout with what kvsz knows; records a change; true when the table is stopped. */
  async #stopped(
    mapping: TableMapping,
    target: TargetTable,
    { names, atLsn }: Layout,
  ): Promise<boolean> {
    const before = this.#columns.get(mapping.source);
    // Not yet copied (nothing to compare), or a layout older than the one recorded.
    if (!before || atLsn < before.columnsLsn) return before?.stoppedLsn != null;
    const cmp = compareColumns(
      names,
      target.columns.keys(),
      before.known ? before.sourceColumns : names,
    );
    const drift = dated(cmp.drift, before.drift, new Date().toISOString());
    const stop = before.stoppedLsn === null && stopsTable(drift, mapping.onColumnDrift);
    const after = {
      sourceColumns: cmp.known,
      known: true,
      columnsLsn: atLsn,
      drift,
      stoppedLsn: stop ? atLsn : before.stoppedLsn,
    };
    const same = before.known && sameItems(after.sourceColumns, before.sourceColumns) &&
      sameItems(drift.map(driftKey), before.drift.map(driftKey));
    if (same && !stop) return after.stoppedLsn !== null;
    const table = { database: this.opts.database, sid: this.opts.sid, sourceTable: mapping.source };
    await writeColumnState(this.dest, table, after);
    this.#columns.set(mapping.source, after);
    if (stop) {
      // Every relation of the table (partitions) stops at once.
      for (const id of this.#routes.keys()) {
        if (this.#mappingOfRoute.get(id) === mapping.source) this.#routes.delete(id);
      }
    }
    this.#report(mapping, target, { before: before.drift, after });
    return after.stoppedLsn !== null;
  }

  /** Logs drift that appeared (or a stop), and reports the table's new drift. */
  #report(
    mapping: TableMapping,
    target: TargetTable,
    { before, after }: ColumnChange,
  ): void {
    const place = {
      source: `${mapping.sourceSchema}.${mapping.sourceName}`,
      target: `${target.schema}.${target.name}`,
    };
    const keys = new Set(before.map(driftKey));
    const appeared = after.drift.filter((d) => !keys.has(driftKey(d)));
    const stopped = after.stoppedLsn !== null;
    if (appeared.length > 0) {
      const fields = { table: place.source, columns: appeared.map((d) => d.column).join(", ") };
      const message = describeDrift(place, after.drift, stopped);
      if (stopped) this.#log.error("{message}", { message, ...fields });
      else this.#log.warn("{message}", { message, ...fields });
    } else if (stopped && !stopsTable(after.drift, "stop")) {
      this.#log.warn(
        "{table}: its column drift is gone, but the table stays stopped until it is copied again: send SIGHUP or restart kvsz",
        { table: place.source },
      );
    } else if (after.drift.length < before.length) {
      this.#log.info("{table}: column drift resolved", { table: place.source });
    }
    this.opts.onDrift?.({ table: place.source, drift: after.drift, stopped });
  }
}

/** A relation's layout as a Relation message sent it. */
interface Layout {
  /** Its column names, in the source's order. */
  names: string[];
  /** Where the layout was sent (the commit of the transaction it came in). */
  atLsn: bigint;
}

/** A recorded change of a table's columns. */
interface ColumnChange {
  /** The drift recorded before. */
  before: ColumnDrift[];
  /** The state recorded now. */
  after: ColumnState;
}

function driftKey(d: { column: string; kind: string }): string {
  return `${d.kind}\u0000${d.column}`;
}

function sameItems(a: readonly string[], b: readonly string[]): boolean {
  const set = new Set(b);
  return a.length === b.length && a.every((x) => set.has(x));
}

/** What of a Relation message a route depends on, as one comparable string. */
function layoutOf(r: RelationMessage): string {
  let layout = `${r.schema}.${r.name} ${r.replicaIdentity}`;
  for (const c of r.columns) layout += ` ${c.isKey ? "*" : ""}${c.name}:${c.typeOid}:${c.typeMod}`;
  return layout;
}
