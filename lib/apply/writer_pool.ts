/**
 * The destination writers every source shares: at most `size` connections,
 * opened on demand. A source's destination transaction leases one at its
 * first statement and gives it back at its COMMIT or ROLLBACK; meanwhile the
 * writer is that source's alone, and a source asks for one only when it holds
 * none, so its transactions run one after another, in order. Sources waiting
 * for a writer are served in the order they asked: a source busy for a long
 * time holds one writer for its transaction, then queues behind the others.
 *
 * A writer given back after a failure (or whose session the watchdog judged
 * dead) is ended, never reused: the server rolls back what it held. Each lease
 * tags the writer's session with the source's replication origin (switched
 * before the lessee's BEGIN, on the same connection), so `origin none`
 * readers never see kvsz's writes echoed back.
 */
import type { Logger } from "@logtape/logtape";
import { connect, socketOf, type Sql } from "../pg/connect.ts";
import { quoteLiteral } from "../pg/identifiers.ts";
import { describeError } from "../pg/describe.ts";

/** Options of {@link WriterPool}. */
export interface WriterPoolOptions {
  /** Destination URL. */
  url: string;
  /** Writers at most (`apply.workers`). */
  size: number;
  /** Startup parameters of every writer (`destination.replica_role`). */
  params?: Record<string, string>;
  log: Logger;
}

/** One writer connection. */
interface Writer {
  sql: Sql;
  /** Backend pid of its session, once known. */
  pid: number | null;
  /** The socket its session started on: another one means the driver reconnected. */
  socket: unknown;
  /** The replication origin its session is set up with. */
  origin: string | null;
  /** Settles when what was last sent to switch its origin (or to end it) has run. */
  settled: Promise<unknown>;
}

interface Waiter {
  origin: string | null;
  signal?: AbortSignal;
  resolve: (lease: WriterLease) => void;
  reject: (e: unknown) => void;
  onAbort: () => void;
}

/** Longest wait for another writer to drop an origin before setting it up anyway. */
const ORIGIN_WAIT_MS = 5000;

/** A writer lent to one source until {@link release}. */
export class WriterLease {
  #released = false;

  constructor(private readonly pool: WriterPool, private readonly writer: Writer) {}

  /** The writer's client: one connection, statements run in the order sent. */
  get sql(): Sql {
    return this.writer.sql;
  }

  /** Backend pid of the writer's session, once known. */
  get pid(): number | null {
    return this.writer.pid;
  }

  /** Ends the writer's connection at once (a write on it fails); release it as broken afterwards. */
  end(): void {
    this.writer.sql.end({ timeout: 0 }).catch(() => {});
  }

  /** Gives the writer back; `broken` (it saw a failure) ends it instead. Only the first call counts. */
  release(broken = false): void {
    if (this.#released) return;
    this.#released = true;
    this.pool.giveBack(this.writer, broken);
  }
}

/** The shared writers (see the module comment). */
export class WriterPool {
  #idle: Writer[] = [];
  /** Writers open or opening, idle or leased. */
  #count = 0;
  #waiters: Waiter[] = [];
  /** The writer each replication origin was last set up on. */
  #originAt = new Map<string, Writer>();
  #closed = false;
  #ending: Promise<unknown>[] = [];

  constructor(private readonly opts: WriterPoolOptions) {}

