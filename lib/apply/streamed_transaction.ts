/**
 * The source transaction an applier applies as it streams (the reader's
 * `"apply-as-it-arrives"`, see `StreamedApply` in lib/source/reader.ts): its
 * changes, and those of the transactions committed meanwhile, go into one
 * destination transaction that commits at its Stream Commit. At most one
 * per applier.
 */
import { StreamRestart } from "../errors.ts";
import type { TableRoute } from "./types.ts";

/** One transaction applied as it streams, from its first Stream Start to its Stream Commit or Abort. */
export class StreamedTransaction {
  #holdTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(readonly xid: number) {}

  /**
   * Changes before their commit time is known go only to clone targets whose
   * copy the stream has passed (`lastCommitLsn`): otherwise the commit may
   * fall on either side of the copy's snapshot (before it, the copy holds the
   * changes already). Throws a {@link StreamRestart} (spool it instead) when not.
   */
  checkRoute(route: TableRoute, lastCommitLsn: bigint): void {
    if (route.mode !== "clone") {
      throw new StreamRestart(this.xid, `it changes ${route.source}, a ${route.mode} table`);
    }
    if (route.syncedLsn > lastCommitLsn) {
      throw new StreamRestart(
        this.xid,
        `the stream has not passed the copy of ${route.source} yet`,
      );
    }
  }

  /**
   * A transaction committed meanwhile waits for this one (they share its
   * destination transaction), but not longer than `waitMs`: then `fail` is
   * given a {@link StreamRestart}.
   */
  hold(waitMs: number, fail: (e: StreamRestart) => void): void {
    this.#holdTimer ??= setTimeout(() => {
      fail(
        new StreamRestart(this.xid, `transactions committed meanwhile waited ${waitMs} ms for it`),
      );
    }, waitMs);
  }

  /** Committed or rolled back: nothing waits any more. */
  end(): void {
    clearTimeout(this.#holdTimer);
  }
}
