/**
 * One COPY out of the source piped into one COPY into the destination, as
 * bytes: the server's CopyData messages are re-chunked into ~64 KiB writes and
 * never parsed.
 */
import type { Sql } from "../pg/connect.ts";
import { Rechunker } from "./rechunk.ts";

/** Called about every 64 KiB: rows and bytes since the last call; may return a wait (rate limit). */
export type ChunkHook = (rows: number, bytes: number) => void | Promise<void>;

/** A failure handler that rejects once and stops the COPY-out stream `reader`. */
export function failOnce(
  reader: { destroy?: () => void },
  reject: (e: unknown) => void,
): (e: unknown) => void {
  let failed = false;
  return (e) => {
    if (failed) return;
    failed = true;
    reader.destroy?.();
    reject(e);
  };
}

/** The two statements of one COPY. */
export interface CopyStatements {
  /** `COPY … TO STDOUT`, run on the source. */
  copyOut: string;
  /** `COPY … FROM STDIN`, run on the destination. */
  copyIn: string;
  /** Both use `FORMAT binary`, whose last message is a trailer, not a row. */
  binary: boolean;
  /**
   * Rewrites each row (text format) on its way, or drops it (null): a table's
   * `filter` and `set`. The bytes it returns may be reused by its next call
   * when shorter than 32 KiB (the rechunker and the relay copy those at once).
   */
  rowMap?: (row: Uint8Array) => Uint8Array | null;
}

/** Options of {@link pipeCopy}: the statements and the hook called as rows go. */
export interface PipeOptions extends CopyStatements {
  /** Called about every 64 KiB; may return a wait (rate limit). */
  onChunk: ChunkHook;
}

/** Pipes `copyOut` into `copyIn` and returns the number of rows. */
export async function pipeCopy(
  source: Sql,
  dest: Sql,
  { copyOut, copyIn, binary, onChunk, rowMap }: PipeOptions,
): Promise<number> {
  // deno-lint-ignore no-explicit-any
  const reader: any = await source.unsafe(copyOut).readable();
  // deno-lint-ignore no-explicit-any
  const writer: any = await dest.unsafe(copyIn).writable();
  const chunker = new Rechunker(64 * 1024);
  let messages = 0;
  let reported = 0;
  let bytes = 0;
  let reportedBytes = 0;
  const report = () => {
    const wait = onChunk(messages - reported, bytes - reportedBytes);
    reported = messages;
    reportedBytes = bytes;
    return wait;
  };
  // Flowing mode with pause/resume on backpressure: async iteration over
  // porsager's COPY stream sometimes leaves the connection stuck after the last row.
  await new Promise<void>((resolve, reject) => {
    const fail = failOnce(reader, reject);
    let waits = 0; // reasons the reader is paused: destination backpressure, rate limit
    const hold = () => {
      if (waits++ === 0) reader.pause();
    };
    const release = () => {
      if (--waits === 0) reader.resume();
    };
    writer.once("error", fail);
    reader.once("error", fail);
    reader.on("data", (data: Uint8Array) => {
      messages++; // the server sends each row of COPY TO STDOUT as one CopyData message
      bytes += data.byteLength;
      let chunk: Uint8Array | null = data;
      try {
        chunk = rowMap ? rowMap(data) : data;
      } catch (e) {
        return fail(e); // an expression failed under on_error: stop
      }
      if (chunk === null) return;
      const full = chunker.push(chunk);
      if (!full) return;
      if (!writer.write(full)) {
        hold();
        writer.once("drain", release);
      }
      const wait = report();
      if (wait) {
        hold();
        wait.then(release, fail);
      }
    });
    reader.once("end", () => {
      // npm:postgres pauses its socket when the stream's buffer is full and
      // resumes it only when the stream asks for more; a COPY whose end arrived
      // while paused left the socket paused, and the connection's next query
      // (or COMMIT) hung for ever. Ask once more: that resumes the socket.
      reader._read?.();
      const rest = chunker.flush();
      if (rest) writer.write(rest);
      writer.once("finish", resolve);
      writer.end();
    });
  });
  // Binary: the header rides on the first message, the trailer is a message of its own.
  const rows = binary ? Math.max(messages - 1, 0) : messages;
  if (binary && messages > reported) messages--; // do not charge the trailer
  await report();
  return rows;
}
