/**
 * Decoder for the `pgoutput` logical replication protocol, versions 1 to 4
 * (PostgreSQL's "Logical Replication Message Formats"), producing the structs
 * of `messages.ts`. This is the replication hot path: it reads integers from a
 * DataView, builds short ASCII strings without TextDecoder, and allocates
 * nothing but the message, its tuples and its strings.
 */
import type {
  BeginMessage,
  ColumnValue,
  CommitMessage,
  DeleteMessage,
  InsertMessage,
  LogicalMessage,
  OriginMessage,
  PgoutputMessage,
  RelationColumn,
  RelationMessage,
  ReplicaIdentity,
  StreamAbortMessage,
  StreamCommitMessage,
  StreamStartMessage,
  StreamStopMessage,
  TruncateMessage,
  Tuple,
  TypeMessage,
  UpdateMessage,
} from "./messages.ts";
import { LARGE_VALUE_BYTES, LargeValue } from "./messages.ts";

/** Options for {@link PgoutputDecoder}: what was asked for in START_REPLICATION. */
export interface PgoutputDecoderOptions {
  /** The `proto_version` the stream was started with (1 to 4). */
  protoVersion: number;
  /**
   * The `streaming` option the stream was started with. Only `"parallel"` (which
   * needs protocol 4) changes the wire format: Stream Abort then carries the
   * abort LSN and time.
   */
  streaming?: "on" | "parallel" | boolean;
}

/** Values up to this many bytes are tried as ASCII before falling back to TextDecoder. */
const ASCII_FAST_PATH_MAX = 64;

const utf8 = new TextDecoder();
const EMPTY = new ArrayBuffer(0);
const STREAM_STOP: StreamStopMessage = Object.freeze({ tag: "stream_stop" }) as StreamStopMessage;

/**
 * Decodes a run of bytes as UTF-8. Short all-ASCII values (most column values)
 * are built with String.fromCharCode eight bytes at a time, which is about twice
 * as fast as a TextDecoder call, flattening included.
 */
function decodeText(u8: Uint8Array, start: number, end: number): string {
  if (end - start > ASCII_FAST_PATH_MAX) return utf8.decode(u8.subarray(start, end));
  let bits = 0;
  for (let j = start; j < end; j++) bits |= u8[j];
  if (bits > 0x7f) return utf8.decode(u8.subarray(start, end));
  const fcc = String.fromCharCode;
  let s = "";
  let i = start;
  for (; i + 8 <= end; i += 8) {
    s += fcc(u8[i], u8[i + 1], u8[i + 2], u8[i + 3], u8[i + 4], u8[i + 5], u8[i + 6], u8[i + 7]);
  }
  switch (end - i) {
    case 7:
      return s + fcc(u8[i], u8[i + 1], u8[i + 2], u8[i + 3], u8[i + 4], u8[i + 5], u8[i + 6]);
    case 6:
      return s + fcc(u8[i], u8[i + 1], u8[i + 2], u8[i + 3], u8[i + 4], u8[i + 5]);
    case 5:
      return s + fcc(u8[i], u8[i + 1], u8[i + 2], u8[i + 3], u8[i + 4]);
    case 4:
      return s + fcc(u8[i], u8[i + 1], u8[i + 2], u8[i + 3]);
    case 3:
      return s + fcc(u8[i], u8[i + 1], u8[i + 2]);
    case 2:
      return s + fcc(u8[i], u8[i + 1]);
    case 1:
      return s + fcc(u8[i]);
    default:
      return s;
  }
}

function tagName(tag: number): string {
  const ch = tag >= 0x20 && tag < 0x7f ? String.fromCharCode(tag) : "?";
  return `'${ch}' (0x${tag.toString(16).padStart(2, "0")})`;
}

/**
 * Decodes pgoutput messages (the payloads of XLogData frames) one at a time,
 * keeping the one piece of state the protocol needs: whether we are inside a
 * streamed-transaction block (Stream Start .. Stream Stop), where data messages
 * carry a leading xid. That xid is the (sub)transaction that made the change,
 * which differs from the block's top-level xid ({@link streamXid}) for changes
 * made in a subtransaction; a Stream Abort whose `subXid` names it discards them.
 */
