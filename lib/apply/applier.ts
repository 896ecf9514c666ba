/**
 * The applier of one source: takes decoded messages in commit order, groups
 * whole source transactions into one destination transaction, writes them
 * set-based per table, records progress in that same transaction, and tells
 * the reader what it may acknowledge.
 *
 * Destination work runs as jobs in a serial queue (job_queue.ts). A
 * destination transaction leases one of the shared writers (writer_pool.ts)
 * at its first statement and gives it back at its COMMIT or ROLLBACK. A job takes the buffered changes with it when it
 * is queued, so the reader goes on decoding and folding the next batch while
 * the destination writes the previous one; it waits only when a job is
 * already waiting behind the running one (memory stays bounded). A failed
 * job is reported as job_failure.ts reads it; a transaction applied as it
 * streams is streamed_transaction.ts.
 */
import type { SessionWatchdog } from "./session_watchdog.ts";
import type { WriterLease } from "./writer_pool.ts";
import type { Sql } from "../pg/connect.ts";
import { formatLsn } from "../pg/lsn.ts";
import {
  LARGE_VALUE_BYTES,
  type PgoutputMessage,
  pgTimestampToIso,
  type StreamCommitMessage,
} from "../source/messages.ts";
import { heldNote, LineBudget, log } from "../log.ts";
import type { RouteTable } from "./routes.ts";
import { type OpCounts, TableBatch } from "./table_batch.ts";
import type { Anomaly, Change, TableRoute } from "./types.ts";
import { type BatchCounts, type SourceProgress, writeProgress } from "./progress.ts";
import { parentsFirst } from "./write_order.ts";
import { holdsLargeValue } from "./large_change.ts";
import { truncateTogether } from "./sql_truncate.ts";
import { JobQueue } from "./job_queue.ts";
import { explainJobFailure, type JobScope } from "./job_failure.ts";
import { StreamedTransaction } from "./streamed_transaction.ts";
import { IdlePositions } from "./idle_positions.ts";
import type { GroupCommits } from "./group_commit.ts";
import { fenced } from "./ownership.ts";
import { transformChange } from "./transform_change.ts";

/**
 * Bytes of changes (as received) buffered before they are written, whatever
 * their count: with one batch filling, one queued and one being written,
 * memory stays bounded when rows are large (decoded and folded, a change
 * takes about ten times its wire size in the heap).
 */
const MAX_BATCH_BYTES = 4 << 20;
/**
 * WAL with nothing for this source (keepalives, transactions of other tables)
 * has its position recorded in kvsz.progress and confirmed to the slot at most
 * this often per source (one small write), and at once when the source wrote
 * none for this long: after a quiet spell, such as a switchover's fence, the
 * destination shows the source's last position within a moment.
 */
const IDLE_RECORD_MS = 5000;
/** The wait before recording an idle position after a quiet spell (other sources' join it). */
const IDLE_RECORD_QUIET_MS = 50;

/** Changes of one operation applied to a table by one flush, and how long the flush took. */
export interface AppliedOperations {
  operation: keyof OpCounts;
  count: number;
  seconds: number;
}

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
  /**
   * How long a transaction committed while a streamed one is being applied may
   * wait for it (they share its destination transaction) before the streamed
   * one is spooled instead.
   */
  streamWaitMs?: number;
  /** LSN the stream starts from: every transaction it brings commits after it. */
  startLsn?: bigint;
  /**
   * Source transactions committed at or below this LSN are applied one change
   * at a time, in source order (a folded batch of them broke a constraint).
   */
  oneByOneUntil?: bigint;
  /** Called after each table flush with the changes applied per operation. */
  onOperations?: (table: string, applied: AppliedOperations) => void;
  /** Looks at the destination session when a job goes unanswered (none: jobs wait as long as it takes). */
  watchdog?: SessionWatchdog;
  /** Replication origin the source's writes are tagged with (none: untagged). */
  origin?: string | null;
  /** The token of this process's claim on the source (ownership.ts); none: writes not fenced. */
  ownerToken?: string | null;
  /** Commits shared with other sources (none: each destination transaction is this source's). */
  groupCommits?: GroupCommits;
  /** Records idle positions with other sources' (none: a group of this source alone). */
  idlePositions?: IdlePositions;
}

