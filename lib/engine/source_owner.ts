/**
 * One pipeline's hold on its source across kvsz processes: before an attempt
 * touches the source (slot, publication, copy) it holds the source's
 * destination lock (source_locks.ts), waiting while another process holds it,
 * then claims the source in `kvsz.owners` with a fresh token that fences
 * every write of the attempt (lib/apply/ownership.ts). The lock is kept from
 * attempt to attempt and given up when the pipeline ends; lost, the attempt
 * is stopped and the next one waits for the lock again.
 */
import type { Logger } from "@logtape/logtape";
import type { SourceKey } from "../config/types.ts";
import { KvszError } from "../errors.ts";
import { errorCode } from "../pg/errors.ts";
import { claimSource, readOwner } from "../apply/ownership.ts";
import type { SharedDestination } from "./destination.ts";
import type { PipelineEvents } from "./events.ts";
import type { SourceLock } from "./source_locks.ts";

/** The session holding a source's lock ended while the source ran. */
export class LockLost extends KvszError {
  constructor(name: string) {
    super(
      `lost the destination lock of ${name} (the destination session holding it ended): ` +
        `stopped applying this source until this process holds the lock again`,
    );
  }
}

/** One attempt's claim on the source. */
export interface Claim {
  /** Fences the attempt's writes (`ownerToken`). */
  token: string;
  /** Aborted with {@link LockLost} when the lock is lost during the attempt. */
  signal: AbortSignal;
  /** True when the lock was just taken over from another process (its walsender may linger). */
  tookOver: boolean;
  /** Ends the attempt's watch on the lock. */
  end(): void;
}

/** A pipeline's lock and claims (see the module comment). */
export class SourceOwner {
  #lock: SourceLock | null = null;

  constructor(
    private readonly destination: SharedDestination,
    /** The source and its slot name (the lock's key). */
    private readonly source: SourceKey & { name: string },
    private readonly opts: { log: Logger; events: PipelineEvents },
  ) {}

  /**
   * Holds the source's lock (waiting while another process holds it; rejects
   * when `signal` aborts), then claims the source for one attempt.
   */
  async claim(signal: AbortSignal): Promise<Claim> {
    // Held since an earlier attempt: checked again (that attempt may have failed for its loss).
    if (this.#lock && !this.#lock.isLost) await this.destination.locks.checked();
    const tookOver = !this.#lock || this.#lock.isLost ? await this.#hold(signal) : false;
    const lock = this.#lock!;
    const token = crypto.randomUUID();
    const owner = { token, owner: this.destination.instance };
    const catalog = this.destination.catalog;
    try {
      await claimSource(catalog, this.source, owner);
    } catch (e) {
      if (errorCode(e) !== "42P01") throw e; // undefined_table: a destination kvsz never ran on
      await this.destination.catalogReads.ensureKvszSchema();
      await claimSource(catalog, this.source, owner);
    }
    const attempt = new AbortController();
    const unwatch = lock.onLost(() => attempt.abort(new LockLost(this.source.name)));
    if (attempt.signal.aborted) throw attempt.signal.reason; // lost while claiming
    return { token, signal: attempt.signal, tookOver, end: unwatch };
  }

  /** Gives the lock up (the pipeline ends). */
  release(): void {
    this.#lock?.release();
    this.#lock = null;
  }

  /** Holds the lock; true when it had to wait for another process. */
  async #hold(signal: AbortSignal): Promise<boolean> {
    let waited = false;
    this.#lock = await this.destination.locks.acquire(this.source.name, {
      signal,
      onWait: () => {
        waited = true;
        this.opts.events.onLockWait?.(true);
        this.#sayWaiting();
      },
    });
    if (!waited) return false;
    this.opts.events.onLockWait?.(false);
    this.opts.log.info("holds the destination lock of {name} now: taking the source over", {
      name: this.source.name,
    });
    return true;
  }

  /** Says once who holds the lock (as far as `kvsz.owners` knows). */
  #sayWaiting(): void {
    readOwner(this.destination.catalog, this.source).catch(() => null).then((holder) => {
      this.opts.log.info(
        "waiting: another kvsz process ({holder}) holds the destination lock of {name}; " +
          "this one takes the source over when that process stops or loses its connection",
        { holder: holder ?? "unknown", name: this.source.name },
      );
    });
  }
}
