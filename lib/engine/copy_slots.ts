/**
 * Turns of the initial copy, shared by every source: at most `size` copy
 * tasks (a table, or a page range of one) run at once in the process, each
 * with its source and destination connection. A task waiting for its turn
 * holds no connection; turns are given in the order they were asked for.
 */
export class CopySlots {
  #free: number;
  #waiting: { grant: () => void; signal?: AbortSignal; onAbort: () => void }[] = [];

  constructor(readonly size: number) {
    this.#free = size;
  }

  /** True when a task waits for a turn: a worker done with its task gives its turn up. */
  get contended(): boolean {
    return this.#waiting.length > 0;
  }

  /** Waits for a turn, in line; rejects once `signal` aborts. */
  acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#free > 0 && this.#waiting.length === 0) {
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const entry = {
        grant: () => {
          signal?.removeEventListener("abort", entry.onAbort);
          resolve();
        },
        signal,
        onAbort: () => {
          this.#waiting.splice(this.#waiting.indexOf(entry), 1);
          reject(signal!.reason);
        },
      };
      signal?.addEventListener("abort", entry.onAbort, { once: true });
      this.#waiting.push(entry);
    });
  }

  /** Gives a turn back (to the first in line). */
  release(): void {
    const next = this.#waiting.shift();
    if (next) next.grant();
    else this.#free++;
  }
}
