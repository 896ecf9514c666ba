/**
 * Typed pgoutput messages (protocol versions 1 to 4), one plain struct per
 * message, as described in PostgreSQL's "Logical Replication Message Formats".
 * LSNs are bigints; timestamps are microseconds since 2000-01-01 UTC (bigint).
 */

/**
 * One column value of a tuple in text format: a string, `null` for SQL NULL,
 * `undefined` for an unchanged TOASTed value that the server did not send
 * ('u'), or a {@link LargeValue} (over {@link LARGE_VALUE_BYTES}).
 */
export type ColumnValue = string | null | undefined | LargeValue;

/**
 * Values longer than this many bytes are kept as bytes ({@link LargeValue}),
 * never decoded into a JS string: V8's strings end at about 512 MiB (one-byte)
 * or 256 Mi characters (two-byte), where PostgreSQL's values end at 1 GB, and
 * every copy of a string that size (decoding, escaping, the driver's buffers)
 * costs its whole size again.
 */
export const LARGE_VALUE_BYTES = 16 << 20;

/**
 * A text-format value over {@link LARGE_VALUE_BYTES}: its UTF-8 bytes, a view
 * into the message it arrived in (never copied). The applier writes a row
 * holding one on its own, passing the bytes (lib/pg/wire_statement.ts).
 */
export class LargeValue {
  constructor(readonly bytes: Uint8Array) {}

  /** Its size in bytes (as `length` is a string's size, for code that weighs values). */
  get length(): number {
    return this.bytes.byteLength;
  }

  /** Its size for people, e.g. `700.0 MiB`. */
  get size(): string {
    return `${(this.bytes.byteLength / 1048576).toFixed(1)} MiB`;
  }

  /** What logs and errors show instead of the value, e.g. `(a 700.0 MiB value)`. */
  toString(): string {
    return `(a ${this.size} value)`;
  }
}

/** A row as sent by the server, values in the relation's column order. */
export type Tuple = ColumnValue[];

/** Column of a Relation message. */
export interface RelationColumn {
  /** True when the column is part of the replica identity key. */
  isKey: boolean;
  name: string;
  typeOid: number;
  typeMod: number;
}

/** Replica identity setting: default, nothing, full, index. */
export type ReplicaIdentity = "d" | "n" | "f" | "i";

export interface BeginMessage {
  tag: "begin";
  /** LSN of the commit record. */
  finalLsn: bigint;
  commitTime: bigint;
  xid: number;
}

export interface CommitMessage {
  tag: "commit";
  flags: number;
  /** LSN of the commit record. */
  commitLsn: bigint;
  /** End of the commit record: what to acknowledge once applied. */
  endLsn: bigint;
  commitTime: bigint;
}

export interface OriginMessage {
  tag: "origin";
  originLsn: bigint;
  name: string;
}

export interface RelationMessage {
  tag: "relation";
  /** Set inside a streamed transaction block (protocol 2+). */
  xid?: number;
  relationId: number;
  schema: string;
  name: string;
  replicaIdentity: ReplicaIdentity;
  columns: RelationColumn[];
}

export interface TypeMessage {
  tag: "type";
  xid?: number;
  typeOid: number;
  schema: string;
  name: string;
}

export interface InsertMessage {
  tag: "insert";
  xid?: number;
  relationId: number;
  newTuple: Tuple;
}

export interface UpdateMessage {
  tag: "update";
  xid?: number;
  relationId: number;
  /** Old key columns ('K'): sent when the key changed (identity DEFAULT/INDEX). */
  keyTuple?: Tuple;
  /** Whole old row ('O'): sent with REPLICA IDENTITY FULL. */
  oldTuple?: Tuple;
  newTuple: Tuple;
}

export interface DeleteMessage {
  tag: "delete";
  xid?: number;
  relationId: number;
  /** Key columns ('K') of the deleted row (identity DEFAULT/INDEX). */
  keyTuple?: Tuple;
  /** Whole deleted row ('O'): REPLICA IDENTITY FULL. */
  oldTuple?: Tuple;
}

export interface TruncateMessage {
  tag: "truncate";
  xid?: number;
  cascade: boolean;
  restartIdentity: boolean;
  relationIds: number[];
}

export interface LogicalMessage {
  tag: "message";
  xid?: number;
  transactional: boolean;
  lsn: bigint;
  prefix: string;
  content: Uint8Array;
}

export interface StreamStartMessage {
  tag: "stream_start";
  xid: number;
  /** True for the first segment of this transaction. */
  first: boolean;
}

export interface StreamStopMessage {
  tag: "stream_stop";
}

export interface StreamCommitMessage {
  tag: "stream_commit";
  xid: number;
  flags: number;
  commitLsn: bigint;
  endLsn: bigint;
  commitTime: bigint;
}

export interface StreamAbortMessage {
  tag: "stream_abort";
  xid: number;
  subXid: number;
  /** Present with protocol 4 (`streaming parallel`). */
  abortLsn?: bigint;
  abortTime?: bigint;
}

/**
 * Frees at once the memory of the buffer under `bytes`, which held one large
 * message that is now handled (its {@link LargeValue}s written, nothing else
 * in it): otherwise the process keeps its peak size until V8's next full
 * collection, which an idle process may not run for a long time. Views of
 * the buffer become empty.
 */
export function releaseBuffer(bytes: Uint8Array): void {
  (bytes.buffer as ArrayBuffer).transfer(0);
}

/** Any decoded pgoutput message. */
export type PgoutputMessage =
  | BeginMessage
  | CommitMessage
  | OriginMessage
  | RelationMessage
  | TypeMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage
  | StreamStartMessage
  | StreamStopMessage
  | StreamCommitMessage
  | StreamAbortMessage;

/** Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch). */
export const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

/** Formats a PostgreSQL timestamp (µs since 2000-01-01) as ISO 8601 UTC with microseconds. */
export function pgTimestampToIso(us: bigint): string {
  const unixUs = us + PG_EPOCH_OFFSET_US;
  const ms = unixUs / 1000n;
  const micros = Number(((unixUs % 1_000_000n) + 1_000_000n) % 1_000_000n);
  const iso = new Date(Number(ms)).toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  return `${iso.slice(0, 19)}.${String(micros).padStart(6, "0")}Z`;
}
