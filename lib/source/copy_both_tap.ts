/**
 * Takes the replication stream's bytes straight off the socket. The driver
 * would make a Buffer and a stream event of every CopyData message (most of
 * the reader's time on a large transaction) and buffers without bound once
 * its stream is paused. The tap hands the driver every frame up to and
 * including its CopyBothResponse (so START_REPLICATION resolves as usual),
 * then queues the socket's chunks as they are for the reader, which parses
 * the frames in place ({@link CopyDataFrames}). A frame that is not CopyData
 * (an error, the end of the copy) goes back to the driver at once with
 * everything after it, so the driver's stream reports it as before. Writes
 * (standby status updates) still go through the driver.
 */
import type net from "node:net";
import { ERROR_RESPONSE, parseErrorResponse } from "../pg/error_response.ts";
import { FrameBoundaries, int32At } from "../pg/frame_boundaries.ts";
import { LARGE_VALUE_BYTES, releaseBuffer } from "./messages.ts";

const COPY_BOTH_RESPONSE = 0x57; // 'W'
const COPY_DATA = 0x64; // 'd'

/** Sits between the replication socket and the driver; see the module comment. */
export class CopyBothTap {
  /** Chunks received after the CopyBothResponse, not yet taken. */
  #chunks: Uint8Array[] = [];
  #bytes = 0;
  /** Called when a chunk was queued. */
  onChunk: () => void = () => {};
  /** Called with the server's error when it ends the stream with one. */
  onError: (e: Error) => void = () => {};
  #phase: "before" | "copy" | "after" = "before";
  readonly #driver: (chunk: Uint8Array) => void;
  readonly #listener = (chunk: Uint8Array) => this.#receive(chunk);
  readonly #frames = new FrameBoundaries();
  #paused = false;