export class PgoutputDecoder {
  /** The protocol version this decoder was created for. */
  readonly protoVersion: number;
  private readonly abortInfo: boolean;
  private streaming = false;
  private topXid: number | undefined = undefined;
  private ab: ArrayBufferLike = EMPTY;
  private u8: Uint8Array = new Uint8Array(EMPTY);
  private view: DataView = new DataView(EMPTY);
  private pos = 0;

  constructor(options: PgoutputDecoderOptions) {
    const v = options.protoVersion;
    if (!Number.isInteger(v) || v < 1 || v > 4) {
      throw new Error(`unsupported pgoutput protocol version ${v}: expected 1 to 4`);
    }
    this.protoVersion = v;
    this.abortInfo = v >= 4 && options.streaming === "parallel";
  }

  /** True between a Stream Start and its Stream Stop. */
  get inStreamBlock(): boolean {
    return this.streaming;
  }

  /** Top-level xid of the current stream block (from its Stream Start), if inside one. */
  get streamXid(): number | undefined {
    return this.streaming ? this.topXid : undefined;
  }

  /** Decodes what follows as messages of a stream block of top-level transaction `xid` (a spool's replay). */
  enterStreamBlock(xid: number): void {
    this.streaming = true;
    this.topXid = xid;
  }

  /** Forgets the stream-block state (call when a new replication stream starts). */
  reset(): void {
    this.streaming = false;
    this.topXid = undefined;
  }

  /**
   * Decodes one pgoutput message. The result does not reference `buf` (strings
   * and logical-message contents are copies) except through its
   * {@link LargeValue}s, which are views: `buf` may be reused afterwards only
   * when it is shorter than {@link LARGE_VALUE_BYTES}. The message starts
   * `offset` bytes into `buf` (e.g. 25 for an XLogData frame).
   */
  decode(buf: Uint8Array, offset = 0): PgoutputMessage {
    return this.decodeAt(buf, offset, buf.byteLength);
  }

  /** Decodes the message in bytes `from` to `to` of `buf` (one frame of a larger socket read). */
  decodeAt(buf: Uint8Array, from: number, to: number): PgoutputMessage {
    if (buf.buffer !== this.ab) {
      // One DataView per underlying buffer: socket reads put many messages in one.
      this.ab = buf.buffer;
      const whole = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength &&
        !(buf.buffer as ArrayBuffer).resizable;
      this.u8 = whole ? buf : new Uint8Array(buf.buffer);
      this.view = new DataView(buf.buffer);
    }
    const start = buf.byteOffset + from;
    const end = buf.byteOffset + to;
    if (end <= start) throw new Error("empty pgoutput message");
    const tag = this.u8[start];
    this.pos = start + 1;
    let msg: PgoutputMessage;
    switch (tag) {
      case 0x42: // B
        msg = this.begin();
        break;
      case 0x43: // C
        msg = this.commit();
        break;
      case 0x49: // I
        msg = this.insert(end);
        break;
      case 0x55: // U
        msg = this.update(end);
        break;
      case 0x44: // D
        msg = this.delete(end);
        break;
      case 0x52: // R
        msg = this.relation(end);
        break;
      case 0x59: // Y
        msg = this.type(end);
        break;
      case 0x4f: // O
        msg = this.origin(end);
        break;
      case 0x54: // T
        msg = this.truncate();
        break;
      case 0x4d: // M
        msg = this.message(end);
        break;
      case 0x53: // S
        msg = this.streamStart();
        break;
      case 0x45: // E
        this.streaming = false;
        msg = STREAM_STOP;
        break;
      case 0x63: // c
        msg = this.streamCommit();
        break;
      case 0x41: // A
        msg = this.streamAbort();
        break;
      default:
        throw new Error(`unknown pgoutput message tag ${tagName(tag)}`);
    }
    if (this.pos !== end) {
      throw new Error(
        `malformed pgoutput message ${tagName(tag)}: ${end - start} bytes, decoded ${
          this.pos - start
        } (protocol version or streaming option mismatch?)`,
      );
    }
    return msg;
  }

