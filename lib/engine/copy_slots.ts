/**
 * Turns of the initial copy, shared by every source: at most `size` copy
 * tasks (a table, or a page range of one) run at once in the process, each
 * with its source and destination connection. A task waiting for its turn
 * holds no connection. A source takes its first turn before its slot and
 * snapshot exist ({@link CopySlots.start}), so a source in line holds no
 * snapshot and keeps no WAL; the tasks of copies under way are served before
 * sources that have not started theirs (a copy started is finished first),
 * each line in the order it asked.
 */
export class CopySlots {
  #free: number;
  /** Tasks of copies under way. */
  #tasks: Waiting[] = [];
  /** Sources waiting to start their copy. */
  #starts: Waiting[] = [];

  constructor(readonly size: number) {
    this.#free = size;
  }

  /** True when a task of a copy under way waits for a turn: a worker done with its task gives its turn up. */
  get contended(): boolean {
    return this.#tasks.length > 0;
  }

  /** Waits for a turn for a task of a copy under way; rejects once `signal` aborts. */
  acquire(signal?: AbortSignal): Promise<void> {
    return this.#wait(this.#tasks, signal);
  }

  /**
   * Waits for the turn a source starts its copy with, behind the tasks of
   * copies under way; rejects once `signal` aborts. The copy's first task runs
   * on it (see {@link CopyTurn}).
   */
  async start(signal?: AbortSignal): Promise<CopyTurn> {
    await this.#wait(this.#starts, signal);
    return new CopyTurn(this);
  }

  /** Gives a turn back (to the first task in line, else the first source). */
  release(): void {
    const next = this.#tasks.shift() ?? this.#starts.shift();
    if (next) next.grant();
    else this.#free++;
  }

  #wait(line: Waiting[], signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#free > 0) { // nobody waits while a turn is free
      this.#free--;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const entry: Waiting = {
        grant: () => {
          signal?.removeEventListener("abort", entry.onAbort);
          resolve();
        },
        onAbort: () => {
          line.splice(line.indexOf(entry), 1);
          reject(signal!.reason);
        },
      };
      signal?.addEventListener("abort", entry.onAbort, { once: true });
      line.push(entry);
    });
  }
}

interface Waiting {
  grant: () => void;
  onAbort: () => void;
}

/** The turn a source took to start its copy: its first task takes it over, else it is given back. */
export class CopyTurn {
  #held = true;

  constructor(private readonly slots: CopySlots) {}

  /** Hands the turn to a task (true), once; the task gives it back as any turn. */
  take(): boolean {
    const held = this.#held;
    this.#held = false;
    return held;
  }

  /** Gives the turn back unless a task took it. */
  release(): void {
    if (this.take()) this.slots.release();
  }
}
