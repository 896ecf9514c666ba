/**
 * Keeps a source able to stop while kvsz cannot confirm what it received. At
 * a shutdown the walsender waits until its client has confirmed everything
 * it sent (`WalSndDone` in walsender.c); kvsz confirms only what its
 * destination committed, and keeps answering keepalives, so a stalled apply
 * (a lock on a target, a stuck destination) would hold the source's shutdown
 * for as long as it stalls. PostgreSQL 19 bounds that wait on the server
 * (`wal_sender_shutdown_timeout`, off by default); older servers wait for
 * ever. While the apply stalls, the watch asks the source over an ordinary
 * connection whether it still takes work; when it answers that it is
 * shutting down (or is gone), the caller closes the replication connection,
 * and what was not confirmed streams again from kvsz.progress once the source
 * is back.
 */
import { socketOf, type Sql } from "../pg/connect.ts";
import type { ServerProbe } from "./server_probe.ts";
import { everySecond } from "./ticker.ts";
import { errorCode, pgErrorFields } from "../pg/errors.ts";

/** What the watch reads of the apply. */
export interface ApplyProgress {
  /** True while anything received is not committed in the destination. */
  readonly busy: boolean;
  /** Everything below this LSN is committed in the destination. */
  readonly safeLsn: bigint;
}

/** Options for {@link watchSourceShutdown}. */
export interface ShutdownWatchOptions {
  /** Milliseconds the apply must stall (busy, safe LSN unchanged) before the source is asked (default 2000). */
  stallMs?: number;
  /** Called once, when the source answered that it stops; `error` is its answer. */
  onShutdown(error: string, stalledMs: number): void;
}

/**
 * Starts watching; returns the function that stops it. `probe` asks the
 * source `SELECT 1` over an ordinary (not replication) connection (its
 * server's shared one: server_probe.ts), at most once a second while the
 * apply stalls (ticker.ts).
 */
export function watchSourceShutdown(
  probe: Pick<ServerProbe, "ask">,
  apply: ApplyProgress,
  opts: ShutdownWatchOptions,
): () => void {
  const stallMs = opts.stallMs ?? 2000;
  let lsn = apply.safeLsn;
  let since = performance.now();
  let probing = false;
  const tick = () => {
    const now = performance.now();
    if (!apply.busy || apply.safeLsn !== lsn) {
      lsn = apply.safeLsn;
      since = now;
      return;
    }
    if (now - since < stallMs || probing) return;
    probing = true;
    probe.ask().then(
      () => {
        probing = false;
      },
      (e) => {
        probing = false;
        if (!stopping(e)) return;
        stop();
        opts.onShutdown(e instanceof Error ? e.message : String(e), now - since);
      },
    );
  };
  const stop = everySecond(tick);
  return stop;
}

/**
 * True for an answer that says the server stops or is gone: SQLSTATE class 57
 * (operator intervention: shutting down, terminated) or 08 (connection
 * exception), or a connection that failed without one. Not for ordinary
 * refusals such as too many connections: the replication connection stays.
 */
export function stopping(e: unknown): boolean {
  if (!pgErrorFields(e).severity) return true; // no answer from the server: the connection failed
  return /^(57|08)/.test(errorCode(e) ?? "");
}

/**
 * Closes a replication connection at once. The driver's `end()` sends
 * CopyFail and half-closes the socket; a walsender whose output waits on a
 * socket kvsz no longer reads (the reader paused it) never reads them and
 * stays blocked. Destroying the socket resets the connection, and the
 * walsender exits.
 */
export function closeAtOnce(replication: Sql): void {
  socketOf(replication)?.destroy();
  replication.end({ timeout: 0 }).catch(() => {});
}
