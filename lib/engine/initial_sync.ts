/**
 * Initial sync: copies mapped tables from a source snapshot into their targets
 * as a byte pipe (`COPY (SELECT …) TO STDOUT` → `COPY … FROM STDIN`), several
 * at a time, all in the same exported snapshot, optionally rate limited.
 * Every task takes one of the process's copy turns (copy_slots.ts), the
 * first one the turn its source started with, and opens its connections only
 * then.
 *
 * A table copied whole commits together with its `kvsz.synced_tables` record.
 * A large table (PostgreSQL 14+, a key, not a re-sync) is copied as ranges of
 * heap pages in parallel, each range in its own destination transaction that
 * also records its transaction id in `kvsz.sync_ranges`. A record with LSN
 * 0/0 ("not synced") is committed before the first range; the snapshot LSN
 * replaces it, and the range records go, in one transaction after the last
 * range. After a crash in between, the next start deletes the rows those
 * transactions wrote (by `xmin`) and copies the table again from scratch. So
 * a crash never leaves a half-copied table marked synced.
 */
import type { Sql } from "../pg/connect.ts";
import type { TableKey } from "../config/types.ts";
import { connect, socketOf } from "../pg/connect.ts";
import { qualify } from "../pg/identifiers.ts";
import { formatLsn } from "../pg/lsn.ts";
import type { TargetTable } from "../apply/types.ts";
import { targetName } from "../apply/write_order.ts";
import { markTableSynced } from "../apply/progress.ts";
import { fenceOwner } from "../apply/ownership.ts";
import { prepareResync } from "../apply/resync.ts";
import { textArray } from "../apply/text_array.ts";
import { importSnapshot } from "../source/slot.ts";
import type { ResolvedTable } from "../source/tables.ts";
import { RateLimiter } from "../source/rate_limiter.ts";
import { type CopyPart, copyStatements, type PageRange, planParts } from "./copy_plan.ts";
import { type ChunkHook, type CopyStatements, pipeCopy } from "../source/copy_pipe.ts";
import { relayCopy } from "../source/copy_relay.ts";
import { refusedCopy } from "../source/refused_copy.ts";
import {
  ensureRangeLog,
  forgetRanges,
  recordRange,
  undoInterruptedCopies,
} from "../source/range_log.ts";
import { log } from "../log.ts";
import { type SyncProgress } from "./events.ts";
import type { CopySlots, CopyTurn } from "./copy_slots.ts";

/** One table to copy. */
export interface SyncJob {
  table: ResolvedTable;
  target: TargetTable;
  /** The target already holds rows of this source: merge instead of a plain COPY. */
  resync: boolean;
  /** No other source of the config writes the target (see `ResyncTarget.exclusive`). */
  exclusive: boolean;
}

/** Options for {@link copyTables}. */
export interface CopyOptions {
  sourceUrl: string;
  /** Source server major version (page ranges need 14+ for TID range scans). */
  sourceMajor: number;
  snapshotName: string;
  /** LSN of the snapshot: changes committed at or below it are in the copy. */
  snapshotLsn: bigint;
  /** The source's catalog connection (sizes the tables; not in the snapshot). */
  source: Sql;
  /** Destination client for kvsz's records; each worker opens its own connection for copies. */
  dest: Sql;
  destUrl: string;
  /** Startup parameters of the workers' destination connections. */
  destParams?: Record<string, string>;
  destSchema: string;
  database: string;
  sid: string;
  parallelism: number;
  /** The copy turns shared by every source: a worker copies only while it holds one. */
  slots: CopySlots;
  /** The turn the source started its copy with: the first worker copies on it. */
  turn?: CopyTurn;
  /** Aborts a wait for a turn (the pipeline stops). */
  signal?: AbortSignal;
  /** Tables of at least this many bytes are copied as page ranges in parallel (0 = never). */
  splitBytes: number;
  /** Rows per second for this source (0 = unlimited) and burst size. */
  rate: number;
  burst: number;
  progress: SyncProgress;
  /** Called for each row whose filter or set failed (an anomaly of `table`). */
  onExpressionError?: (table: string, key: (string | null)[]) => void;
  /** Called when a target's copy is committed (kvsz analyzes it, off the copy's path). */
  onCopied?: (target: TargetTable) => void;
  /** The token of this process's claim on the source: each copy transaction is fenced by it. */
  ownerToken?: string | null;
}

