/**
 * kvsz's error model. An error that leaves the layer it was raised in is a
 * {@link KvszError}: its class names what went wrong and its `recovery` says
 * how a source's pipeline goes on (see `lib/engine/recovery.ts`). Any other
 * error is taken for a transient failure.
 */

/**
 * How a pipeline goes on after an error:
 * - `reconnect`: at once, with what the error changed (a transaction to
 *   spool, changes to apply one at a time, a table left out);
 * - `backoff`: a transient failure, retried after 1 s doubling to 30 s;
 * - `needs-person`: retrying will not fix it by itself (a missing table, a
 *   slot in use, `wal_level`): said once with its fix, retried slowly.
 */
export type Recovery = "reconnect" | "backoff" | "needs-person";

/** Base of kvsz's errors: a name, an optional cause, and how to recover. */
export class KvszError extends Error {
  get recovery(): Recovery {
    return "backoff";
  }

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A problem retrying will not fix by itself: the message names it and says the fix. */
export class NeedsPersonError extends KvszError {
  override get recovery(): Recovery {
    return "needs-person";
  }
}

/**
 * A transaction applied while it streams cannot go on that way: a savepoint
 * of it was rolled back after its changes were written, it touched a table
 * that cannot take changes before their commit time is known, or
 * transactions committed meanwhile waited too long for it. The pipeline
 * reconnects at once and the server streams the transaction again; this
 * time it is spooled and applied at its commit. Nothing is lost: nothing
 * since the last destination commit was acknowledged.
 */
export class StreamRestart extends KvszError {
  override get recovery(): Recovery {
    return "reconnect";
  }

  constructor(readonly xid: number, reason: string) {
    super(`transaction ${xid}: ${reason}; applying it at its commit instead`);
  }
}
