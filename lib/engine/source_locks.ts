/**
 * The destination-side lock of each source a kvsz process runs: a session
 * advisory lock (`pg_try_advisory_lock(key)`, {@link lockKey} of the slot
 * name) held on the process's catalog connection, so it costs no connection
 * of its own (the budget stays `apply.workers + sync.parallelism + 2`). One
 * process holds a source's lock at a time; another one started on the same
 * shard (a rolling restart, a second copy of a pod) waits, and takes the lock
 * when the holder's session ends (its process stopped or died, or its
 * connection was lost).
 *
 * Every {@link LOCK_POLL_MS} one statement tries the locks waited for and
 * reads the session's backend pid: a new pid (or socket, or client) means the
 * session that held the locks is gone, and every hold is lost: its source
 * must stop applying until it holds the lock again. A lock lost between two
 * polls is covered by the fence on every write (lib/apply/ownership.ts).
 * A session given up on (a connection taken for dead whose server session
 * lives on, still holding the locks) is ended from the next one before its
 * locks are tried again.
 */
import { socketOf, type Sql } from "../pg/connect.ts";
import { textArray } from "../apply/text_array.ts";
import { errorCode } from "../pg/errors.ts";
import { describeError } from "../pg/describe.ts";
import { log } from "../log.ts";
import { fnv1a64 } from "./shard.ts";

/** Milliseconds between two tries of the locks waited for, and two checks of the session. */
export const LOCK_POLL_MS = 2000;
/** Milliseconds given a left-behind session to exit before it is looked at again. */
const ABANDONED_WAIT_MS = 200;

/** The advisory lock key of a source: its slot name's 64-bit FNV-1a, as a signed bigint. */
export function lockKey(slotName: string): bigint {
  return BigInt.asIntN(64, fnv1a64(slotName));
}

/** One source's hold on its lock, until {@link release}d or lost. */
export class SourceLock {
  #lost = false;
  readonly #onLost = new Set<() => void>();

  constructor(readonly key: bigint, private readonly locks: SourceLocks) {}

  /** True once the session that held the lock is gone (see the module comment). */
  get isLost(): boolean {
    return this.#lost;
  }

  /** Calls `fn` when the lock is lost (at once if it is); returns the unsubscribe. */
  onLost(fn: () => void): () => void {
    if (this.#lost) {
      fn();
      return () => {};
    }
    this.#onLost.add(fn);
    return () => this.#onLost.delete(fn);
  }

  /** Gives the lock up (the session releases it once no other hold of the key remains). */
  release(): void {
    this.locks.release(this);
  }

  /** Called by {@link SourceLocks} when the session is gone. */
  markLost(): void {
    if (this.#lost) return;
    this.#lost = true;
    for (const fn of this.#onLost) fn();
    this.#onLost.clear();
  }
}

interface Waiter {
  key: bigint;
  resolve: (lock: SourceLock) => void;
  reject: (e: unknown) => void;
  /** Called once, when the first try finds the lock held elsewhere. */
  onWait?: () => void;
  tried: boolean;
  signal?: AbortSignal;
  onAbort: () => void;
}

/** The session the locks are held on. */
interface Session {
  sql: Sql;
  pid: number;
  /** Its `backend_start` (with the pid, it names the session for good). */
  started: string;
  socket: unknown;
}

/** Options of {@link SourceLocks}. */
export interface SourceLocksOptions {
  /** The catalog connection the locks are held on (it may be replaced). */
  catalog: () => Sql;
  /** Replaces catalog client `stale` (its session's state is unknown: ending it releases its locks). */
  renew: (stale: Sql) => void;
  /** Milliseconds between polls (default {@link LOCK_POLL_MS}). */
  pollMs?: number;
  /**
   * Watches a poll (the session watchdog: a poll unanswered because the
   * connection died silently fails, and `session.end()` is called); none: polls wait.
   */
  watch?: <T>(poll: Promise<T>, session: { pid: number | null; end(): void }) => Promise<T>;
}

/** The locks of one process's sources (see the module comment). */
export class SourceLocks {
  #session: Session | null = null;
  /** Sessions given up on that may still hold locks on the server (see {@link #endAbandoned}). */
  #abandoned: { pid: number; started: string }[] = [];
  /** Keys the session holds. */
  #locked = new Set<bigint>();
  #holds = new Set<SourceLock>();
  #waiters: Waiter[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | null = null;
  #again = false;
  #closed = false;
  /** Called at the end of the next poll to start (see {@link checked}). */
  #checks: (() => void)[] = [];

  constructor(private readonly opts: SourceLocksOptions) {}

  /** Resolves once a poll that started after the call has checked the session (and so the holds). */
  checked(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#checks.push(resolve);
      this.#kick();
    });
  }

