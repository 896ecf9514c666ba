/**
 * What `destination.create_tables` creates, as read from a source's catalog
 * (read_source.ts) and turned into statements (ddl.ts): plain data, no SQL.
 */

/** A schema-qualified name. */
export interface ObjectName {
  schema: string;
  name: string;
}

/** A user-defined type a target's columns use. */
export type TypeDescription =
  | { kind: "enum"; type: ObjectName; labels: string[] }
  | {
    kind: "domain";
    type: ObjectName;
    /** `format_type` of the base type, schema-qualified. */
    baseType: string;
    collation: string | null;
    default: string | null;
    notNull: boolean;
    /** `[name, pg_get_constraintdef]` of each CHECK. */
    checks: [string, string][];
    /** Functions (`regprocedure` text) its default and checks call. */
    functions: string[];
  }
  | { kind: "composite"; type: ObjectName; attributes: { name: string; type: string }[] };

/** A sequence's options, as `pg_sequence` has them. */
export interface SequenceOptions {
  /** `format_type` of its type (`bigint` when absent). */
  dataType: string;
  start: string;
  increment: string;
  min: string;
  max: string;
  cache: string;
  cycle: boolean;
}

/** A sequence to create, with its current value when the source let kvsz read it. */
export interface SequenceDescription extends SequenceOptions {
  sequence: ObjectName;
  /** `last_value` of `pg_sequences` (null: never called, or not readable). */
  lastValue: string | null;
  /** The mapped source column that owns it (`OWNED BY`), as target table and column. */
  ownedBy: { table: ObjectName; column: string } | null;
}

/** A column of a table to create. */
export interface ColumnDescription {
  name: string;
  /** `format_type(atttypid, atttypmod)`, schema-qualified. */
  type: string;
  /** `COLLATE` clause target, quoted, when not the type's default. */
  collation: string | null;
  notNull: boolean;
  /** `pg_get_expr` of the default (not for generated or identity columns). */
  default: string | null;
  /** `a` ALWAYS / `d` BY DEFAULT identity, with its sequence's options. */
  identity: { kind: "a" | "d"; options: SequenceOptions; lastValue: string | null } | null;
  /** A generated column's expression, `s` stored or `v` virtual (PostgreSQL 18). */
  generated: { expression: string; kind: "s" | "v" } | null;
  /** Functions (`regprocedure` text) its default or expression calls. */
  functions: string[];
}

/** A partition of a partitioned table (at any depth), created after its parent. */
export interface PartitionDescription {
  /** The partition's name at the destination (the target's schema, its source name). */
  table: ObjectName;
  parent: ObjectName;
  /** `pg_get_expr(relpartbound)`: `FOR VALUES ...` or `DEFAULT`. */
  bound: string;
  /** `pg_get_partkeydef` when it is partitioned itself. */
  partitionBy: string | null;
}

/** A target table to create. */
export interface TableDescription {
  /** The target. */
  table: ObjectName;
  /** The source table it is read from. */
  source: ObjectName;
  columns: ColumnDescription[];
  /** Leading `sid text NOT NULL` (several sources share it). */
  withSid: boolean;
  /** Trailing kvsz_start, kvsz_end, kvsz_deleted (history mode). */
  history: boolean;
  /** The source's primary key columns (the history indexes' key). */
  sourceKey: string[];
  /** Primary key columns (sid included), empty for none. */
  primaryKey: string[];
  /** `pg_get_partkeydef` of a partitioned table. */
  partitionBy: string | null;
  /** Every partition, parents before children. */
  partitions: PartitionDescription[];
}

/** Kinds of what is created after the initial copy, in the order they are made. */
export type AfterCopyKind = "index" | "constraint" | "trigger" | "foreign key";

/** An index, constraint or trigger made once the copy is done. */
export interface AfterCopyObject {
  kind: AfterCopyKind;
  /** The table it is on (a target). */
  table: ObjectName;
  /** Its name (an index's is in the table's schema). */
  name: string;
  /** The whole statement. */
  statement: string;
  /** Functions (`regprocedure` text) it needs at the destination. */
  functions: string[];
}

/** A source object `create_tables` leaves to the user. */
export interface NotCreated {
  /** `function`, `view`, `extension`, `policy`, … */
  kind: string;
  name: string;
  /** Why, when it is not only "not created by kvsz". */
  reason?: string;
}

/** Everything one database entry's targets need, read from one of its sources. */
export interface SchemaDescription {
  /** Schemas to create (targets', types', sequences'). */
  schemas: string[];
  /** Types, dependencies first. */
  types: TypeDescription[];
  sequences: SequenceDescription[];
  tables: TableDescription[];
  /** Made after the initial copy. */
  afterCopy: AfterCopyObject[];
  notCreated: NotCreated[];
  /** Source schemas the mapped tables live in (for the pg_dump advice). */
  sourceSchemas: string[];
}