  private begin(): BeginMessage {
    const v = this.view, p = this.pos;
    this.pos = p + 20;
    return {
      tag: "begin",
      finalLsn: v.getBigUint64(p),
      commitTime: v.getBigInt64(p + 8),
      xid: v.getUint32(p + 16),
    };
  }

  private commit(): CommitMessage {
    const v = this.view, p = this.pos;
    this.pos = p + 25;
    return {
      tag: "commit",
      flags: v.getUint8(p),
      commitLsn: v.getBigUint64(p + 1),
      endLsn: v.getBigUint64(p + 9),
      commitTime: v.getBigInt64(p + 17),
    };
  }

  private origin(end: number): OriginMessage {
    const originLsn = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return { tag: "origin", originLsn, name: this.cstring(end) };
  }

  /** Reads the leading xid of a data message inside a stream block. */
  private xid(): number | undefined {
    if (!this.streaming) return undefined;
    const xid = this.view.getUint32(this.pos);
    this.pos += 4;
    return xid;
  }

  private relation(end: number): RelationMessage {
    const xid = this.xid();
    const v = this.view;
    const relationId = v.getUint32(this.pos);
    this.pos += 4;
    const schema = this.cstring(end);
    const name = this.cstring(end);
    const replicaIdentity = String.fromCharCode(v.getUint8(this.pos)) as ReplicaIdentity;
    const n = v.getInt16(this.pos + 1);
    this.pos += 3;
    const columns: RelationColumn[] = [];
    for (let i = 0; i < n; i++) {
      const isKey = (v.getUint8(this.pos++) & 1) === 1;
      const colName = this.cstring(end);
      const p = this.pos;
      this.pos = p + 8;
      columns.push({ isKey, name: colName, typeOid: v.getUint32(p), typeMod: v.getInt32(p + 4) });
    }
    return { tag: "relation", xid, relationId, schema, name, replicaIdentity, columns };
  }

  private type(end: number): TypeMessage {
    const xid = this.xid();
    const typeOid = this.view.getUint32(this.pos);
    this.pos += 4;
    const schema = this.cstring(end);
    return { tag: "type", xid, typeOid, schema, name: this.cstring(end) };
  }

  private insert(end: number): InsertMessage {
    const xid = this.xid();
    const relationId = this.view.getUint32(this.pos);
    const kind = this.u8[this.pos + 4];
    if (kind !== 0x4e) this.badSubmessage("Insert", kind);
    this.pos += 5;
    return { tag: "insert", xid, relationId, newTuple: this.tuple(end) };
  }

  private update(end: number): UpdateMessage {
    const xid = this.xid();
    const relationId = this.view.getUint32(this.pos);
    let kind = this.u8[this.pos + 4];
    this.pos += 5;
    let keyTuple: Tuple | undefined;
    let oldTuple: Tuple | undefined;
    if (kind === 0x4b) { // K
      keyTuple = this.tuple(end);
      kind = this.u8[this.pos++];
    } else if (kind === 0x4f) { // O
      oldTuple = this.tuple(end);
      kind = this.u8[this.pos++];
    }
    if (kind !== 0x4e) this.badSubmessage("Update", kind);
    const newTuple = this.tuple(end);
    return { tag: "update", xid, relationId, keyTuple, oldTuple, newTuple };
  }

  private delete(end: number): DeleteMessage {
    const xid = this.xid();
    const relationId = this.view.getUint32(this.pos);
    const kind = this.u8[this.pos + 4];
    this.pos += 5;
    let keyTuple: Tuple | undefined;
    let oldTuple: Tuple | undefined;
    if (kind === 0x4b) keyTuple = this.tuple(end);
    else if (kind === 0x4f) oldTuple = this.tuple(end);
    else this.badSubmessage("Delete", kind);
    return { tag: "delete", xid, relationId, keyTuple, oldTuple };
  }

