/**
 * One statement sent by kvsz itself on the socket of a one-connection client,
 * for parameters the driver cannot carry. npm:postgres takes parameters only
 * as JS strings, which end at about 512 MiB (PostgreSQL's values at 1 GB),
 * and copies each one into its own buffers three or four times. Here a
 * parameter may be a {@link BinaryParam}: sent in binary format from the
 * bytes it was given (views into the replication message, never copied), in
 * writes of at most 1 MiB that wait for the socket to drain. The driver's
 * listener is set aside for the statement and given back at its
 * ReadyForQuery; the client must be idle (every earlier query answered).
 */
import { socketOf, type Sql } from "./connect.ts";
import { errorFields } from "./error_response.ts";
import { int32At } from "./frame_boundaries.ts";
import { KvszError } from "../errors.ts";

/** A statement parameter in binary format, as a run of byte pieces. */
export class BinaryParam {
  readonly byteLength: number;
  constructor(readonly parts: readonly Uint8Array[]) {
    this.byteLength = parts.reduce((n, p) => n + p.byteLength, 0);
  }
}

/** A parameter of {@link runWire}: text (or NULL), or bytes in binary format. */
export type WireParam = string | null | BinaryParam;

/**
 * The largest protocol message PostgreSQL reads (`PQ_LARGE_MESSAGE_LIMIT`,
 * 1 GB less 2 bytes, the length word included): a statement's parameters
 * together cannot be larger.
 */
export const MAX_MESSAGE_BYTES = 0x3ffffffe;

const TEXT_OID = 25;
const BLOCK = 1 << 20;
/** Large values are written in slices of this size, each waiting for the socket to drain. */
const SLICE = 4 << 20;
const encoder = new TextEncoder();

/** A `text` parameter in binary format: the value's UTF-8 bytes as they are. */
export function binaryText(bytes: Uint8Array): BinaryParam {
  return new BinaryParam([bytes]);
}

/**
 * A one-dimensional `text[]` parameter in binary format (what `array_recv`
 * reads): no quoting, no escaping, each element its length and its bytes.
 */
export function binaryTextArray(values: readonly (string | Uint8Array | null)[]): BinaryParam {
  const hasNull = values.includes(null) ? 1 : 0;
  const parts: Uint8Array[] = [int32s(1, hasNull, TEXT_OID, values.length, 1)];
  for (const v of values) {
    if (v === null) {
      parts.push(int32s(-1));
      continue;
    }
    const bytes = typeof v === "string" ? encoder.encode(v) : v;
    parts.push(int32s(bytes.byteLength), bytes);
  }
  return new BinaryParam(parts);
}

/** The statement would be a protocol message larger than PostgreSQL reads. */
export class MessageTooLarge extends KvszError {
  constructor(readonly bytes: number) {
    super(
      `the statement's values take ${
        (bytes / 1048576).toFixed(1)
      } MiB, over the 1 GB PostgreSQL takes in one message`,
    );
  }
}

/** What {@link runWire} returns: the rows (int2, int4 and bool parsed; the rest text) and the row count. */
export interface WireResult {
  rows: Record<string, unknown>[];
  count: number;
}

/**
 * Runs `text` with `params` (extended protocol, unnamed statement and
 * portal) on the socket of `sql`, a one-connection client with no query in
 * flight. A server error is thrown with npm:postgres's fields (code, detail,
 * table_name, column_name…), after the server is ready again.
 */
export async function runWire(
  sql: Sql,
  text: string,
  params: readonly WireParam[],
): Promise<WireResult> {
  const socket = socketOf(sql);
  if (!socket || socket.listenerCount("data") !== 1) {
    throw new Error("a large value needs the destination connection's own socket; it has none");
  }
  const values = params.map((p) => typeof p === "string" ? encoder.encode(p) : p);
  let bindLength = 4 + 2 + 2 + 2 * values.length + 2 + 2;
  for (const v of values) bindLength += 4 + (v === null ? 0 : v.byteLength);
  if (bindLength > MAX_MESSAGE_BYTES) throw new MessageTooLarge(bindLength);

  // Replies are read from the first byte sent: the server answers the Parse at once.
  const replies = new Replies(socket);
  try {
    await send(new BlockWriter(socket), text, { values, length: bindLength });
    return await replies.done;
  } finally {
    replies.handBack();
  }
}

