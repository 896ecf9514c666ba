/**
 * Typed pgoutput messages (protocol versions 1 to 4), one plain struct per
 * message, as described in PostgreSQL's "Logical Replication Message Formats".
 * LSNs are bigints; timestamps are microseconds since 2000-01-01 UTC (bigint).
 */

/**
 * One column value of a tuple in text format: a string, `null` for SQL NULL, or
 * `undefined` for an unchanged TOASTed value that the server did not send ('u').
 */
export type ColumnValue = string | null | undefined;

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

/** Converts a PostgreSQL timestamp (µs since 2000-01-01) to a JS Date (ms precision). */
export function pgTimestampToDate(us: bigint): Date {
  return new Date(Number((us + PG_EPOCH_OFFSET_US) / 1000n));
}
