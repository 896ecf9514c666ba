/**
 * Raised when a transaction applied while it streams (see `Applier`'s
 * streamed transaction) cannot go on that way: a savepoint of it was rolled
 * back after its changes were written, it touched a table that cannot take
 * changes before their commit time is known, or transactions committed
 * meanwhile waited too long for it. The pipeline reconnects at once and the
 * server streams the transaction again; this time it is spooled and applied
 * at its commit. Nothing is lost: nothing since the last destination commit
 * was acknowledged.
 */
export class StreamRestart extends Error {
  constructor(readonly xid: number, reason: string) {
    super(`transaction ${xid}: ${reason}; applying it at its commit instead`);
    this.name = "StreamRestart";
  }
}
