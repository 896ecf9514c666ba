/**
 * The applier of one source: takes decoded messages in commit order, groups
 * whole source transactions into one destination transaction, writes them
 * set-based per table, records progress in that same transaction, and tells
 * the reader what it may acknowledge.
 */
import type { Sql } from "../pg/connect.ts";
import { formatLsn } from "../pg/lsn.ts";
import type { PgoutputMessage } from "../source/messages.ts";
import { pgTimestampToIso } from "../source/messages.ts";
import { log } from "../observe/log.ts";
import type { RouteTable } from "./routes.ts";
import { type OpCounts, TableBatch } from "./table_batch.ts";
import type { Anomaly, Change, TableRoute } from "./types.ts";
import { type BatchCounts, type SourceProgress, writeProgress } from "./progress.ts";

/** Batching knobs of the applier. */
export interface ApplierOptions {
  database: string;
  sid: string;
  /** Flush buffered changes into the open destination transaction at this many. */
  batchSize: number;
  /** Commit grouped source transactions at most this long after the first one. */
  commitIntervalMs: number;
  /** Called after every destination commit. */
  onCommit?: (info: CommitInfo) => void;
  /** Called for every anomaly met (after it converged). */
  onAnomaly?: (a: Anomaly) => void;
  /** Called after each table flush with the changes applied per operation. */
  onOperations?: (table: string, operation: keyof OpCounts, count: number, seconds: number) => void;
}

/** What one destination commit contained. */
export interface CommitInfo {
  endLsn: bigint;
  commitTimeIso: string | null;
  transactions: number;
  changes: number;
  counts: BatchCounts;
  seconds: number;
}

interface SourceCommit {
  commitLsn: bigint;
  endLsn: bigint;
  commitTimeIso: string;
}

/** Applies one source's stream; not safe for concurrent `handle` calls (the reader awaits each). */
export class Applier {
  readonly #log;
  #inDestTx = false;
  #batches = new Map<TableRoute, TableBatch>();
  #buffered = 0;
  /** Current source transaction, from Begin to Commit. */
  #txn: { finalLsn: bigint; commitTimeIso: string; skip: boolean } | null = null;
  /** Last source commit folded into the open destination transaction. */
  #pending: SourceCommit | null = null;
  #pendingTxns = 0;
  #pendingChanges = 0;
  #firstPendingAt = 0;
  #counts: BatchCounts = { clone: 0, append: 0, history: 0, anomalies: 0 };
  #skipUpTo: bigint;
  /** Highest end LSN whose effects are committed in the destination (or need none). */
  #safeLsn: bigint;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #lock: Promise<unknown> = Promise.resolve();
  #failure: unknown = null;
  /** The commit started by the timer, while it runs. */
  #timedCommit: Promise<void> | null = null;
  #reportFailure: (e: unknown) => void = () => {};
  /** Rejects when background work (the commit timer) fails; the reader races it. */
  readonly failed: Promise<never> = new Promise((_, reject) => {
    this.#reportFailure = reject;
  });

  constructor(
    /** A client with exactly one connection (max 1), used by nothing else. */
    private readonly dest: Sql,
    private readonly routes: RouteTable,
    progress: SourceProgress | null,
    private readonly opts: ApplierOptions,
  ) {
    this.#log = log("apply").with({ database: opts.database, sid: opts.sid });
    this.failed.catch(() => {}); // observed by the reader
    this.#skipUpTo = progress?.commitLsn ?? 0n;
    this.#safeLsn = progress?.endLsn ?? 0n;
  }

  /** LSN the reader may acknowledge to the source: everything below it is safely applied. */
  get safeLsn(): bigint {
    return this.#safeLsn;
  }

  /** True between a source transaction's Begin and its Commit. */
  get inTransaction(): boolean {
    return this.#txn !== null;
  }

  /** True between a Begin and its Commit, or while committed work awaits its destination commit. */
  get busy(): boolean {
    return this.#txn !== null || this.#pending !== null;
  }

