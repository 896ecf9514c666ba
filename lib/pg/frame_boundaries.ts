/**
 * Follows protocol message boundaries across socket reads without reading
 * the bodies, for code that routes a connection's bytes itself
 * (`lib/source/copy_relay.ts`, `lib/source/copy_both_tap.ts`).
 */
/** The unsigned big-endian Int32 at `p` (message lengths, xids). */
export function int32At(b: Uint8Array, p: number): number {
  return ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
}

export class FrameBoundaries {
  /** Type byte and Int32 length of the current message, as far as seen. */
  #header = new Uint8Array(5);
  #headerLength = 0;
  /** Body bytes of the current message still to come. */
  #left = 0;

  /** True when the next byte starts a message. */
  get atStart(): boolean {
    return this.#headerLength === 0;
  }

  /** Type of the current message (or of the one just ended). */
  get type(): number {
    return this.#header[0];
  }

  /**
   * Passes over the current message's bytes in `chunk` from `i` on and
   * returns the position after them: the end of the message (then
   * {@link atStart} is true) or the end of the chunk.
   */
  skip(chunk: Uint8Array, i: number): number {
    if (this.#headerLength < 5) {
      const take = Math.min(5 - this.#headerLength, chunk.length - i);
      this.#header.set(chunk.subarray(i, i + take), this.#headerLength);
      this.#headerLength += take;
      i += take;
      if (this.#headerLength < 5) return i;
      const h = this.#header;
      this.#left = int32At(h, 1) - 4;
    }
    const take = Math.min(this.#left, chunk.length - i);
    this.#left -= take;
    if (this.#left === 0) this.#headerLength = 0;
    return i + take;
  }
}