/** One table's copy, shared by the tasks that copy its ranges. */
interface TableCopy {
  job: SyncJob;
  label: string;
  /** The table in kvsz's records. */
  key: TableKey;
  /** Catalog plan, read by the first task that runs. */
  parts: Promise<CopyPart[]> | null;
  /** Tasks of the table (1, or its page ranges). */
  tasks: number;
  /** Tasks not yet committed; the table is synced when it reaches 0. */
  remaining: number;
  rows: number;
  copied: number;
  bytes: number;
  started: boolean;
  /** The 0/0 record committed before the first range (split tables only). */
  begun: Promise<void> | null;
}

/** A worker's two connections: the source in the snapshot, the destination for its copies. */
interface Worker {
  source: Sql;
  dest: Sql;
}

/** A unit of work for one worker: a whole table, or one page range of it. */
interface Task {
  table: TableCopy;
  range: PageRange | null;
  bytes: number;
}

/** What one task copies with, besides its table. */
interface TaskRun {
  /** The worker running the task. */
  worker: Worker;
  /** The task's page range; null for a whole table. */
  range: PageRange | null;
  /** Counts each chunk copied and waits for the rate limiter. */
  onChunk: ChunkHook;
  /** The options of {@link copyTables}. */
  opts: CopyOptions;
}

/** What {@link planCopy} reads with: the source's and destination's catalog connections, and the sizing knobs. */
export type PlanOptions = Pick<
  CopyOptions,
  | "source"
  | "dest"
  | "database"
  | "sid"
  | "sourceMajor"
  | "parallelism"
  | "splitBytes"
  | "ownerToken"
>;

/** A copy planned by {@link planCopy}, to run with {@link copyTables}. */
export interface CopyPlan {
  readonly tasks: readonly Task[];
  /** What it was planned with. */
  readonly options: PlanOptions;
}

/**
 * Plans the copy of `jobs` before its snapshot exists (so that it is not
 * done while the copy holds a turn): undoes the split copies a crash
 * interrupted and sizes the tables into tasks, largest first.
 */
export async function planCopy(jobs: SyncJob[], opts: PlanOptions): Promise<CopyPlan> {
  if (jobs.length === 0) return { tasks: [], options: opts };
  jobs = await undoInterrupted(jobs, opts);
  return { tasks: await planTasks(opts.source, jobs, opts), options: opts };
}

/**
 * Copies a plan in the exported snapshot, with up to `parallelism`
 * workers, each copying only while it holds a copy turn.
 */
export async function copyTables(
  plan: CopyPlan,
  more: Omit<CopyOptions, keyof PlanOptions>,
): Promise<void> {
  const tasks = plan.tasks;
  if (tasks.length === 0) return;
  const opts: CopyOptions = { ...plan.options, ...more };
  const limiter = opts.rate > 0 ? new RateLimiter(opts.rate, opts.burst || opts.rate) : null;
  const queue = new ParentsFirstQueue(tasks);
  const run = async () => {
    let worker: Worker | null = null;
    try {
      for (let task = await queue.next(); task; task = await queue.next()) {
        if (!worker) {
          if (!opts.turn?.take()) await opts.slots.acquire(opts.signal);
          worker = openWorker(opts);
          await importSnapshot(worker.source, opts.snapshotName);
        }
        await runTask(worker, task, limiter, opts);
        queue.done();
        if (opts.slots.contended || !queue.hasReady()) {
          // Another source's task waits, or this worker would: give the turn up.
          await closeWorker(worker);
          worker = null;
          opts.slots.release();
        }
      }
    } catch (e) {
      queue.close(); // the other workers stop after their task
      throw e;
    } finally {
      if (worker) {
        await closeWorker(worker);
        opts.slots.release();
      }
    }
  };
  // Fail fast on any error.
  const workers = Math.min(Math.max(1, opts.parallelism), tasks.length);
  await Promise.all(Array.from({ length: workers }, run));
}