  /** Handles one message; returns a promise only when it has to wait for the destination. */
  handle(msg: PgoutputMessage): void | Promise<void> {
    if (this.#failure) throw this.#failure;
    // A timed commit is writing the batch: the next message waits (the reader awaits us).
    if (this.#timedCommit) return this.#timedCommit.then(() => this.handle(msg));
    switch (msg.tag) {
      case "begin":
        this.#txn = {
          finalLsn: msg.finalLsn,
          commitTimeIso: pgTimestampToIso(msg.commitTime),
          skip: msg.finalLsn <= this.#skipUpTo,
        };
        return;
      case "relation":
        return this.#serialized(() => this.#relation(msg.relationId, msg));
      case "insert":
        return this.#change(msg.relationId, (route) => ({
          kind: "insert",
          route,
          newTuple: msg.newTuple,
        }));
      case "update":
        return this.#change(msg.relationId, (route) => ({
          kind: "update",
          route,
          keyTuple: msg.keyTuple,
          oldTuple: msg.oldTuple,
          newTuple: msg.newTuple,
        }));
      case "delete":
        return this.#change(msg.relationId, (route) => ({
          kind: "delete",
          route,
          keyTuple: msg.keyTuple,
          oldTuple: msg.oldTuple,
        }));
      case "truncate":
        return this.#truncate(msg.relationIds);
      case "commit":
        return this.#commit(msg.commitLsn, msg.endLsn);
      default:
        // origin, type, message: nothing to apply. Streamed transactions are not requested.
        return;
    }
  }

  /** The reader has nothing more queued: commit grouped transactions now (low latency). */
  drained(): void | Promise<void> {
    if (this.#txn !== null || !this.#pending || this.#timedCommit) return;
    return this.#serialized(() => this.#txn === null ? this.#commitDest() : Promise.resolve());
  }

  /** Acknowledges idle WAL: with nothing pending, a keepalive position is safe to confirm. */
  noteIdlePosition(walEnd: bigint): void {
    if (!this.busy && walEnd > this.#safeLsn) this.#safeLsn = walEnd;
  }

  /** Commits what is pending (at a transaction boundary) and releases the connection. */
  async close(): Promise<void> {
    clearTimeout(this.#timer);
    await this.#serialized(async () => {
      if (this.#txn === null && this.#pending) await this.#commitDest();
      if (this.#inDestTx) await this.#rollback();
    });
  }

  /**
   * Forgets uncommitted work after an error. The connection may be dead: no
   * ROLLBACK is sent; closing the client ends the session and the server rolls back.
   */
  abort(): void {
    clearTimeout(this.#timer);
    this.#batches.clear();
    this.#buffered = 0;
    this.#inDestTx = false;
  }

  async #relation(relationId: number, msg: PgoutputMessage & { tag: "relation" }): Promise<void> {
    const old = this.routes.get(relationId);
    // Changes buffered with the old column layout must be written first.
    if (old && this.#batches.get(old)?.size) await this.#flushTables();
    await this.routes.update(msg);
  }

  async #truncate(relationIds: number[]): Promise<void> {
    for (const id of relationIds) {
      const wait = this.#change(id, (route) => ({ kind: "truncate", route }));
      if (wait) await wait;
    }
  }

  #change(relationId: number, make: (route: TableRoute) => Change): void | Promise<void> {
    const txn = this.#txn;
    if (!txn || txn.skip) return;
    const route = this.routes.get(relationId);
    // The table's initial copy already holds commits before its snapshot LSN.
    if (!route || txn.finalLsn < route.syncedLsn) return;
    let batch = this.#batches.get(route);
    if (!batch) {
      batch = new TableBatch(route);
      this.#batches.set(route, batch);
    }
    batch.add(make(route), txn.commitTimeIso);
    this.#buffered++;
    this.#pendingChanges++;
    if (this.#buffered >= this.opts.batchSize) return this.#serialized(() => this.#flushTables());
  }

  #commit(commitLsn: bigint, endLsn: bigint): void | Promise<void> {
    const txn = this.#txn;
    this.#txn = null;
    if (!txn) return;
    if (txn.skip) {
      if (!this.#pending && endLsn > this.#safeLsn) this.#safeLsn = endLsn;
      return;
    }
    if (this.#pendingChanges === 0 && !this.#pending) {
      // Nothing of ours in it: nothing to write, safe to acknowledge.
      if (endLsn > this.#safeLsn) this.#safeLsn = endLsn;
      return;
    }
    if (!this.#pending) this.#firstPendingAt = performance.now();
    this.#pending = { commitLsn, endLsn, commitTimeIso: txn.commitTimeIso };
    this.#pendingTxns++;
    const due = this.#pendingChanges >= this.opts.batchSize ||
      performance.now() - this.#firstPendingAt >= this.opts.commitIntervalMs;
    if (due) return this.#serialized(() => this.#commitDest());
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.#onTimer(), this.opts.commitIntervalMs);
    }
  }

  #onTimer(): void {
    this.#timer = undefined;
    // Inside a source transaction we must wait for its Commit (never split it).
    if (this.#txn !== null || !this.#pending) {
      if (this.#pending) {
        this.#timer = setTimeout(() => this.#onTimer(), this.opts.commitIntervalMs);
      }
      return;
    }
    const commit = this.#serialized(async () => {
      if (this.#txn === null && this.#pending) await this.#commitDest();
    }).catch((e) => {
      this.#failure = e;
      this.#reportFailure(e);
    }).finally(() => {
      this.#timedCommit = null;
    });
    this.#timedCommit = commit;
  }

  /** Runs destination work one piece at a time (the commit timer and the reader share it). */
  #serialized(work: () => Promise<void>): Promise<void> {
    const next = this.#lock.then(work);
    this.#lock = next.catch(() => {});
    return next;
  }

  async #ensureDestTx(): Promise<Sql> {
    // A single-connection client: statements run in order on one session. If the
    // connection dies the statement fails, and the applier is dropped (never reused).
    if (!this.#inDestTx) {
      await this.dest.unsafe("BEGIN");
      this.#inDestTx = true;
    }
    return this.dest;
  }

  async #flushTables(): Promise<void> {
    if (this.#buffered === 0) return;
    const tx = await this.#ensureDestTx();
    for (const [route, batch] of this.#batches) {
      if (batch.size === 0) continue;
      const started = performance.now();
      const result = await batch.flush(tx);
      const seconds = (performance.now() - started) / 1000;
      for (const [op, count] of Object.entries(result.ops) as [keyof OpCounts, number][]) {
        if (count > 0) this.opts.onOperations?.(route.source, op, count, seconds);
      }
      this.#counts[route.mode] += result.rowsWritten;
      this.#counts.anomalies += result.anomalies.length;
      for (const a of result.anomalies) {
        this.#log.warn("anomaly {kind} on {table}: key ({key}) — converged", {
          kind: a.kind,
          table: a.route.source,
          key: a.key.join(", "),
        });
        this.opts.onAnomaly?.(a);
      }
    }
    this.#batches.clear();
    this.#buffered = 0;
  }

  async #commitDest(): Promise<void> {
    const pending = this.#pending;
    if (!pending) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const started = performance.now();
    await this.#flushTables();
    const tx = await this.#ensureDestTx();
    await writeProgress(
      tx,
      this.opts.database,
      this.opts.sid,
      formatLsn(pending.commitLsn),
      formatLsn(pending.endLsn),
      pending.commitTimeIso,
      this.#counts,
    );
    const result = await tx.unsafe("COMMIT");
    this.#inDestTx = false;
    if (result.command === "ROLLBACK") throw new Error("destination rolled back the batch");
    const info: CommitInfo = {
      endLsn: pending.endLsn,
      commitTimeIso: pending.commitTimeIso,
      transactions: this.#pendingTxns,
      changes: this.#pendingChanges,
      counts: this.#counts,
      seconds: (performance.now() - started) / 1000,
    };
    this.#safeLsn = pending.endLsn;
    this.#skipUpTo = pending.commitLsn;
    this.#pending = null;
    this.#pendingTxns = 0;
    this.#pendingChanges = 0;
    this.#counts = { clone: 0, append: 0, history: 0, anomalies: 0 };
    this.#log.debug("committed {transactions} transaction(s), {changes} change(s) up to {lsn}", {
      transactions: info.transactions,
      changes: info.changes,
      lsn: formatLsn(info.endLsn),
    });
    this.opts.onCommit?.(info);
  }

  async #rollback(): Promise<void> {
    if (this.#inDestTx) {
      this.#inDestTx = false;
      await this.dest.unsafe("ROLLBACK");
    }
    this.#batches.clear();
    this.#buffered = 0;
  }
}