/** A statement's values and the length of the Bind message that carries them. */
interface Bind {
  /** The values, encoded (null for SQL NULL). */
  values: readonly (Uint8Array | BinaryParam | null)[];
  /** The Bind message's length in bytes (checked against the limit before anything is sent). */
  length: number;
}

/** Writes Parse, Bind, Describe, Execute and Sync. */
async function send(out: BlockWriter, text: string, bind: Bind): Promise<void> {
  const { values, length: bindLength } = bind;
  const sqlText = encoder.encode(text);
  out.header(0x50, 4 + 1 + sqlText.byteLength + 1 + 2 + 4 * values.length); // Parse
  out.bytes(new Uint8Array(1));
  await out.large(sqlText);
  out.bytes(new Uint8Array(1)).int16(values.length);
  for (const _ of values) out.int32(0); // types: as the statement's casts say
  out.header(0x42, bindLength); // Bind
  out.bytes(new Uint8Array(2)).int16(values.length); // unnamed portal and statement
  for (const v of values) out.int16(v instanceof BinaryParam ? 1 : 0);
  out.int16(values.length);
  for (const v of values) {
    if (v === null) {
      out.int32(-1);
      continue;
    }
    out.int32(v.byteLength);
    if (v instanceof BinaryParam) { for (const part of v.parts) await out.large(part); }
    else await out.large(v);
  }
  out.int16(0); // results in text
  out.header(0x44, 4 + 2).bytes(new Uint8Array([0x50, 0])); // Describe the portal
  out.header(0x45, 4 + 1 + 4).bytes(new Uint8Array(1)).int32(0); // Execute
  out.header(0x53, 4); // Sync
  await out.flush();
}

/** Gathers small writes into blocks; writes large ones in slices; waits while the socket is full. */
class BlockWriter {
  #block = new Uint8Array(BLOCK);
  #view = new DataView(this.#block.buffer);
  #used = 0;

  constructor(readonly socket: NodeSocket) {}

  header(type: number, length: number): this {
    return this.bytes(new Uint8Array([type])).int32(length);
  }

  int16(n: number): this {
    this.#room(2);
    this.#view.setInt16(this.#used, n);
    this.#used += 2;
    return this;
  }

  int32(n: number): this {
    this.#room(4);
    this.#view.setInt32(this.#used, n);
    this.#used += 4;
    return this;
  }

  /** Adds small bytes (they must fit a block). */
  bytes(b: Uint8Array): this {
    this.#room(b.byteLength);
    this.#block.set(b, this.#used);
    this.#used += b.byteLength;
    return this;
  }

  /** Adds bytes of any size: copied into the block when small, else sent from where they are. */
  async large(b: Uint8Array): Promise<void> {
    if (b.byteLength <= BLOCK - this.#used) {
      this.bytes(b);
      return;
    }
    await this.flush();
    for (let p = 0; p < b.byteLength; p += SLICE) {
      await this.#send(b.subarray(p, Math.min(p + SLICE, b.byteLength)));
    }
  }

  async flush(): Promise<void> {
    if (this.#used === 0) return;
    const block = this.#block.slice(0, this.#used);
    this.#used = 0;
    await this.#send(block);
  }

  #room(n: number): void {
    if (this.#used + n <= BLOCK) return;
    // Only small writes reach here, and a block is written between large ones.
    const block = this.#block.slice(0, this.#used);
    this.#used = 0;
    this.socket.write(block);
  }

  async #send(b: Uint8Array): Promise<void> {
    if (this.socket.write(b)) return;
    await new Promise<void>((resolve, reject) => {
      const done = (e?: unknown) => {
        this.socket.off("drain", done).off("close", closed);
        if (e) reject(e);
        else resolve();
      };
      const closed = () =>
        done(new Error("destination connection closed while writing a large value"));
      this.socket.once("drain", done).once("close", closed);
    });
  }
}

type NodeSocket = NonNullable<ReturnType<typeof socketOf>>;

/** Reads the statement's replies off the socket until ReadyForQuery, the driver's listener set aside. */
class Replies {
  readonly done: Promise<WireResult>;
  #resolve!: (r: WireResult) => void;
  #reject!: (e: unknown) => void;
  readonly #driver: (chunk: Uint8Array) => void;
  readonly #onData = (chunk: Uint8Array) => this.#read(chunk);
  readonly #onClose = () =>
    this.#reject(new Error("destination connection closed during a statement"));
  #pending = new Uint8Array(0);
  #columns: { name: string; type: number }[] = [];
  #rows: Record<string, unknown>[] = [];
  #count = 0;
  #error: Error | null = null;
  #handedBack = false;