  /**
   * Resolves with a hold on the lock of slot `slotName` once this process
   * holds it: at once when it does, else after the holder lets go. `onWait`
   * is called once if the first try finds it held elsewhere. Rejects when
   * `signal` aborts or the locks are closed.
   */
  acquire(
    slotName: string,
    { signal, onWait }: { signal?: AbortSignal; onWait?: () => void } = {},
  ): Promise<SourceLock> {
    if (this.#closed) return Promise.reject(new Error("the source locks are closed"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        key: lockKey(slotName),
        resolve,
        reject,
        onWait,
        tried: false,
        signal,
        onAbort: () => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(signal!.reason);
        },
      };
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
      this.#kick();
    });
  }

  /** Called by {@link SourceLock.release}. */
  release(lock: SourceLock): void {
    if (!this.#holds.delete(lock) || lock.isLost) return;
    if ([...this.#holds].some((h) => h.key === lock.key)) return;
    const session = this.#session;
    if (!session || !this.#locked.delete(lock.key)) return;
    session.sql.unsafe(`SELECT pg_advisory_unlock($1::int8)`, [lock.key.toString()])
      .catch(() => {}); // the session is gone: so is the lock
  }

  /**
   * Stops polling and refuses new waits; call once no source runs (the
   * catalog's end releases the locks, and fails a poll still running).
   */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const done of this.#checks.splice(0)) done();
    for (const w of this.#waiters.splice(0)) {
      w.signal?.removeEventListener("abort", w.onAbort);
      w.reject(new Error("the source locks are closed"));
    }
  }

  /** Runs a poll now (or right after the running one). */
  #kick(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#timer);
    const checks = this.#checks.splice(0);
    this.#running = this.#poll().finally(() => {
      for (const done of checks) done();
      this.#running = null;
      if (this.#closed) return;
      if (this.#again) {
        this.#again = false;
        this.#kick();
      } else if (this.#holds.size > 0 || this.#waiters.length > 0) {
        this.#timer = setTimeout(() => this.#kick(), this.opts.pollMs ?? LOCK_POLL_MS);
      }
    });
  }

  /** Checks the session and tries the locks waited for (see the module comment). */
  async #poll(): Promise<void> {
    const sql = this.opts.catalog();
    const same = this.#session?.sql === sql;
    const keys = [
      ...new Set(this.#waiters.map((w) => w.key).filter((k) => !same || !this.#locked.has(k))),
    ];
    const asked = new Set(keys);
    const session = {
      pid: same ? this.#session!.pid : null,
      end: () => void sql.end({ timeout: 0 }).catch(() => {}),
    };
    const watched = <T>(poll: Promise<T>) => this.opts.watch?.(poll, session) ?? poll;
    let row;
    try {
      if (!await watched(this.#endAbandoned(sql))) return;
      [row] = await watched(sql.unsafe(
        `SELECT pg_backend_pid() AS pid,
                (SELECT backend_start::text FROM pg_stat_activity
                  WHERE pid = pg_backend_pid()) AS started,
                (SELECT string_agg(k::text, ',') FROM unnest($1::int8[]) AS k
                  WHERE pg_try_advisory_lock(k)) AS got`,
        [`{${keys.join(",")}}`],
      ));
    } catch (e) {
      // What the session holds is unknown: end it (the server releases its locks).
      if (this.#holds.size > 0) {
        log("run").warn(
          "the destination session holding the sources' locks failed ({error}): its {count} " +
            "source(s) stop applying until they hold their locks again on a new session",
          { error: describeError(e), count: this.#holds.size },
        );
      }
      this.#abandon();
      this.opts.renew(sql);
      return;
    }
    const now = { sql, pid: Number(row.pid), started: String(row.started), socket: socketOf(sql) };
    const was = this.#session;
    if (was && (was.sql !== sql || was.pid !== now.pid || was.socket !== now.socket)) {
      this.#abandon();
    }
    this.#session = now;
    for (const k of String(row.got ?? "").split(",").filter(Boolean)) this.#locked.add(BigInt(k));
    const waiting: Waiter[] = [];
    for (const w of this.#waiters) {
      if (this.#locked.has(w.key)) {
        w.signal?.removeEventListener("abort", w.onAbort);
        const lock = new SourceLock(w.key, this);
        this.#holds.add(lock);
        w.resolve(lock);
        continue;
      }
      waiting.push(w);
      // The session just left behind may hold it: said only once that one is gone.
      // A waiter that came during the poll was not asked for yet: the next poll does.
      if (this.#abandoned.length > 0 || w.tried || !asked.has(w.key)) continue;
      w.tried = true;
      w.onWait?.();
    }
    this.#waiters = waiting;
    if (this.#abandoned.length > 0) this.#again = true;
  }

  /**
   * Ends the sessions this process left behind that the server still runs
   * (a connection given up as dead, whose session kept its locks: only the
   * server can end it; same pid and start time, so never another session).
   * True once none is left; false while one is still exiting (polled again soon).
   */
  async #endAbandoned(sql: Sql): Promise<boolean> {
    if (this.#abandoned.length === 0) return true;
    const rows = await this.#lookAtAbandoned(sql);
    if (rows.length === 0) {
      this.#abandoned = [];
      return true;
    }
    await new Promise((r) => setTimeout(r, ABANDONED_WAIT_MS));
    this.#again = true;
    return false;
  }

  /** The left-behind sessions the server still runs, each asked to end; none when it may not. */
  async #lookAtAbandoned(sql: Sql): Promise<unknown[]> {
    const rows = sql.unsafe(
      `SELECT a.pid, pg_terminate_backend(a.pid) AS ended FROM pg_stat_activity a
         JOIN unnest($1::int[], $2::text[]) AS s(pid, started)
           ON a.pid = s.pid AND a.backend_start::text = s.started`,
      [
        textArray(this.#abandoned.map((a) => String(a.pid))),
        textArray(this.#abandoned.map((a) => a.started)),
      ],
    );
    // Not allowed to end it (another role's): its locks wait for the server to notice.
    return await rows.catch((e) => (errorCode(e) === "42501" ? [] : Promise.reject(e)));
  }

  /** The session is left behind: its holds are lost, and it is ended at the next poll. */
  #abandon(): void {
    if (this.#session) {
      this.#abandoned.push({ pid: this.#session.pid, started: this.#session.started });
    }
    this.#session = null;
    this.#loseAll();
  }

  /** The session that held the locks is gone: every hold is lost. */
  #loseAll(): void {
    this.#locked.clear();
    const holds = [...this.#holds];
    this.#holds.clear();
    for (const h of holds) h.markLost();
  }
}
