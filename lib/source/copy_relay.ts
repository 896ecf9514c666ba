/**
 * A COPY relayed between two servers without touching its rows: during
 * `COPY … TO STDOUT` the source sends each row as a CopyData frame ('d',
 * length, row), exactly the frame the destination takes during `COPY … FROM
 * STDIN`. So the bytes of runs of 'd' frames go from the source socket's
 * buffers straight into the destination socket, parsed only for their
 * lengths. The driver still sends both statements and reads every other frame
 * (CopyOutResponse, CopyDone, CommandComplete, errors), so its state stays right.
 * A copy with a row mapper (a table's `filter` and `set`) has its frames cut
 * into rows, mapped and framed again on the way (copy_rows_relay.ts).
 */
import type net from "node:net";
import { socketOf, type Sql } from "../pg/connect.ts";
import { type ChunkHook, failOnce, type PipeOptions } from "./copy_pipe.ts";
import { ERROR_RESPONSE, parseErrorResponse } from "../pg/error_response.ts";
import { FrameBoundaries, int32At } from "../pg/frame_boundaries.ts";
import { MappedFrames } from "./copy_rows_relay.ts";

/** Options of {@link relayCopy}. */
export interface RelayOptions extends PipeOptions {
  /** The socket under `dest` when it is a transaction of a one-connection client (default: `dest`'s own). */
  destSocket?: net.Socket | null;
}

const COPY_DATA = 0x64; // 'd'
const COPY_OUT_RESPONSE = 0x48; // 'H'

/**
 * Relays `copyOut` (run on `source`) into `copyIn` (run on `dest`) and returns
 * the number of rows, or null when either has no plain TCP socket of its own
 * (then use `pipeCopy`).
 */
export async function relayCopy(
  source: Sql,
  dest: Sql,
  { copyOut, copyIn, binary, onChunk, destSocket, rowMap }: RelayOptions,
): Promise<number | null> {
  const from = socketOf(source);
  const to = destSocket ?? socketOf(dest);
  if (!from || !to || from.listenerCount("data") !== 1) return null;
  // The destination is in COPY FROM STDIN before the first source row can arrive.
  // deno-lint-ignore no-explicit-any
  const writer: any = await dest.unsafe(copyIn).writable();
  const relay = new FrameRelay(from, to, rowMap);
  const watch = new DestinationErrors(to);
  try {
    // deno-lint-ignore no-explicit-any
    const reader: any = await source.unsafe(copyOut).readable();
    await new Promise<void>((resolve, reject) => {
      const fail = failOnce(reader, reject);
      relay.onChunk = () => {
        const wait = relay.report(onChunk);
        if (wait) {
          relay.hold();
          wait.then(() => relay.release(), fail);
        }
      };
      writer.once("error", fail);
      watch.onError = fail;
      relay.onError = fail;
      reader.once("error", fail);
      // Rows the driver reads itself (after an unexpected frame handed the copy back).
      reader.on("data", (data: Uint8Array) => {
        relay.rows++;
        let row: Uint8Array | null = data;
        try {
          row = rowMap ? rowMap(data) : data;
        } catch (e) {
          return fail(e);
        }
        if (row === null) return;
        if (!writer.write(rowMap ? row.slice() : row)) {
          reader.pause();
          writer.once("drain", () => reader.resume());
        }
      });
      reader.once("end", () => {
        writer.once("finish", resolve);
        writer.end();
      });
    });
  } finally {
    relay.stop();
    watch.stop();
  }
  // Binary: the header rides on the first frame, the trailer is a frame of its own.
  if (binary && relay.rows > 0) relay.rows--;
  await relay.report(onChunk);
  return relay.rows;
}

/**
 * Reads along on the destination socket during the COPY: an ErrorResponse
 * after the writable's end() is lost by the driver (its `finish` never comes),
 * so the relay fails with the server's message itself.
 */
class DestinationErrors {
  onError: (e: Error) => void = () => {};
  #pending: Uint8Array = new Uint8Array(0);
  readonly #listener = (chunk: Uint8Array) => this.#read(chunk);