/**
 * A worker's connections, one per side (max 1): every source statement runs in
 * the snapshot transaction, and the relay writes to the destination's own socket.
 */
function openWorker(opts: CopyOptions): Worker {
  return {
    source: connect(opts.sourceUrl, { max: 1 }),
    dest: connect(opts.destUrl, { max: 1, params: opts.destParams }),
  };
}

/**
 * Ends a worker's connections. The read-only snapshot transaction ends with
 * its connection: no COMMIT, whose promise npm:postgres sometimes never
 * resolves after a COPY.
 */
async function closeWorker(worker: Worker): Promise<void> {
  await Promise.all([worker.source.end({ timeout: 0 }), worker.dest.end({ timeout: 5 })]);
}

/**
 * The tasks in the order workers take them: largest first, but a table whose
 * foreign key references another table of this copy waits until that one is
 * committed (its COPY checks the parent rows). A cycle of keys is taken in
 * size order (its first copy fails, and the retry copies the rest).
 */
class ParentsFirstQueue {
  #waiting: Task[];
  #running = 0;
  #wakeUps: (() => void)[] = [];
  readonly #parents = new Map<TableCopy, TableCopy[]>();

  constructor(tasks: readonly Task[]) {
    this.#waiting = [...tasks];
    const byName = new Map(tasks.map((t) => [targetName(t.table.job.target), t.table]));
    for (const { table } of tasks) {
      const own = targetName(table.job.target);
      this.#parents.set(
        table,
        table.job.target.foreignKeys.flatMap((fk) => {
          const parent = fk.references !== own ? byName.get(fk.references) : undefined;
          return parent ? [parent] : [];
        }),
      );
    }
  }

  /** True when a task is waiting whose parents are copied. */
  hasReady(): boolean {
    return this.#waiting.some((t) => this.#ready(t));
  }

  /** Gives up the tasks not taken yet (a task failed): {@link next} returns undefined. */
  close(): void {
    this.#waiting = [];
    for (const wake of this.#wakeUps.splice(0)) wake();
  }

  #ready(t: Task): boolean {
    return this.#parents.get(t.table)!.every((p) => p.remaining === 0);
  }

  /** The next task whose parents are copied, waiting for them when needed; undefined at the end. */
  async next(): Promise<Task | undefined> {
    while (this.#waiting.length > 0) {
      const ready = this.#waiting.findIndex((t) => this.#ready(t));
      if (ready >= 0 || this.#running === 0) {
        this.#running++;
        return this.#waiting.splice(Math.max(ready, 0), 1)[0];
      }
      await new Promise<void>((resolve) => this.#wakeUps.push(resolve));
    }
    return undefined;
  }

  /** A task taken with {@link next} is committed. */
  done(): void {
    this.#running--;
    for (const wake of this.#wakeUps.splice(0)) wake();
  }
}

/** Undoes the split copies a crash interrupted: those tables are copied again from scratch. */
async function undoInterrupted(jobs: SyncJob[], opts: PlanOptions): Promise<SyncJob[]> {
  const candidates = new Map(
    jobs.map((j) => [
      j.table.mapping.source,
      qualify(j.target.schema, j.target.name),
    ]),
  );
  if (candidates.size === 0) return jobs;
  const undone = await undoInterruptedCopies(
    opts.dest,
    { database: opts.database, sid: opts.sid },
    { targets: candidates, fence: (tx) => fenceOwner(tx, opts) },
  );
  for (const table of undone) {
    log("sync").with({ database: opts.database, sid: opts.sid }).info(
      "removed the rows of the interrupted copy of {table}; copying it again",
      { table },
    );
  }
  return jobs.map((j) => undone.has(j.table.mapping.source) ? { ...j, resync: false } : j);
}

/** A source relation's size in bytes and pages, and whether it has a key to merge by. */
interface RelSize {
  bytes: number;
  block: number;
  keyed: boolean;
}

/** Sizes every job (one query) and turns them into tasks, largest first. */
async function planTasks(source: Sql, jobs: SyncJob[], opts: PlanOptions): Promise<Task[]> {
  const names = jobs.flatMap((j) => j.table.copied.map((r) => qualify(r.schema, r.name)));
  const rows = await source.unsafe(
    `SELECT x.name, pg_relation_size(c.oid)::int8 AS bytes,
            current_setting('block_size')::int AS block,
            EXISTS (SELECT 1 FROM pg_index i
                     WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)) AS keyed
       FROM unnest($1::text[]) AS x(name) JOIN pg_class c ON c.oid = to_regclass(x.name)`,
    [textArray(names)],
  );
  const size = new Map<string, RelSize>(
    rows.map((r) => [String(r.name), { bytes: Number(r.bytes), block: r.block, keyed: r.keyed }]),
  );
  const tasks: Task[] = [];
  for (const job of jobs) {
    const table: TableCopy = {
      job,
      label: job.table.mapping.source,
      key: { database: opts.database, sid: opts.sid, sourceTable: job.table.mapping.source },
      parts: null,
      tasks: 0,
      remaining: 0,
      rows: 0,
      copied: 0,
      bytes: 0,
      started: false,
      begun: null,
    };
    const rels = job.table.copied.map((r) => size.get(qualify(r.schema, r.name)));
    const bytes = rels.reduce((n, r) => n + (r?.bytes ?? 0), 0);
    const ranges = splitRanges(job, rels[0], bytes, opts) ?? [null];
    table.tasks = table.remaining = ranges.length;
    for (const range of ranges) tasks.push({ table, range, bytes: bytes / ranges.length });
  }
  if (tasks.some((t) => t.range)) await ensureRangeLog(opts.dest);
  // Largest first, so the long copies start at once and small tables fill the gaps.
  return tasks.sort((a, b) => b.bytes - a.bytes);
}

/** Page ranges for a table worth splitting, or null to copy it whole. */
function splitRanges(
  job: SyncJob,
  rel: RelSize | undefined,
  bytes: number,
  opts: PlanOptions,
): PageRange[] | null {
  // Twice as many ranges as workers: a worker that finishes early takes another, so
  // the tail where one range runs alone is short (measured: 80 ms less of 1.6 s).
  const count = opts.parallelism * 2;
  if (
    count < 2 || opts.splitBytes <= 0 || bytes < opts.splitBytes || opts.sourceMajor < 14 ||
    job.resync || job.table.copied.length !== 1 || !rel?.keyed
  ) return null;
  const pages = Math.ceil(rel.bytes / rel.block);
  const out: PageRange[] = [];
  for (let i = 0; i < count; i++) {
    out.push({
      from: Math.floor((pages * i) / count),
      to: i === count - 1 ? null : Math.floor((pages * (i + 1)) / count),
    });
  }
  return out;
}

async function runTask(
  worker: Worker,
  task: Task,
  limiter: RateLimiter | null,
  opts: CopyOptions,
): Promise<void> {
  const t = task.table;
  t.parts ??= planParts(worker.source, t.job.table.copied, t.job.target, {
    mapping: t.job.table.mapping,
    database: opts.database,
    sid: opts.sid,
  });
  const parts = await t.parts;
  if (!t.started) {
    t.started = true;
    opts.progress.start(t.label, parts.reduce((n, p) => n + p.estimate, 0), t.tasks);
  }
  const onChunk: ChunkHook = (rows, bytes) => {
    t.copied += rows;
    t.bytes += bytes;
    opts.progress.update(t.label, t.copied, t.bytes);
    return limiter?.take(rows);
  };
  const explain = (e: unknown) => {
    throw refusedCopy(e, t.label, targetName(t.job.target)) ?? e;
  };
  const run: TaskRun = { worker, range: task.range, onChunk, opts };
  if (task.range) {
    await copyRange(t, parts[0], run).catch(explain);
    // Exactly one range sees 0 here: it records the table as synced.
    if (--t.remaining > 0) return;
    await opts.dest.begin(async (tx) => {
      await markSynced(tx as unknown as Sql, t, formatLsn(opts.snapshotLsn));
      await forgetRanges(tx as unknown as Sql, t.key);
      await fenceOwner(tx as unknown as Sql, opts);
    });
  } else {
    await copyWhole(t, parts, run).catch(explain);
    t.remaining--;
  }
  opts.progress.finish(t.label, t.rows);
  opts.onCopied?.(t.job.target);
}

/** Copies every part of a table in one destination transaction with its synced record. */
async function copyWhole(t: TableCopy, parts: CopyPart[], run: TaskRun): Promise<void> {
  const { job } = t;
  const { worker, opts } = run;
  await inTransaction(worker.dest, async (tx) => {
    const columns = parts[0]?.columns.filter((c) => parts.every((p) => p.columns.includes(c)));
    const sink = await prepareResync(tx, {
      target: job.target,
      mode: job.table.mapping.mode,
      resync: job.resync,
      columns: columns ?? [],
      sourceKey: parts[0]?.key ?? [],
      exclusive: job.exclusive,
    }, opts.sid);
    for (const part of parts) {
      const copy = copyStatements(part, job.target, {
        mode: job.table.mapping.mode,
        sid: opts.sid,
        sinkTable: sink.table,
        range: null,
        onExpressionError: opts.onExpressionError,
      });
      const rows = await copyPart(tx, copy, run);
      t.rows += rows;
    }
    await sink.finish();
    await markSynced(tx, t, formatLsn(opts.snapshotLsn));
    await fenceOwner(tx, opts);
  });
}

/** Copies one page range of a split table in its own destination transaction, after its 0/0 record. */
async function copyRange(t: TableCopy, part: CopyPart, run: TaskRun): Promise<void> {
  const { job } = t;
  const { opts } = run;
  t.begun ??= markSynced(opts.dest, t, "0/0");
  await t.begun;
  const copy = copyStatements(part, job.target, {
    mode: job.table.mapping.mode,
    sid: opts.sid,
    sinkTable: qualify(job.target.schema, job.target.name),
    range: run.range,
    onExpressionError: opts.onExpressionError,
  });
  let rows = 0;
  await inTransaction(run.worker.dest, async (tx) => {
    rows = await copyPart(tx, copy, run);
    // With the rows: a crash after this commit lets the next start remove exactly them.
    await recordRange(tx, t.key, rows);
    await fenceOwner(tx, opts);
  });
  t.rows += rows;
}

/**
 * Runs `fn` in a destination transaction. When it fails, its own error is
 * thrown, not the ROLLBACK's: a failed COPY may leave the connection unusable.
 */
async function inTransaction(dest: Sql, fn: (tx: Sql) => Promise<void>): Promise<void> {
  let failure: unknown = null;
  try {
    await dest.begin(async (tx) => {
      try {
        await fn(tx as unknown as Sql);
      } catch (e) {
        failure = e;
        throw e;
      }
    });
  } catch (e) {
    throw failure ?? e;
  }
}

/** One COPY into `tx` (on the worker's destination connection): relayed, or piped under TLS. */
async function copyPart(tx: Sql, copy: CopyStatements, run: TaskRun): Promise<number> {
  const { worker, onChunk } = run;
  const relayed = await relayCopy(worker.source, tx, {
    ...copy,
    onChunk,
    destSocket: socketOf(worker.dest),
  });
  return relayed ?? await pipeCopy(worker.source, tx, { ...copy, onChunk });
}

/** Records the table's copy at `lsn` (0/0 while a split copy runs). */
async function markSynced(sql: Sql, t: TableCopy, lsn: string): Promise<void> {
  const { mapping } = t.job.table;
  const parts = await t.parts ?? [];
  const sourceColumns = parts[0]?.sourceColumns.filter((c) =>
    parts.every((p) => p.sourceColumns.includes(c))
  );
  await markTableSynced(sql, t.key, {
    target: mapping.target,
    lsn,
    rows: t.rows,
    sourceColumns: sourceColumns ?? [],
    targetColumns: [...t.job.target.columns.keys()],
  });
}
