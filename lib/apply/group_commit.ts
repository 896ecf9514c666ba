/**
 * Group commit: the ready commits of several sources share one destination
 * transaction. A source whose whole destination transaction is one job (the
 * common case of a quiet or steady tenant: its batch, then its progress row)
 * hands that work here instead of leasing a writer itself. Work handed in
 * while the group's writer is being waited for joins that group (up to
 * {@link MAX_MEMBERS}); the group then runs on one writer: BEGIN, each
 * member inside a SAVEPOINT of its own, one COMMIT. Each member's promise
 * settles once the COMMIT has: a source acknowledges only what is committed,
 * and its next job starts after, so its transactions stay in order and it is
 * never in two groups at once.
 *
 * A member writes its changes (awaited: a failure there is its own: it is
 * rolled back to its savepoint and fails alone, the others commit), then
 * records its progress row, sent with the next member's first statements
 * without a round trip of its own. A failure of the transaction itself (a
 * progress row, its COMMIT, the connection) fails every member: nothing of
 * the group was committed, and each source resumes from its stored progress. The group's writer is tagged
 * with its first member's replication origin: every change kvsz writes
 * carries some kvsz origin, which is what `origin none` readers filter on.
 */
import type { Sql } from "../pg/connect.ts";
import type { WriterLease, WriterPool } from "./writer_pool.ts";

/**
 * Members of one group at most: each is a subtransaction, and PostgreSQL
 * keeps up to 64 of a transaction in shared memory before other sessions'
 * snapshots get slower.
 */
const MAX_MEMBERS = 32;

/** How a member takes part in a group (see {@link GroupCommits.commit}). */
export interface MemberOptions {
  /** The source's replication origin, used when it is the group's first member. */
  origin: string | null;
  /** Aborted: the member is dropped before its work runs (its promise rejects). */
  signal?: AbortSignal;
  /** Called with the group's writer just before the member's work runs on it. */
  onWriter?: (writer: WriterLease) => void;
}

/** A member's statements, on the group's transaction. */
export interface MemberWork {
  /** Writes the member's changes; a failure is the member's alone. */
  write(tx: Sql): Promise<void>;
  /** Sends its progress row; the group awaits it before its COMMIT. */
  record(tx: Sql): Promise<unknown>;
}

interface Member extends MemberOptions {
  work: MemberWork;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** The groups of one destination (see the module comment). */
export class GroupCommits {
  /** The group waiting for its writer; work handed in meanwhile joins it. */
  #forming: Member[] | null = null;

  constructor(private readonly writers: Pick<WriterPool, "lease">) {}

  /**
   * Runs `work` in a destination transaction shared with other sources;
   * resolves once that transaction has committed, rejects when the member's
   * writes or the transaction failed.
   */
  commit(work: MemberWork, opts: MemberOptions): Promise<void> {
    return new Promise((resolve, reject) => {
      const member: Member = { ...opts, work, resolve, reject };
      if (this.#forming && this.#forming.length < MAX_MEMBERS) {
        this.#forming.push(member);
        return;
      }
      const group = [member];
      this.#forming = group;
      this.#run(group, member.origin);
    });
  }

  async #run(group: Member[], origin: string | null): Promise<void> {
    let writer: WriterLease;
    try {
      writer = await this.writers.lease(origin);
    } catch (e) {
      this.#close(group);
      for (const m of group) m.reject(e);
      return;
    }
    this.#close(group);
    const members = group.filter((m) => {
      if (!m.signal?.aborted) return true;
      m.reject(m.signal.reason);
      return false;
    });
    if (members.length === 0) return writer.release();
    const tx = writer.sql;
    const committed: Member[] = [];
    const failed: [Member, unknown][] = [];
    /** Statements sent and not awaited yet: the first failure among them fails the group. */
    const recorded: Promise<unknown>[] = [];
    const send = (statement: Promise<unknown>) => {
      statement.catch(() => {}); // awaited with the others
      recorded.push(statement);
    };
    try {
      // Not awaited: BEGIN goes out with the first member's statements. Deferrable
      // constraints are checked at COMMIT (a child row may be written before its parent).
      send(tx.unsafe("BEGIN; SET CONSTRAINTS ALL DEFERRED").execute());
      const alone = members.length === 1;
      for (const m of members) {
        if (m.signal?.aborted) {
          failed.push([m, m.signal.reason]);
          continue;
        }
        m.onWriter?.(writer);
        if (!alone) send(tx.unsafe("SAVEPOINT kvsz_source").execute());
        try {
          await m.work.write(tx);
        } catch (e) {
          if (alone) throw e;
          // Rolled back to its own savepoint only if all before it (its SAVEPOINT too)
          // succeeded; else the transaction failed, and with it every member.
          await Promise.all(recorded);
          failed.push([m, e]);
          await tx.unsafe("ROLLBACK TO SAVEPOINT kvsz_source");
          continue;
        }
        send(m.work.record(tx));
        if (!alone) send(tx.unsafe("RELEASE SAVEPOINT kvsz_source").execute());
        committed.push(m);
      }
      const commit = tx.unsafe("COMMIT").execute();
      commit.catch(() => {}); // awaited after the statements before it
      await Promise.all(recorded);
      const result = await commit;
      if (result.command === "ROLLBACK") throw new Error("destination rolled back the batch");
      writer.release();
    } catch (e) {
      writer.release(true);
      for (const m of members) if (!failed.some(([f]) => f === m)) failed.push([m, e]);
      committed.length = 0;
    }
    for (const m of committed) m.resolve();
    for (const [m, e] of failed) m.reject(e);
  }

  /** No more members join `group`: the next ones form a group of their own. */
  #close(group: Member[]): void {
    if (this.#forming === group) this.#forming = null;
  }
}