  /**
   * Leases a writer whose session is tagged with `origin` (none: untagged),
   * waiting in line when all are leased. Rejects once `signal` aborts, and
   * when the pool is closed.
   */
  lease(origin: string | null, signal?: AbortSignal): Promise<WriterLease> {
    if (this.#closed) return Promise.reject(new Error("the destination writers are closed"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        origin,
        signal,
        resolve,
        reject,
        onAbort: () => {
          const at = this.#waiters.indexOf(waiter);
          if (at >= 0) this.#waiters.splice(at, 1);
          reject(signal!.reason);
        },
      };
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
      this.#serve();
    });
  }

  /** Called by {@link WriterLease.release}. */
  giveBack(writer: Writer, broken: boolean): void {
    if (broken || this.#closed || this.#restarted(writer)) this.#discard(writer);
    else this.#idle.push(writer);
    this.#serve();
  }

  /** Ends every writer (once none is leased) and refuses new leases. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) {
      w.signal?.removeEventListener("abort", w.onAbort);
      w.reject(new Error("the destination writers are closed"));
    }
    for (const w of this.#idle.splice(0)) this.#discard(w);
    await Promise.all(this.#ending);
  }

  /** Hands writers to the waiters at the head of the line, opening new ones up to the size. */
  #serve(): void {
    while (this.#waiters.length > 0) {
      const waiter = this.#waiters[0];
      const writer = this.#pick(waiter.origin);
      if (!writer) return;
      this.#waiters.shift();
      waiter.signal?.removeEventListener("abort", waiter.onAbort);
      this.#prepare(writer, waiter.origin).then(() => {
        if (waiter.signal?.aborted) {
          this.giveBack(writer, false);
          waiter.reject(waiter.signal.reason);
        } else waiter.resolve(new WriterLease(this, writer));
      });
    }
  }

  /** An idle writer (preferably one already tagged with `origin`), a new one, or none. */
  #pick(origin: string | null): Writer | undefined {
    if (this.#idle.length > 0) {
      const at = Math.max(0, this.#idle.findIndex((w) => w.origin === origin));
      return this.#idle.splice(at, 1)[0];
    }
    if (this.#count >= this.opts.size) return undefined;
    this.#count++;
    const sql = connect(this.opts.url, { max: 1, params: this.opts.params });
    const writer: Writer = {
      sql,
      pid: null,
      socket: null,
      origin: null,
      settled: Promise.resolve(),
    };
    // Pipelined with the lessee's first statements; a failure shows there.
    sql.unsafe("SELECT pg_backend_pid() AS pid").then(([row]) => {
      writer.pid = Number(row.pid);
      writer.socket = socketOf(sql);
    }, () => {});
    return writer;
  }

  /** True when the driver reconnected the writer behind the pool's back (its session is new). */
  #restarted(writer: Writer): boolean {
    return writer.socket !== null && socketOf(writer.sql) !== writer.socket;
  }

  #discard(writer: Writer): void {
    this.#count--;
    const ended = writer.sql.end({ timeout: 0 }).catch(() => {});
    writer.settled = ended;
    this.#ending.push(ended);
    ended.then(() => this.#ending.splice(this.#ending.indexOf(ended), 1));
  }

  /**
   * Tags the writer's session with `origin`, sent ahead of the lessee's
   * statements. An origin is active in one session at a time: when another
   * writer had it, that writer's switch away (or its end) is waited for.
   */
  async #prepare(writer: Writer, origin: string | null): Promise<void> {
    if (writer.origin === origin) return;
    const before = origin === null ? undefined : this.#originAt.get(origin);
    if (before && before !== writer) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        before.settled,
        new Promise((r) => (timer = setTimeout(r, ORIGIN_WAIT_MS))),
      ]);
      clearTimeout(timer);
    }
    const statements = [
      `SELECT pg_replication_origin_session_reset() WHERE pg_replication_origin_session_is_setup()`,
    ];
    if (origin !== null) {
      statements.push(`SELECT pg_replication_origin_session_setup(${quoteLiteral(origin)})`);
      this.#originAt.set(origin, writer);
    }
    writer.origin = origin;
    writer.settled = writer.sql.unsafe(statements.join("; ")).catch((e) => {
      writer.origin = null;
      this.opts.log.debug("writes not tagged with replication origin {origin}: {error}", {
        origin,
        error: describeError(e),
      });
    });
  }
}

/**
 * Creates replication origin `name` when missing; false when kvsz may not
 * (it needs superuser or a granted pg_replication_origin_* function): the
 * source's writes then go untagged.
 */
export async function createReplicationOrigin(sql: Sql, name: string): Promise<boolean> {
  try {
    await sql.unsafe(
      `SELECT pg_replication_origin_create($1)
        WHERE NOT EXISTS (SELECT 1 FROM pg_replication_origin WHERE roname = $1)`,
      [name],
    );
    return true;
  } catch {
    return false;
  }
}
