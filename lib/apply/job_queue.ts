/**
 * A serial job queue: destination work runs one job at a time, in the order
 * it was queued, each job starting when the one before it has settled. The
 * first failure stops the queue: later jobs do not run, and {@link failed}
 * rejects with the failure as `explain` reads it against the failed job's
 * scope. The caller waits only when a job is already waiting behind the
 * running one, so that at most two jobs (and what they carry) are held.
 */
export class JobQueue<Scope> {
  /** The last queued job; the next one starts when it settles. */
  #tail: Promise<void> = Promise.resolve();
  /** Jobs queued and not finished (the running one included). */
  #jobs = 0;
  #failure: unknown = null;
  #reportFailure: (e: unknown) => void = () => {};
  /** Rejects with the queue's failure (a job's, or one given to {@link fail}). */
  readonly failed: Promise<never> = new Promise((_, reject) => {
    this.#reportFailure = reject;
  });

  constructor(
    private readonly opts: {
      /** What a job's failure is reported as, read against the scope it was queued with. */
      explain: (e: unknown, scope: Scope) => unknown;
      /** Called after each job that succeeded. */
      afterJob: () => void;
      /** Runs a job's promise (e.g. watched for an unanswered destination); default: awaits it. */
      watch?: (job: Promise<void>) => Promise<void>;
    },
  ) {
    this.failed.catch(() => {}); // observed by whoever races it
  }

  /** Jobs queued and not finished, the running one included. */
  get size(): number {
    return this.#jobs;
  }

  /** The failure that stopped the queue, or null. */
  get failure(): unknown {
    return this.#failure;
  }

  /** Settles when every job queued so far has (it never rejects: see {@link failed}). */
  get settled(): Promise<void> {
    return this.#tail;
  }

  /** Stops the queue with `e` (unless it failed already): no later job runs. */
  fail(e: unknown): void {
    if (this.#failure) return;
    this.#failure = e;
    this.#reportFailure(e);
  }

  /**
   * Queues `work`. Returns a promise when the caller should wait: while an
   * earlier job is still queued behind the running one.
   */
  push(scope: Scope, work: () => Promise<void>): Promise<void> | undefined {
    const before = this.#tail;
    const mustWait = this.#jobs > 0;
    this.#jobs++;
    const job = before.then(() => {
      if (this.#failure) throw this.#failure;
      return this.opts.watch ? this.opts.watch(work()) : work();
    });
    this.#tail = job.then(
      () => {
        this.#jobs--;
        this.opts.afterJob();
      },
      (e) => {
        this.#jobs--;
        if (!this.#failure) this.fail(this.opts.explain(e, scope));
      },
    );
    return mustWait ? before : undefined;
  }
}