/** Where the applier's destination transactions get a writer (a `WriterPool`). */
export interface Writers {
  /** A writer tagged with `origin`, the caller's alone until released; rejects once `signal` aborts. */
  lease(origin: string | null, signal?: AbortSignal): Promise<WriterLease>;
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
  /** Commit time, µs since 2000-01-01 (formatted only when written). */
  commitTime: bigint;
}

/** A source transaction from its Begin to its Commit (or a streamed one's block). */
interface OpenTransaction {
  finalLsn: bigint;
  /** Commit time, µs since 2000-01-01; unknown (0n) while a streamed transaction runs. */
  commitTime: bigint;
  /** The commit time as written into history rows, formatted on first use. */
  commitTimeIso?: string;
  skip: boolean;
  /** Applied one change at a time (see {@link ApplierOptions.oneByOneUntil}). */
  oneByOne?: true;
  /** A block of the transaction applied as it streams (its commit LSN is not known yet). */
  streamed?: StreamedTransaction;
}

/** The transaction's commit time as history rows carry it, formatted once. */
function commitTimeIso(txn: OpenTransaction): string {
  return txn.commitTimeIso ??= pgTimestampToIso(txn.commitTime);
}

/**
 * The transaction's commit time as a Date (for `kvsz_commit_time`); not
 * cached, as a streamed transaction's is unknown (2000-01-01) until its commit.
 */
function commitDate(txn: OpenTransaction): Date {
  return new Date(Date.parse(pgTimestampToIso(txn.commitTime)));
}

/**
 * Applies one source's stream; `handle` is called by one reader, in order.
 * It is the reader's `ReaderSink` (lib/source/reader.ts), structurally.
 */
export class Applier {
  readonly #log;
  /** Anomaly and expression-failure lines, per table: ten a minute at most. */
  readonly #lines = new LineBudget();
  /** The writer leased: from a destination transaction's first statement to its end, or briefly. */
  #writer: WriterLease | null = null;
  /** The writer of the group commit this source's job is in, while it is. */
  #groupWriter: WriterLease | null = null;
  /** True while a destination transaction is open on {@link #writer}. */
  #inDestTx = false;
  /** Aborted by {@link abort}: no writer is leased after it. */
  readonly #aborted = new AbortController();
  /** The open destination transaction's BEGIN (sent, not awaited). */
  #begin: Promise<unknown> = Promise.resolve();
  #batches = new Map<TableRoute, TableBatch>();
  #buffered = 0;
  #bufferedBytes = 0;
  /** True when the buffered changes include folded ones (not applied one change at a time). */
  #bufferedFolded = false;
  /** Current source transaction, from Begin to Commit (or a streamed one's block). */
  #txn: OpenTransaction | null = null;
  /** The transaction applied as it streams, from its first Stream Start to its Stream Commit or Abort. */
  #streamed: StreamedTransaction | null = null;
  /**
   * The streamed transaction whose changes the open destination transaction
   * holds; it outlives {@link #streamed} until that transaction's commit job.
   */
  #streamedInDestTx: number | null = null;
  /** Commit LSN of the last source transaction seen, or the start: a streamed one commits after it. */
  #lastCommitLsn = 0n;
  /** Last source commit folded into the destination transaction being built. */
  #pending: SourceCommit | null = null;
  #pendingTxns = 0;
  #pendingChanges = 0;
  #firstPendingAt = 0;
  #counts: BatchCounts = { clone: 0, append: 0, history: 0, anomalies: 0 };
  #skipUpTo: bigint;
  /** Highest end LSN whose effects are committed in the destination (or need none). */
  #safeLsn: bigint;
  /** The commit timer: commits grouped transactions `commitIntervalMs` after the first. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** Highest WAL position with nothing for this source, to record then confirm (see {@link #noteIdle}). */
  #idleLsn = 0n;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** When this source's position was last written to kvsz.progress (a commit or an idle record). */
  #positionWrittenAt = -Infinity;
  readonly #jobs: JobQueue<JobScope>;
  readonly #idlePositions: IdlePositions;
  /** True while the reader has nothing queued (set by `drained`, cleared by `handle`). */
  #idle = false;
  #wake: () => void = () => {};