  constructor(readonly socket: NodeSocket) {
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.done.catch(() => {}); // awaited once the statement is sent

    this.#driver = socket.listeners("data")[0] as (chunk: Uint8Array) => void;
    socket.removeListener("data", this.#driver);
    socket.on("data", this.#onData);
    socket.once("close", this.#onClose);
  }

  /** Gives the socket back to the driver (idempotent). */
  handBack(rest?: Uint8Array): void {
    if (this.#handedBack) return;
    this.#handedBack = true;
    this.socket.removeListener("data", this.#onData);
    this.socket.removeListener("close", this.#onClose);
    this.socket.on("data", this.#driver);
    if (rest && rest.byteLength > 0) this.#driver(rest);
  }

  #read(chunk: Uint8Array): void {
    let buf = chunk;
    if (this.#pending.byteLength > 0) {
      buf = new Uint8Array(this.#pending.byteLength + chunk.byteLength);
      buf.set(this.#pending);
      buf.set(chunk, this.#pending.byteLength);
    }
    let i = 0;
    while (buf.byteLength - i >= 5) {
      const end = i + 1 + int32At(buf, i + 1);
      if (end > buf.byteLength) break;
      const type = buf[i];
      const body = buf.subarray(i + 5, end);
      i = end;
      if (type === 0x5a) { // ReadyForQuery
        this.handBack(buf.subarray(i));
        if (this.#error) this.#reject(this.#error);
        else this.#resolve({ rows: this.#rows, count: this.#count });
        return;
      }
      this.#message(type, body);
    }
    this.#pending = buf.slice(i);
  }

  #message(type: number, body: Uint8Array): void {
    switch (type) {
      case 0x54: // RowDescription
        this.#columns = rowDescription(body);
        return;
      case 0x44: // DataRow
        this.#rows.push(dataRow(body, this.#columns));
        return;
      case 0x43: { // CommandComplete: "INSERT 0 3", "UPDATE 2", "SELECT 1"
        const tag = new TextDecoder().decode(body.subarray(0, body.byteLength - 1));
        this.#count = Number(tag.match(/(\d+)$/)?.[1] ?? 0);
        return;
      }
      case 0x45: // ErrorResponse
        this.#error ??= serverError(body);
        return;
      default: // ParseComplete, BindComplete, NoData, notices, parameter status
        return;
    }
  }
}

function rowDescription(body: Uint8Array): { name: string; type: number }[] {
  const n = (body[0] << 8) | body[1];
  const columns = [];
  let p = 2;
  for (let c = 0; c < n; c++) {
    const nul = body.indexOf(0, p);
    const name = new TextDecoder().decode(body.subarray(p, nul));
    columns.push({ name, type: int32At(body, nul + 7) });
    p = nul + 19;
  }
  return columns;
}

function dataRow(
  body: Uint8Array,
  columns: { name: string; type: number }[],
): Record<string, unknown> {
  const row: Record<string, unknown> = {};
  let p = 2;
  for (const { name, type } of columns) {
    const length = int32At(body, p) | 0;
    p += 4;
    if (length < 0) {
      row[name] = null;
      continue;
    }
    const text = new TextDecoder().decode(body.subarray(p, p + length));
    p += length;
    row[name] = type === 21 || type === 23 ? Number(text) : type === 16 ? text === "t" : text;
  }
  return row;
}

/** The server's error as npm:postgres reports it (message without detail; fields by name). */
function serverError(body: Uint8Array): Error {
  const f = errorFields(body);
  return Object.assign(new Error(f.get("M") ?? "server error"), {
    name: "PostgresError",
    severity: f.get("S"),
    code: f.get("C"),
    detail: f.get("D"),
    hint: f.get("H"),
    where: f.get("W"),
    schema_name: f.get("s"),
    table_name: f.get("t"),
    column_name: f.get("c"),
    constraint_name: f.get("n"),
  });
}

/** `int32` big-endian words. */
function int32s(...words: number[]): Uint8Array {
  const b = new Uint8Array(4 * words.length);
  const v = new DataView(b.buffer);
  words.forEach((w, i) => v.setInt32(4 * i, w));
  return b;
}
