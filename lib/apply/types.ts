/**
 * What the applier works with: a destination table as read from its catalog,
 * the route from a source relation to it, and one decoded change.
 */
import type { TableMode } from "../config/types.ts";
import type { Tuple } from "../source/messages.ts";
import type { TableTransform } from "../transform/table_transform.ts";

/** A column of a destination table. */
export interface TargetColumn {
  name: string;
  /** `format_type(atttypid, atttypmod)`, e.g. `numeric(10,2)`, `integer[]`, `public.mood`. */
  type: string;
  typeOid: number;
  notNull: boolean;
  hasDefault: boolean;
}

/** A foreign key of a target table. */
export interface ForeignKey {
  name: string;
  /** The referenced table, `schema.name`. */
  references: string;
  /** DEFERRABLE: kvsz defers it to its COMMIT; otherwise it is checked row by row. */
  deferrable: boolean;
}

/** A destination table as read from the catalog. */
export interface TargetTable {
  schema: string;
  name: string;
  /** Columns by name, in table order. */
  columns: Map<string, TargetColumn>;
  /** Primary key columns in key order (empty when there is none). */
  primaryKey: string[];
  /** Column sets of the unique indexes that reject a duplicate at once (see catalog.ts). */
  uniqueKeys: string[][];
  /** Foreign keys, with the table each references as `schema.name`. */
  foreignKeys: ForeignKey[];
  /** True when the table has a `sid` column (source id). */
  hasSid: boolean;
  /** True when the table has kvsz_start, kvsz_end and kvsz_deleted. */
  hasHistoryColumns: boolean;
}

/** A source column that exists in the target too. */
export interface MappedColumn {
  /** Index of the column in the source tuple (Relation message order). */
  sourceIndex: number;
  name: string;
  /** Destination type the text value is cast to (see `castType`). */
  type: string;
}

/** How changes of one source relation reach one target table. */
export interface TableRoute {
  /** Source relation as `schema.name` (for logs). */
  source: string;
  mode: TableMode;
  /** Source id written into `sid` when the target has it. */
  sid: string;
  database: string;
  target: TargetTable;
  /** Columns present on both sides, excluding `sid` and the kvsz_* columns. */
  columns: MappedColumn[];
  /** Columns identifying a row (a subset of `columns`); empty when `keyless`. */
  key: MappedColumn[];
  /**
   * True when rows can only be found by comparing every column (REPLICA
   * IDENTITY FULL with no usable key): updates and deletes touch exactly one
   * matching row each and are applied one by one.
   */
  keyless: boolean;
  /** Changes of transactions committed below this LSN are already in the target (initial copy). */
  syncedLsn: bigint;
  /**
   * The table's `filter` and `set`: changes are run through it before they
   * are folded (transform_change.ts). With `set`, tuples are in its output
   * layout, which `columns` and `key` index.
   */
  transform?: TableTransform;
}

/** One row change of a source transaction, routed to its target. */
export type Change =
  | { kind: "insert"; route: TableRoute; newTuple: Tuple }
  | { kind: "update"; route: TableRoute; keyTuple?: Tuple; oldTuple?: Tuple; newTuple: Tuple }
  | { kind: "delete"; route: TableRoute; keyTuple?: Tuple; oldTuple?: Tuple }
  | { kind: "truncate"; route: TableRoute };

/** Kinds of anomaly that converge instead of failing. */
export type AnomalyKind =
  | "insert_existing"
  | "update_missing"
  | "delete_missing"
  | "expression_error";

/** One anomaly met while applying. */
export interface Anomaly {
  kind: AnomalyKind;
  /** The table's route (the initial copy names only its source table). */
  route: Pick<TableRoute, "source">;
  /** Key values as text, in `route.key` order (whole row for keyless tables). */
  key: (string | null)[];
}