  constructor(
    /** The shared writers. */
    private readonly writers: Writers,
    private readonly routes: RouteTable,
    progress: SourceProgress | null,
    private readonly opts: ApplierOptions,
  ) {
    this.#log = log("apply").with({ database: opts.database, sid: opts.sid });
    const watchdog = opts.watchdog;
    this.#jobs = new JobQueue<JobScope>({
      explain: (e, scope) => explainJobFailure(e, scope, this.#readUpTo()),
      afterJob: () => this.#afterJob(),
      watch: watchdog &&
        ((job) => watchdog.watch(job, () => this.#writer ?? this.#groupWriter, this.#log)),
    });
    this.#idlePositions = opts.idlePositions ?? new IdlePositions(writers);
    this.#skipUpTo = progress?.commitLsn ?? 0n;
    this.#safeLsn = progress?.endLsn ?? 0n;
    this.#lastCommitLsn = opts.startLsn && opts.startLsn > this.#skipUpTo
      ? opts.startLsn
      : this.#skipUpTo;
  }

  /** Rejects when a destination job fails (or a transaction waited too long); the reader races it. */
  get failed(): Promise<never> {
    return this.#jobs.failed;
  }

  /** LSN the reader may acknowledge to the source: everything below it is safely applied. */
  get safeLsn(): bigint {
    return this.#safeLsn;
  }

  /** True between a source transaction's Begin and its Commit, or in a block of a streamed one. */
  get inTransaction(): boolean {
    return this.#txn !== null;
  }

  /** True while anything received is not yet committed in the destination. */
  get busy(): boolean {
    return this.#txn !== null || this.#pending !== null || this.#jobs.size > 0 ||
      this.#streamed !== null;
  }

  /** The reader's wake-up: called after each job (a commit moves {@link safeLsn}). */
  setWake(wake: () => void): void {
    this.#wake = wake;
  }

  /** Handles one message (`bytes` long on the wire); returns a promise only when the reader has to wait. */
  handle(msg: PgoutputMessage, bytes = 0): void | Promise<void> {
    if (this.#jobs.failure) throw this.#jobs.failure;
    this.#idle = false;
    switch (msg.tag) {
      case "begin":
        this.#txn = {
          finalLsn: msg.finalLsn,
          commitTime: msg.commitTime,
          skip: msg.finalLsn <= this.#skipUpTo,
        };
        if (msg.finalLsn <= (this.opts.oneByOneUntil ?? 0n)) this.#txn.oneByOne = true;
        return;
      case "relation":
        return this.#relation(msg.relationId, msg);
      case "insert":
        return this.#change(msg.relationId, bytes, (route) => ({
          kind: "insert",
          route,
          newTuple: msg.newTuple,
        }));
      case "update":
        return this.#change(msg.relationId, bytes, (route) => ({
          kind: "update",
          route,
          keyTuple: msg.keyTuple,
          oldTuple: msg.oldTuple,
          newTuple: msg.newTuple,
        }));
      case "delete":
        return this.#change(msg.relationId, bytes, (route) => ({
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
        // origin, type, message: nothing to apply. The reader handles the stream_* messages.
        return;
    }
  }

  /** The reader has nothing more queued: commit grouped transactions now (low latency). */
  drained(): void {
    this.#idle = true;
    // With a job running, its end commits what gathered meanwhile (one commit, not many).
    if (this.#txn === null && this.#pending && this.#jobs.size === 0) this.#queueCommit();
  }

  /**
   * A keepalive position: with nothing pending, it is safe to confirm once
   * recorded; at once when `urgent` (a source shutting down waits for it).
   */
  noteIdlePosition(walEnd: bigint, urgent = false): void {
    if (!this.busy && walEnd > this.#safeLsn) this.#noteIdle(walEnd);
    if (urgent && this.#idleTimer !== undefined) {
      clearTimeout(this.#idleTimer);
      this.#recordIdle(true);
    }
  }

  /**
   * WAL up to `lsn` holds nothing more for this source. It is confirmed to the
   * slot only once kvsz.progress says so (a few seconds later, unless a commit
   * carries it first), so that a slot confirmed beyond the stored progress
   * always means changes kvsz never applied.
   */
  #noteIdle(lsn: bigint): void {
    if (lsn > this.#idleLsn) this.#idleLsn = lsn;
    if (this.#idleTimer !== undefined) return;
    const since = performance.now() - this.#positionWrittenAt;
    this.#idleTimer = setTimeout(
      () => this.#recordIdle(),
      Math.max(IDLE_RECORD_QUIET_MS, IDLE_RECORD_MS - since),
    );
  }

  /**
   * Records the idle position with other sources' (idle_positions.ts), then
   * lets the reader confirm it; a failed write fails the source as a failed
   * commit would (it is retried), unless `onFailure` says otherwise.
   */
  #recordIdle(now = false, onFailure = (e: unknown) => this.#jobs.fail(e)): Promise<void> {
    this.#idleTimer = undefined;
    const lsn = this.#idleLsn;
    // Busy: the pending commit records a later position.
    if (lsn <= this.#safeLsn || this.busy || this.#jobs.failure) return Promise.resolve();
    this.#positionWrittenAt = performance.now();
    return this.#idlePositions.record(this.opts, lsn, now).then((recorded) => {
      if (!recorded || lsn <= this.#safeLsn) return;
      this.#safeLsn = lsn;
      this.#wake();
    }, onFailure);
  }

  /**
   * A clean stop (the reader's `ReaderSink.settle`, before its last status).
   * A last position that cannot be recorded is left unconfirmed: the next
   * start reads that WAL again, nothing is lost.
   */
  async settle(): Promise<void> {
    await this.#commitPending();
    clearTimeout(this.#idleTimer);
    await this.#recordIdle(true, () => {});
  }

  /** Waits for queued jobs, commits what is pending (at a transaction boundary), ends cleanly. */
  async close(): Promise<void> {
    clearTimeout(this.#idleTimer);
    this.#streamed?.end();
    // An open streamed transaction is rolled back with what waited for it (all streamed again).
    await this.#commitPending();
    if (this.#jobs.failure) throw this.#jobs.failure;
    if (this.#inDestTx) await this.#writer!.sql.unsafe("ROLLBACK");
    this.#release();
  }

  /** Commits what is pending now (outside a source transaction) and waits for every job. */
  async #commitPending(): Promise<void> {
    clearTimeout(this.#timer);
    if (this.#txn === null && this.#pending && !this.#streamed) this.#queueCommit();
    await this.#jobs.settled;
  }

  /**
   * Forgets uncommitted work after an error. The writer may be dead: no
   * ROLLBACK is sent; it is given back broken (its connection ends, the server
   * rolls back), and no other is leased.
   */
  abort(): void {
    clearTimeout(this.#timer);
    clearTimeout(this.#idleTimer);
    this.#streamed?.end();
    this.#takeBatches();
    this.#aborted.abort(new Error("the applier stopped"));
    // A group it is in fails with it: what is not committed must not commit after the abort.
    this.#groupWriter?.end();
    this.#inDestTx = false;
    this.#writer?.release(true);
    this.#writer = null;
  }

  /**
   * The first block of a transaction the reader has it apply as it arrives
   * (see `StreamedApply` in lib/source/reader.ts; one at a time). What is
   * pending commits first, so the destination transaction it opens holds it
   * alone until another commits.
   */
  beginStreamed(xid: number): void {
    this.#queueCommit();
    this.#streamed = new StreamedTransaction(xid);
    this.#streamedInDestTx = xid;
    this.resumeStreamed();
  }

  /** A block of the streamed transaction begins: its changes follow. */
  resumeStreamed(): void {
    this.#idle = false;
    this.#txn = {
      finalLsn: this.#lastCommitLsn,
      commitTime: 0n,
      skip: false,
      streamed: this.#streamed ?? undefined,
    };
  }

  /** A block of the streamed transaction ends: other transactions may follow. */
  pauseStreamed(): void {
    this.#txn = null;
  }

  /**
   * The streamed transaction was rolled back at the source. Returns false when
   * its destination transaction also holds others (then the stream restarts).
   */
  abortStreamed(): boolean {
    if (!this.#streamed || this.#pending) return false;
    this.#endStreamed();
    this.#rollBack();
    return true;
  }

  /** The streamed transaction committed at the source: commits its destination transaction. */
  commitStreamed(m: StreamCommitMessage): void | Promise<void> {
    this.#endStreamed();
    // Applied and committed before a restart (so were the transactions that
    // joined it): what was written again is rolled back.
    if (m.commitLsn <= this.#skipUpTo) return this.#rollBack();
    this.#txn = {
      finalLsn: m.commitLsn,
      commitTime: m.commitTime,
      skip: false,
    };
    return this.#commit(m.commitLsn, m.endLsn);
  }

  /** Forgets everything not committed and rolls the open destination transaction back. */
  #rollBack(): Promise<void> | undefined {
    this.#txn = null;
    this.#pending = null;
    this.#pendingTxns = 0;
    this.#pendingChanges = 0;
    this.#counts = { clone: 0, append: 0, history: 0, anomalies: 0 };
    const scope = this.#takeScope();
    this.#takeBatches();
    this.#streamedInDestTx = null;
    return this.#jobs.push(scope, async () => {
      if (!this.#inDestTx) return;
      await this.#begin;
      await this.#writer!.sql.unsafe("ROLLBACK");
      this.#release();
    });
  }

  #endStreamed(): void {
    this.#streamed?.end();
    this.#streamed = null;
  }

  #relation(relationId: number, msg: PgoutputMessage & { tag: "relation" }): void | Promise<void> {
    if (this.routes.unchanged(msg)) return;
    const old = this.routes.get(relationId);
    // Changes buffered with the old column layout are written with the old route.
    const wait = old && this.#batches.get(old)?.size ? this.#queueFlush() : undefined;
    // The layout holds from this transaction's commit (a streamed one commits after the last).
    const atLsn = this.#txn?.finalLsn ?? this.#lastCommitLsn;
    return Promise.all([wait, this.routes.update(msg, atLsn)]).then(() => {});
  }

  async #truncate(relationIds: number[]): Promise<void> {
    const txn = this.#txn;
    if (!txn || txn.skip) return;
    const routes = relationIds.map((id) => this.routes.get(id)).filter((r): r is TableRoute =>
      r !== undefined && txn.finalLsn >= r.syncedLsn
    );
    if (routes.length < 2) {
      for (const id of relationIds) {
        const wait = this.#change(id, 0, (route) => ({ kind: "truncate", route }));
        if (wait) await wait;
      }
      return;
    }
    // Named together (TRUNCATE a, b, or CASCADE): what is buffered is written first,
    // then one job truncates them all (foreign keys between them need that).
    for (const r of routes) txn.streamed?.checkRoute(r, this.#lastCommitLsn);
    if (this.#buffered > 0) {
      const wait = this.#queueFlush();
      if (wait) await wait;
    }
    this.#pendingChanges += routes.length;
    const at = txn.streamed ? "" : commitTimeIso(txn);
    const counts = this.#counts;
    const scope = { folded: !txn.oneByOne, streamedXid: this.#streamedInDestTx };
    const wait = this.#jobs.push(scope, async () => {
      const started = performance.now();
      const rows = await truncateTogether(await this.#destTx(), routes, at);
      const seconds = (performance.now() - started) / 1000;
      for (const [route, n] of rows) {
        counts[route.mode] += n;
        this.opts.onOperations?.(route.source, { operation: "truncate", count: 1, seconds });
      }
    });
    if (wait) await wait;
  }

  #change(
    relationId: number,
    bytes: number,
    make: (route: TableRoute) => Change,
  ): void | Promise<void> {
    const txn = this.#txn;
    if (!txn || txn.skip) return;
    const route = this.routes.get(relationId);
    if (txn.streamed && route) txn.streamed.checkRoute(route, this.#lastCommitLsn);
    // The table's initial copy already holds commits before its snapshot LSN.
    if (!route || txn.finalLsn < route.syncedLsn) return;
    // Only history rows carry the commit time.
    const at = route.mode === "history" ? commitTimeIso(txn) : "";
    let change: Change | null = make(route);
    if (route.transform) {
      change = transformChange(change, () => commitDate(txn), this.#expressionFailed(change));
      if (change === null) return;
    }
    if (bytes > LARGE_VALUE_BYTES && holdsLargeValue(change)) {
      return this.#queueLarge(change, at, txn.streamed ? 0n : txn.finalLsn);
    }
    let batch = this.#batches.get(route);
    if (!batch) {
      batch = new TableBatch(route);
      this.#batches.set(route, batch);
    }
    batch.add(change, at);
    this.#buffered++;
    this.#bufferedBytes += bytes;
    this.#pendingChanges++;
    if (txn.oneByOne) return this.#queueFlush({ change, commitLsn: txn.finalLsn });
    this.#bufferedFolded = true;
    if (this.#buffered >= this.opts.batchSize || this.#bufferedBytes >= MAX_BATCH_BYTES) {
      return this.#queueFlush();
    }
  }

  /** Logs and counts a failed `filter` or `set` of `change`'s table (an anomaly of the table). */
  #expressionFailed(change: Change): (key: string, message: string) => void {
    return (key, message) => {
      const route = change.route;
      const row = change.kind === "truncate"
        ? undefined
        : change.kind === "delete"
        ? change.keyTuple ?? change.oldTuple
        : change.newTuple;
      const rowKey = row ? route.transform!.keyOf(row) : [];
      const line = this.#lines.take(route.source);
      if (line.say) {
        this.#log.warn(
          "{expression} of {table} failed for key ({key}): {message}; on_error: {policy}{held}",
          {
            expression: key,
            table: route.source,
            key: rowKey.join(", "),
            message,
            policy: route.transform!.policy,
            held: heldNote(line.held),
          },
        );
      }
      this.opts.onAnomaly?.({ kind: "expression_error", route, key: rowKey });
    };
  }

  /**
   * Writes a change holding a {@link LargeValue} on its own, after the
   * buffered ones and in the same destination transaction, its values sent
   * as the bytes they arrived in; the reader waits until it is written, so
   * one such value at a time is held. `commitLsn` is 0 while the source
   * transaction still runs (streamed as it runs).
   */
  #queueLarge(change: Change, at: string, commitLsn: bigint): Promise<void> {
    if (this.#buffered > 0) this.#queueFlush();
    this.#pendingChanges++;
    const batch = new TableBatch(change.route);
    batch.add(change, at);
    const batches = new Map([[change.route, batch]]);
    const counts = this.#counts;
    const scope: JobScope = {
      folded: false,
      streamedXid: this.#streamedInDestTx,
      one: { change, commitLsn },
    };
    this.#jobs.push(scope, async () => {
      await this.#destTx();
      await this.#begin; // the value goes on the connection's socket: nothing may be in flight
      await this.#write(batches, counts, scope);
    });
    return this.#jobs.settled;
  }

  #commit(commitLsn: bigint, endLsn: bigint): void | Promise<void> {
    const txn = this.#txn;
    this.#txn = null;
    if (!txn) return;
    this.#lastCommitLsn = commitLsn;
    if (txn.skip || (this.#pendingChanges === 0 && !this.#pending)) {
      // Nothing of ours in it: safe to acknowledge once everything before it is.
      if (!this.busy && endLsn > this.#safeLsn) this.#noteIdle(endLsn);
      return;
    }
    if (!this.#pending) this.#firstPendingAt = performance.now();
    this.#pending = { commitLsn, endLsn, commitTime: txn.commitTime };
    this.#pendingTxns++;
    if (this.#streamed) {
      // It waits for the streamed one (they share its destination transaction), but not too long.
      return this.#streamed.hold(this.opts.streamWaitMs ?? 5000, (e) => this.#jobs.fail(e));
    }
    // Applied one change at a time, each transaction commits on its own: one the
    // destination refuses leaves every transaction before it committed.
    const due = txn.oneByOne || this.#pendingChanges >= this.opts.batchSize ||
      performance.now() - this.#firstPendingAt >= this.opts.commitIntervalMs;
    if (due) return this.#queueCommit();
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.#onTimer(), this.opts.commitIntervalMs);
    }
  }

  #onTimer(): void {
    this.#timer = undefined;
    if (!this.#pending) return;
    // Inside a source transaction we must wait for its Commit (never split it).
    if (this.#txn !== null) {
      this.#timer = setTimeout(() => this.#onTimer(), this.opts.commitIntervalMs);
      return;
    }
    this.#queueCommit()?.catch(() => {}); // a failure reaches the reader through `failed`
  }

  /** After a job: commit what gathered while it ran if the reader is idle, and wake the reader. */
  #afterJob(): void {
    if (this.#jobs.size === 0 && this.#idle && this.#txn === null && this.#pending) {
      this.#queueCommit();
    }
    this.#wake();
  }

  /** Commit LSN up to which the source transactions read so far commit (the open one's included). */
  #readUpTo(): bigint {
    const txnLsn = this.#txn?.streamed ? 0n : this.#txn?.finalLsn ?? 0n;
    return txnLsn > this.#lastCommitLsn ? txnLsn : this.#lastCommitLsn;
  }

  /**
   * Hands the buffered changes to a job that writes them into the destination
   * transaction; `one` is the change when it is applied on its own.
   */
  #queueFlush(one?: JobScope["one"]): Promise<void> | undefined {
    const scope: JobScope = { ...this.#takeScope(), one };
    const batches = this.#takeBatches();
    const counts = this.#counts; // committed with the pending source transactions
    return this.#jobs.push(scope, () => this.#write(batches, counts, scope));
  }

  /** Hands the buffered changes and the pending source commits to a job that commits them. */
  #queueCommit(): Promise<void> | undefined {
    const pending = this.#pending;
    if (!pending || this.#streamed) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const scope = this.#takeScope();
    const batches = this.#takeBatches();
    this.#streamedInDestTx = null; // the job commits the destination transaction
    const info = {
      endLsn: pending.endLsn,
      commitTimeIso: pgTimestampToIso(pending.commitTime),
      transactions: this.#pendingTxns,
      changes: this.#pendingChanges,
      counts: this.#counts,
      seconds: 0,
    };
    this.#pending = null;
    this.#pendingTxns = 0;
    this.#pendingChanges = 0;
    this.#counts = { clone: 0, append: 0, history: 0, anomalies: 0 };
    const record = (tx: Sql) =>
      writeProgress(tx, this.opts, {
        commitLsn: formatLsn(pending.commitLsn),
        endLsn: formatLsn(pending.endLsn),
        commitTimeIso: info.commitTimeIso,
        counts: info.counts,
      });
    return this.#jobs.push(scope, async () => {
      const started = performance.now();
      const groups = this.opts.groupCommits;
      if (groups && !this.#inDestTx && !this.#writer) {
        // The whole destination transaction is this job: it may share one with other sources.
        // It may run twice (a failed group retries each source alone): counts and
        // reports start afresh each time, and are reported once committed.
        let reports: (() => void)[] = [];
        const write = (tx: Sql) => {
          info.counts = { clone: 0, append: 0, history: 0, anomalies: 0 };
          reports = [];
          return this.#write(batches, info.counts, scope, { tx, reports });
        };
        try {
          // Fenced inside the source's savepoint: a source another process claimed fails alone.
          await groups.commit({ write: (tx) => fenced(tx, this.opts, () => write(tx)), record }, {
            origin: this.opts.origin ?? null,
            signal: this.#aborted.signal,
            onWriter: (writer) => (this.#groupWriter = writer),
          });
        } finally {
          this.#groupWriter = null;
        }
        for (const report of reports) report();
      } else {
        await this.#write(batches, info.counts, scope);
        const tx = await this.#destTx();
        // The progress row and COMMIT go out together (one round trip): a failed
        // UPSERT aborts the transaction, and the COMMIT then answers ROLLBACK.
        const progress = record(tx);
        const commit = tx.unsafe("COMMIT").execute();
        commit.catch(() => {}); // awaited below, unless the progress row failed first
        await this.#begin;
        await progress;
        const result = await commit;
        if (result.command === "ROLLBACK") throw new Error("destination rolled back the batch");
        this.#release();
      }
      info.seconds = (performance.now() - started) / 1000;
      this.#safeLsn = pending.endLsn;
      this.#positionWrittenAt = performance.now();
      this.#skipUpTo = pending.commitLsn;
      this.#log.debug("committed {transactions} transaction(s), {changes} change(s) up to {lsn}", {
        transactions: info.transactions,
        changes: info.changes,
        lsn: formatLsn(info.endLsn),
      });
      this.opts.onCommit?.(info);
    });
  }

  /** The scope of a job taking the buffered changes. */
  #takeScope(): JobScope {
    return { folded: this.#bufferedFolded, streamedXid: this.#streamedInDestTx };
  }

  #takeBatches(): Map<TableRoute, TableBatch> {
    const batches = this.#batches;
    this.#batches = new Map();
    this.#buffered = 0;
    this.#bufferedBytes = 0;
    this.#bufferedFolded = false;
    return batches;
  }

  /** The open destination transaction's client, leasing a writer and beginning it first. */
  async #destTx(): Promise<Sql> {
    // A writer is one connection: statements run in order on one session. If it
    // dies the statement fails, and the writer is given back broken (never reused).
    if (!this.#inDestTx) {
      const writer = this.#writer ?? await this.#lease();
      // Not awaited: BEGIN goes out with the first statement (one round trip less).
      // Deferrable constraints are checked at COMMIT: tables are written one after
      // another, so a child row may be written before its parent.
      this.#begin = writer.sql.unsafe("BEGIN; SET CONSTRAINTS ALL DEFERRED").execute();
      this.#begin.catch(() => {}); // awaited before COMMIT
      this.#inDestTx = true;
    }
    return this.#writer!.sql;
  }

  /** Leases a writer (in line behind the sources that asked first); held until {@link #release}. */
  async #lease(): Promise<WriterLease> {
    const writer = await this.writers.lease(this.opts.origin ?? null, this.#aborted.signal);
    if (this.#aborted.signal.aborted) { // aborted while the lease was on its way
      writer.release(true);
      throw this.#aborted.signal.reason;
    }
    this.#writer = writer;
    return writer;
  }

  /** Gives the writer back after a COMMIT or ROLLBACK. */
  #release(): void {
    this.#inDestTx = false;
    this.#writer?.release();
    this.#writer = null;
  }

  /**
   * Writes taken batches into the open destination transaction; counts rows
   * into `counts`, and the route being written into `scope`.
   */
  async #write(
    batches: Map<TableRoute, TableBatch>,
    counts: BatchCounts,
    scope: JobScope,
    group?: { tx: Sql; reports: (() => void)[] },
  ): Promise<void> {
    if (batches.size === 0) return;
    const tx = group?.tx ?? await this.#destTx();
    for (const [route, batch] of parentsFirst([...batches])) {
      if (batch.size === 0) continue;
      scope.writing = route;
      const started = performance.now();
      const result = await batch.flush(tx, group !== undefined);
      // A filtered table's target may lack a key it is told to update or delete (transform_change.ts).
      if (route.transform) result.anomalies = result.anomalies.filter(countsOnTransform);
      const seconds = (performance.now() - started) / 1000;
      counts[route.mode] += result.rowsWritten;
      counts.anomalies += result.anomalies.length;
      const report = () => {
        for (const [op, count] of Object.entries(result.ops) as [keyof OpCounts, number][]) {
          if (count > 0) this.opts.onOperations?.(route.source, { operation: op, count, seconds });
        }
        for (const a of result.anomalies) {
          const line = this.#lines.take(a.route.source);
          if (line.say) {
            this.#log.warn("anomaly {kind} on {table}: key ({key}) — converged{held}", {
              kind: a.kind,
              table: a.route.source,
              key: a.key.join(", "),
              held: heldNote(line.held),
            });
          }
          this.opts.onAnomaly?.(a);
        }
      };
      // In a group, reported once committed (a failed group runs its members again).
      if (group) group.reports.push(report);
      else report();
    }
  }
}

/** False for a missing key on a table with `filter` or `set`: rows move in and out of its target. */
function countsOnTransform(a: Anomaly): boolean {
  return a.kind !== "update_missing" && a.kind !== "delete_missing";
}