  constructor(readonly socket: net.Socket) {
    socket.on("data", this.#listener);
  }

  stop(): void {
    this.socket.removeListener("data", this.#listener);
  }

  #read(chunk: Uint8Array): void {
    const buf = new Uint8Array(this.#pending.length + chunk.length);
    buf.set(this.#pending);
    buf.set(chunk, this.#pending.length);
    let i = 0;
    while (buf.length - i >= 5) {
      const length = int32At(buf, i + 1);
      if (buf.length - i < length + 1) break;
      if (buf[i] === ERROR_RESPONSE) {
        this.onError(parseErrorResponse(buf.subarray(i + 5, i + 1 + length)));
      }
      i += length + 1;
    }
    this.#pending = buf.slice(i);
  }
}

/**
 * Sits between the source socket and the driver: frames go to the driver
 * until its CopyOutResponse, then CopyData frames go to the destination
 * socket, and from the first other frame on everything goes to the driver again.
 */
class FrameRelay {
  rows = 0;
  bytes = 0;
  onChunk: () => void = () => {};
  /** Called when the row mapper fails (a `stop` policy): the copy fails with it. */
  onError: (e: unknown) => void = () => {};
  #reportedRows = 0;
  #reportedBytes = 0;
  #phase: "before" | "copy" | "after" = "before";
  readonly #driver: (chunk: Uint8Array) => void;
  readonly #listener = (chunk: Uint8Array) => this.#relay(chunk);
  readonly #frames = new FrameBoundaries();
  #toDest = false;
  #holds = 0;
  /** With a row mapper: CopyData frames are rewritten, not passed as they are. */
  readonly #mapped: MappedFrames | null;

  constructor(
    readonly from: net.Socket,
    readonly to: net.Socket,
    rowMap?: (row: Uint8Array) => Uint8Array | null,
  ) {
    this.#mapped = rowMap ? new MappedFrames(rowMap, (bytes) => this.#write(bytes)) : null;
    this.#driver = from.listeners("data")[0] as (chunk: Uint8Array) => void;
    from.removeListener("data", this.#driver);
    from.on("data", this.#listener);
  }

  /** Pauses the source (destination backpressure, rate limit); counted. */
  hold(): void {
    if (this.#holds++ === 0) this.from.pause();
  }

  release(): void {
    if (--this.#holds === 0) this.from.resume();
  }

  /** Hands the socket back to the driver (idempotent). */
  stop(): void {
    if (this.#phase === "after") return;
    this.#phase = "after";
    this.from.removeListener("data", this.#listener);
    this.from.on("data", this.#driver);
  }

  /** Tells `hook` the rows and bytes (without frame headers) since the last report. */
  report(hook: ChunkHook): void | Promise<void> {
    const bytes = this.bytes - 5 * this.rows;
    const wait = hook(this.rows - this.#reportedRows, bytes - this.#reportedBytes);
    this.#reportedRows = this.rows;
    this.#reportedBytes = bytes;
    return wait;
  }

  #relay(chunk: Uint8Array): void {
    let start = 0; // first byte not yet handed on
    let i = 0;
    const handOn = (end: number) => {
      if (end > start) this.#emit(chunk.subarray(start, end));
      start = end;
    };
    while (i < chunk.length) {
      if (this.#frames.atStart) {
        // A frame starts: decide where its bytes go.
        const type = chunk[i];
        if (this.#phase === "copy" && type !== COPY_DATA) {
          handOn(i);
          this.#mapped?.flush(); // the rows before the driver's CopyDone
          this.stop();
          this.#driver(chunk.subarray(i));
          this.onChunk();
          return;
        }
        const toDest = this.#phase === "copy";
        if (toDest !== this.#toDest) {
          handOn(i);
          this.#toDest = toDest;
        }
        if (toDest) this.rows++;
        else if (type === COPY_OUT_RESPONSE) this.#phase = "copy"; // from its next frame on
      }
      i = this.#frames.skip(chunk, i);
    }
    handOn(chunk.length);
    this.onChunk();
  }

  #emit(bytes: Uint8Array): void {
    if (!this.#toDest) {
      this.#driver(bytes);
      return;
    }
    this.bytes += bytes.byteLength;
    if (this.#mapped) {
      try {
        this.#mapped.push(bytes);
      } catch (e) {
        this.onError(e);
      }
      return;
    }
    this.#write(bytes);
  }

  #write(bytes: Uint8Array): void {
    if (!this.to.write(bytes)) {
      this.hold();
      this.to.once("drain", () => this.release());
    }
  }
}