  /** Installs the tap; `socket` must have exactly the driver's data listener. */
  constructor(readonly socket: net.Socket, private readonly maxQueuedBytes: number) {
    this.#driver = socket.listeners("data")[0] as (chunk: Uint8Array) => void;
    socket.removeListener("data", this.#driver);
    socket.on("data", this.#listener);
  }

  /** True when the socket is a plain one the driver reads itself (not TLS, not shared). */
  static fits(socket: net.Socket | null): socket is net.Socket {
    return socket !== null && socket.listenerCount("data") === 1;
  }

  /** Takes the queued chunks, resuming the socket if the queue had paused it. */
  take(): Uint8Array[] {
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#bytes = 0;
    if (this.#paused && this.#phase === "copy") {
      this.#paused = false;
      this.socket.resume();
    }
    return chunks;
  }

  /** True while chunks are queued. */
  get queued(): boolean {
    return this.#chunks.length > 0;
  }

  /** From now on drops what arrives (the stream is over; the connection is being closed). */
  discard(): void {
    if (this.#phase === "after") return;
    if (this.#phase === "before") return this.handBack(); // frames still line up for the driver
    this.#phase = "after";
    this.socket.removeListener("data", this.#listener);
    this.socket.on("data", () => {});
    this.#chunks = [];
    if (this.#paused) this.socket.resume();
  }

  /**
   * Gives the socket back to the driver, `rest` first (a frame that is not
   * CopyData and what follows it). Chunks already queued stay for the reader:
   * they end on a frame boundary.
   */
  handBack(rest?: Uint8Array): void {
    if (this.#phase === "after") return;
    this.#phase = "after";
    this.socket.removeListener("data", this.#listener);
    this.socket.on("data", this.#driver);
    if (this.#paused) {
      this.#paused = false;
      this.socket.resume();
    }
    if (rest) this.#driver(rest);
  }

  /**
   * Walks the frame headers of each chunk (bodies are skipped, not read):
   * before the copy to find where the CopyBothResponse ends, during it to
   * find a frame that is not CopyData, which goes back to the driver at once
   * (an error is reported even when the server closes the connection next).
   */
  #receive(chunk: Uint8Array): void {
    if (this.#phase === "after") return this.#driver(chunk);
    let from = 0; // bytes before it are handed on
    let i = 0;
    const frames = this.#frames;
    while (i < chunk.length) {
      if (frames.atStart && this.#phase === "copy" && chunk[i] !== COPY_DATA) {
        if (i > from) this.#queue(chunk.subarray(from, i));
        // The driver reports an error sent just before the server closes the
        // connection as "CONNECTION_CLOSED": report the server's own words.
        const end = i + 1 + int32At(chunk, i + 1);
        if (chunk[i] === ERROR_RESPONSE && i + 5 <= chunk.length && end <= chunk.length) {
          this.onError(parseErrorResponse(chunk.subarray(i + 5, end)));
        }
        this.handBack(chunk.subarray(i));
        return;
      }
      i = frames.skip(chunk, i);
      if (this.#phase === "before" && frames.atStart && frames.type === COPY_BOTH_RESPONSE) {
        this.#driver(chunk.subarray(from, i));
        from = i;
        this.#phase = "copy";
      }
    }
    if (i > from) {
      if (this.#phase === "copy") this.#queue(chunk.subarray(from, i));
      else this.#driver(chunk.subarray(from, i));
    }
  }

  #queue(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.byteLength;
    if (!this.#paused && this.#bytes >= this.maxQueuedBytes) {
      this.#paused = true;
      this.socket.pause();
    }
    this.onChunk();
  }
}

/**
 * Splits socket chunks into CopyData frame bodies, across chunk boundaries.
 * A frame split between chunks is gathered into a buffer of its own size
 * (freed once handled when it is larger than {@link LARGE_VALUE_BYTES}).
 */
export class CopyDataFrames {
  #header = new Uint8Array(5);
  #headerLength = 0;
  /** The frame being gathered (body only) and how much of it is filled. */
  #frame: Uint8Array | null = null;
  #filled = 0;
  #halted = false;

  /** Makes {@link each} stop after the current frame, for good. */
  halt(): void {
    this.#halted = true;
  }

  get halted(): boolean {
    return this.#halted;
  }

  /**
   * Calls `frame(buf, start, end)` for each whole CopyData body in `chunk`
   * (after the bytes carried over from earlier chunks), until the chunk is
   * consumed or {@link halt} is called. `frame` may return a promise to wait
   * for; `after` runs after each frame.
   */
  async each(
    chunk: Uint8Array,
    frame: (buf: Uint8Array, start: number, end: number) => void | Promise<void>,
    after: () => void,
  ): Promise<void> {
    let i = 0;
    const n = chunk.length;
    if (this.#headerLength > 0 || this.#frame) {
      // Finish the frame carried over.
      if (this.#headerLength < 5) {
        const take = Math.min(5 - this.#headerLength, n);
        this.#header.set(chunk.subarray(0, take), this.#headerLength);
        this.#headerLength += take;
        i = take;
        if (this.#headerLength < 5) return;
        const h = this.#header;
        if (h[0] !== COPY_DATA) notCopyData(h[0]);
        this.#frame = new Uint8Array(int32At(h, 1) - 4);
        this.#filled = 0;
      }
      const f = this.#frame!;
      const take = Math.min(f.length - this.#filled, n - i);
      f.set(chunk.subarray(i, i + take), this.#filled);
      this.#filled += take;
      i += take;
      if (this.#filled < f.length) return;
      this.#frame = null;
      this.#headerLength = 0;
      const wait = frame(f, 0, f.length);
      if (wait) await wait;
      after();
      if (f.length > LARGE_VALUE_BYTES) releaseBuffer(f); // handled, and the frame's own
    }
    while (i < n && !this.#halted) {
      if (n - i < 5) {
        this.#header.set(chunk.subarray(i), 0);
        this.#headerLength = n - i;
        return;
      }
      if (chunk[i] !== COPY_DATA) notCopyData(chunk[i]);
      const end = i + 1 + int32At(chunk, i + 1);
      if (end > n) {
        this.#header.set(chunk.subarray(i, i + 5), 0);
        this.#headerLength = 5;
        this.#frame = new Uint8Array(end - i - 5);
        this.#frame.set(chunk.subarray(i + 5), 0);
        this.#filled = n - i - 5;
        return;
      }
      const wait = frame(chunk, i + 5, end);
      if (wait) await wait;
      after();
      i = end;
    }
  }
}

/** The tap hands every other frame to the driver; meeting one here is a bug. */
function notCopyData(type: number): never {
  throw new Error(
    `replication stream: unexpected protocol message 0x${type.toString(16)} among CopyData`,
  );
}
