/**
 * CopyData frames rewritten on their way through the COPY relay: the bytes
 * of runs of 'd' frames are cut into rows, each row goes through a row
 * mapper (a table's `filter` and `set`), and the rows it keeps are framed
 * again and written to the destination socket in ~64 KiB writes.
 */
import { int32At } from "../pg/frame_boundaries.ts";

const COPY_DATA = 0x64; // 'd'
const WRITE_BYTES = 64 * 1024;

/** Cuts CopyData frames out of a byte stream and writes the mapped rows as frames. */
export class MappedFrames {
  #pending: Uint8Array = new Uint8Array(0);
  #out = new Uint8Array(2 * WRITE_BYTES);
  #outLength = 0;

  /**
   * @param rowMap the mapper (its result may be reused by its next call)
   * @param write writes bytes to the destination (they are not reused)
   */
  constructor(
    readonly rowMap: (row: Uint8Array) => Uint8Array | null,
    readonly write: (bytes: Uint8Array) => void,
  ) {}

  /** Takes bytes of CopyData frames (a frame may be cut anywhere). */
  push(bytes: Uint8Array): void {
    let buf = bytes;
    if (this.#pending.length > 0) {
      buf = new Uint8Array(this.#pending.length + bytes.length);
      buf.set(this.#pending);
      buf.set(bytes, this.#pending.length);
    }
    let i = 0;
    while (buf.length - i >= 5) {
      const end = i + 1 + int32At(buf, i + 1);
      if (end > buf.length) break;
      const row = this.rowMap(buf.subarray(i + 5, end));
      if (row !== null) this.#frame(row);
      i = end;
    }
    this.#pending = i === buf.length ? new Uint8Array(0) : buf.slice(i);
    if (this.#outLength >= WRITE_BYTES) this.flush();
  }

  /** Writes what is gathered (before the frames that end the COPY are handed on). */
  flush(): void {
    if (this.#outLength === 0) return;
    this.write(this.#out.slice(0, this.#outLength));
    this.#outLength = 0;
  }

  #frame(row: Uint8Array): void {
    const need = this.#outLength + 5 + row.length;
    if (need > this.#out.length) {
      const bigger = new Uint8Array(Math.max(2 * this.#out.length, need));
      bigger.set(this.#out.subarray(0, this.#outLength));
      this.#out = bigger;
    }
    const out = this.#out;
    let at = this.#outLength;
    const length = row.length + 4;
    out[at] = COPY_DATA;
    out[at + 1] = length >>> 24;
    out[at + 2] = (length >>> 16) & 0xff;
    out[at + 3] = (length >>> 8) & 0xff;
    out[at + 4] = length & 0xff;
    out.set(row, at + 5);
    at += 5 + row.length;
    this.#outLength = at;
  }
}
