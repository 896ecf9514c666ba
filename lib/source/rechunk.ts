/** Gathers small buffers into writes of about one size (COPY sends one message per row otherwise). */
export class Rechunker {
  #buf: Uint8Array;
  #len = 0;

  constructor(readonly size: number) {
    this.#buf = new Uint8Array(size);
  }

  /** Adds `chunk`; returns a full buffer to write when one is ready. */
  push(chunk: Uint8Array): Uint8Array | null {
    if (this.#len === 0 && chunk.byteLength >= this.size) return chunk;
    if (this.#len + chunk.byteLength > this.size) {
      const out = this.#take();
      if (chunk.byteLength >= this.size) {
        // Both are big enough to send: join them so order is kept in one write.
        const joined = new Uint8Array(out.byteLength + chunk.byteLength);
        joined.set(out);
        joined.set(chunk, out.byteLength);
        return joined;
      }
      this.#buf.set(chunk, 0);
      this.#len = chunk.byteLength;
      return out;
    }
    this.#buf.set(chunk, this.#len);
    this.#len += chunk.byteLength;
    return this.#len >= this.size ? this.#take() : null;
  }

  /** Returns what is left, or null. */
  flush(): Uint8Array | null {
    return this.#len > 0 ? this.#take() : null;
  }

  #take(): Uint8Array {
    const out = this.#buf.slice(0, this.#len);
    this.#len = 0;
    return out;
  }
}