  private truncate(): TruncateMessage {
    const xid = this.xid();
    const v = this.view;
    const n = v.getInt32(this.pos);
    const options = v.getUint8(this.pos + 4);
    let p = this.pos + 5;
    const relationIds: number[] = [];
    for (let i = 0; i < n; i++, p += 4) relationIds.push(v.getUint32(p));
    this.pos = p;
    return {
      tag: "truncate",
      xid,
      cascade: (options & 1) !== 0,
      restartIdentity: (options & 2) !== 0,
      relationIds,
    };
  }

  private message(end: number): LogicalMessage {
    const xid = this.xid();
    const v = this.view;
    const transactional = (v.getUint8(this.pos) & 1) === 1;
    const lsn = v.getBigUint64(this.pos + 1);
    this.pos += 9;
    const prefix = this.cstring(end);
    const len = v.getInt32(this.pos);
    const from = this.pos + 4;
    if (len < 0 || from + len > end) this.overrun("Message", end);
    this.pos = from + len;
    const content = this.u8.slice(from, from + len);
    return { tag: "message", xid, transactional, lsn, prefix, content };
  }

  private streamStart(): StreamStartMessage {
    const v = this.view, p = this.pos;
    this.pos = p + 5;
    const xid = v.getUint32(p);
    this.streaming = true;
    this.topXid = xid;
    return { tag: "stream_start", xid, first: v.getUint8(p + 4) === 1 };
  }

  private streamCommit(): StreamCommitMessage {
    const v = this.view, p = this.pos;
    this.pos = p + 29;
    return {
      tag: "stream_commit",
      xid: v.getUint32(p),
      flags: v.getUint8(p + 4),
      commitLsn: v.getBigUint64(p + 5),
      endLsn: v.getBigUint64(p + 13),
      commitTime: v.getBigInt64(p + 21),
    };
  }

  private streamAbort(): StreamAbortMessage {
    const v = this.view, p = this.pos;
    const xid = v.getUint32(p);
    const subXid = v.getUint32(p + 4);
    if (!this.abortInfo) {
      this.pos = p + 8;
      return { tag: "stream_abort", xid, subXid, abortLsn: undefined, abortTime: undefined };
    }
    this.pos = p + 24;
    return {
      tag: "stream_abort",
      xid,
      subXid,
      abortLsn: v.getBigUint64(p + 8),
      abortTime: v.getBigInt64(p + 16),
    };
  }

  /** Reads TupleData: Int16 column count, then per column 'n', 'u', 't' or 'b'. */
  private tuple(end: number): Tuple {
    const u8 = this.u8, v = this.view;
    const n = v.getInt16(this.pos);
    let p = this.pos + 2;
    const out: ColumnValue[] = [];
    for (let i = 0; i < n; i++) {
      const kind = u8[p++];
      if (kind === 0x74) { // t
        const len = v.getInt32(p);
        const from = p + 4;
        p = from + len;
        if (len < 0 || p > end) this.overrun("tuple", end);
        out.push(
          len > LARGE_VALUE_BYTES ? new LargeValue(u8.subarray(from, p)) : decodeText(u8, from, p),
        );
      } else if (kind === 0x6e) { // n
        out.push(null);
      } else if (kind === 0x75) { // u
        out.push(undefined);
      } else if (kind === 0x62) { // b
        throw new Error(
          `pgoutput column ${i + 1} is in binary format ('b'); kvsz decodes text only: ` +
            `start replication without the "binary" option`,
        );
      } else {
        this.pos = p - 1;
        throw new Error(`unknown pgoutput tuple column kind ${tagName(kind)} in column ${i + 1}`);
      }
    }
    this.pos = p;
    return out;
  }

  /** Reads a NUL-terminated string. */
  private cstring(end: number): string {
    const u8 = this.u8, start = this.pos;
    let i = start;
    while (i < end && u8[i] !== 0) i++;
    if (i >= end) throw new Error("malformed pgoutput message: unterminated string");
    this.pos = i + 1;
    return decodeText(u8, start, i);
  }

  private badSubmessage(what: string, kind: number): never {
    throw new Error(`malformed pgoutput ${what}: unexpected tuple marker ${tagName(kind)}`);
  }

  private overrun(what: string, end: number): never {
    throw new Error(`malformed pgoutput ${what}: value runs past the end of the message (${end})`);
  }
}
