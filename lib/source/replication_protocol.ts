/**
 * The streaming replication sub-protocol around pgoutput: the START_REPLICATION
 * command, the CopyData frames the server sends in CopyBoth mode (XLogData 'w'
 * and Primary keepalive 'k') and the Standby status update 'r' we send back.
 */
import { formatLsn } from "../pg/lsn.ts";
import { quoteIdent, quoteLiteral } from "../pg/identifiers.ts";
import { PG_EPOCH_OFFSET_US } from "./messages.ts";

/** XLogData frame: one pgoutput message and the WAL position it belongs to. */
export interface XLogDataFrame {
  kind: "xlog";
  /** Start of the WAL data (for logical decoding: the LSN of the change, begin or commit end). */
  walStart: bigint;
  /** The server's current end of WAL (logical walsenders send `walStart` here too). */
  walEnd: bigint;
  /** Server clock at transmission, µs since 2000-01-01. */
  sendTime: bigint;
  /** The pgoutput message: a view into the frame, not a copy. */
  payload: Uint8Array;
}

/** Primary keepalive frame. */
export interface KeepaliveFrame {
  kind: "keepalive";
  /** The server's current end of WAL. */
  walEnd: bigint;
  /** Server clock at transmission, µs since 2000-01-01. */
  sendTime: bigint;
  /** The server wants a standby status update now, or it will time out the connection. */
  replyRequested: boolean;
}

/** A CopyData frame from a replication stream. */
export type CopyDataFrame = XLogDataFrame | KeepaliveFrame;

/** Options of {@link startReplicationCommand}; see pgoutput's documented options. */
export interface StartReplicationOptions {
  /** `proto_version`, 1 to 4; see {@link protoVersionFor}. */
  protoVersion: number;
  /** Publication name (or names) to stream. */
  publication: string | readonly string[];
  /** Also stream `pg_logical_emit_message` messages (PostgreSQL 14+). */
  messages?: boolean;
  /** Stream in-progress transactions: `"on"` needs protocol 2+, `"parallel"` protocol 4. */
  streaming?: "on" | "parallel" | false;
  /** Only changes without a replication origin (`"none"`) or all (`"any"`); PostgreSQL 16+. */
  origin?: "none" | "any";
  /** kvsz decodes text values only; `false` is the server's default and is not sent. */
  binary?: false;
}

/** Parses one CopyData payload of a replication stream ('w' XLogData or 'k' keepalive). */
export function parseCopyData(buf: Uint8Array): CopyDataFrame {
  if (buf.byteLength === 0) throw new Error("empty replication CopyData message");
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const kind = buf[0];
  if (kind === 0x77) { // w
    if (buf.byteLength < 25) throw new Error(`short XLogData message: ${buf.byteLength} bytes`);
    return {
      kind: "xlog",
      walStart: view.getBigUint64(1),
      walEnd: view.getBigUint64(9),
      sendTime: view.getBigInt64(17),
      payload: buf.subarray(25),
    };
  }
  if (kind === 0x6b) { // k
    if (buf.byteLength < 18) throw new Error(`short keepalive message: ${buf.byteLength} bytes`);
    return {
      kind: "keepalive",
      walEnd: view.getBigUint64(1),
      sendTime: view.getBigInt64(9),
      replyRequested: buf[17] !== 0,
    };
  }
  const ch = kind >= 0x20 && kind < 0x7f ? String.fromCharCode(kind) : "?";
  throw new Error(
    `unknown replication CopyData message '${ch}' (0x${kind.toString(16).padStart(2, "0")})`,
  );
}

/** Current time in µs since 2000-01-01 (PostgreSQL's epoch). */
export function pgNowMicros(): bigint {
  return BigInt(Date.now()) * 1000n - PG_EPOCH_OFFSET_US;
}

/**
 * Encodes a Standby status update ('r', 34 bytes): WAL written, flushed and
 * applied up to `lsn` (kvsz reports only what the destination committed, so
 * the three are one), the current time, and whether we ask for a reply.
 */
export function encodeStandbyStatus(lsn: bigint, replyRequested = false): Uint8Array {
  const buf = new Uint8Array(34);
  const view = new DataView(buf.buffer);
  buf[0] = 0x72; // r
  view.setBigUint64(1, lsn);
  view.setBigUint64(9, lsn);
  view.setBigUint64(17, lsn);
  view.setBigInt64(25, pgNowMicros());
  buf[33] = replyRequested ? 1 : 0;
  return buf;
}

/**
 * Builds `START_REPLICATION SLOT "slot" LOGICAL X/Y (proto_version '4', ...)`
 * for pgoutput; options that are off are left out so older servers accept it.
 */
export function startReplicationCommand(
  slot: string,
  startLsn: bigint,
  options: StartReplicationOptions,
): string {
  const v = options.protoVersion;
  if (!Number.isInteger(v) || v < 1 || v > 4) {
    throw new Error(`unsupported pgoutput protocol version ${v}: expected 1 to 4`);
  }
  if (options.streaming === "on" && v < 2) {
    throw new Error(`streaming needs pgoutput protocol 2 or later (asked for ${v})`);
  }
  if (options.streaming === "parallel" && v < 4) {
    throw new Error(`streaming 'parallel' needs pgoutput protocol 4 (asked for ${v})`);
  }
  if (options.binary) throw new Error("kvsz decodes text values only: binary must be false");
  const pubs = typeof options.publication === "string"
    ? [options.publication]
    : options.publication;
  if (pubs.length === 0) throw new Error("START_REPLICATION needs at least one publication");
  const opts = [
    `proto_version '${v}'`,
    `publication_names ${quoteLiteral(pubs.map(quoteIdent).join(","))}`,
  ];
  if (options.messages) opts.push(`messages 'true'`);
  if (options.streaming) opts.push(`streaming ${quoteLiteral(options.streaming)}`);
  if (options.origin) opts.push(`origin ${quoteLiteral(options.origin)}`);
  return `START_REPLICATION SLOT ${quoteIdent(slot)} LOGICAL ${formatLsn(startLsn)} (${
    opts.join(", ")
  })`;
}

/** The newest pgoutput protocol a server major offers: 1 (12–13), 2 (14), 3 (15), 4 (16+). */
export function protoVersionFor(serverMajor: number): number {
  if (serverMajor >= 16) return 4;
  if (serverMajor === 15) return 3;
  if (serverMajor === 14) return 2;
  return 1;
}

/** Whether the server accepts pgoutput's `origin` option (PostgreSQL 16+). */
export function originOptionSupported(serverMajor: number): boolean {
  return serverMajor >= 16;
}
