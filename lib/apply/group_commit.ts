/**
 * Group commit: the ready commits of several sources share one destination
 * transaction. A source whose whole destination transaction is one job (the
 * common case of a quiet or steady tenant: its batch, then its progress row)
 * hands that work here instead of leasing a writer itself. Work handed in
 * while the group's writer is being waited for joins that group (up to
 * {@link MAX_MEMBERS}); the group then runs on one writer: BEGIN, every
 * member's statements sent together (each member's next statement as soon as
 * its previous one answered, so a group costs the round trips of its longest
 * member, not their sum), each member's progress row, one COMMIT. Each
 * member's promise settles once the COMMIT has: a source acknowledges only
 * what is committed, and its next job starts after, so its transactions stay
 * in order and it is never in two groups at once.
 *
 * When anything in a group fails, nothing of it is committed, and each
 * member runs again alone, in a transaction of its own: a member whose
 * changes the destination refuses fails alone, the others commit (a member's
 * work can run again: see {@link MemberWork}). The group's writer is tagged
 * with its first member's replication origin: every change kvsz writes
 * carries some kvsz origin, which is what `origin none` readers filter on.
 */
import type { Sql } from "../pg/connect.ts";
import type { WriterLease, WriterPool } from "./writer_pool.ts";

/** Members of one group at most. */
const MAX_MEMBERS = 64;

/** How a member takes part in a group (see {@link GroupCommits.commit}). */
export interface MemberOptions {
  /** The source's replication origin, used when it is the group's first member. */
  origin: string | null;
  /** Aborted: the member is dropped before its work runs (its promise rejects). */
  signal?: AbortSignal;
  /** Called with the writer just before the member's work runs on it. */
  onWriter?: (writer: WriterLease) => void;
}

/**
 * A member's statements on the group's transaction. Each runs again, whole,
 * when a group fails: it must write the same each time.
 */
export interface MemberWork {
  /** Writes the member's changes. */
  write(tx: Sql): Promise<void>;
  /** Sends its progress row, after its changes; the group awaits it with its COMMIT. */
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
   * resolves once that transaction has committed, rejects when the
   * destination refused the member's work (alone) or its writer failed.
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
      this.#run(group).then(() => {
        if (this.#forming === group) this.#forming = null;
      });
    });
  }

  /** Runs `group` in one transaction; when it fails, each member alone. */
  async #run(group: Member[]): Promise<void> {
    const first = await this.#lease(group);
    if (!first) return;
    const [writer, members] = first;
    try {
      await transaction(writer, members);
      writer.release();
      for (const m of members) m.resolve();
      return;
    } catch (e) {
      writer.release(true); // its session ends: the server rolls back what it held
      if (members.length === 1) return members[0].reject(e);
    }
    await Promise.all(members.map((m) => this.#run([m])));
  }

  /** A writer for `group` (its first member's origin), and its members still wanted; none when every one is gone. */
  async #lease(group: Member[]): Promise<[WriterLease, Member[]] | null> {
    let writer: WriterLease;
    try {
      writer = await this.writers.lease(group[0].origin);
    } catch (e) {
      if (this.#forming === group) this.#forming = null;
      for (const m of group) m.reject(e);
      return null;
    }
    if (this.#forming === group) this.#forming = null; // the next ones form a group of their own
    const members = group.filter((m) => {
      if (!m.signal?.aborted) return true;
      m.reject(m.signal.reason);
      return false;
    });
    if (members.length > 0) return [writer, members];
    writer.release();
    return null;
  }
}

/** One transaction on `writer` holding every member's work; rejects with the first failure. */
async function transaction(writer: WriterLease, members: Member[]): Promise<void> {
  const tx = writer.sql;
  /** Statements sent and not awaited: BEGIN, progress rows, COMMIT. */
  const sent: Promise<unknown>[] = [];
  const send = (statement: Promise<unknown>) => {
    statement.catch(() => {}); // awaited below: the first failure is thrown
    sent.push(statement);
  };
  // Deferrable constraints are checked at COMMIT (a child row may be written before its parent).
  send(tx.unsafe("BEGIN; SET CONSTRAINTS ALL DEFERRED").execute());
  const works = members.map((m) => {
    m.onWriter?.(writer);
    return m.work.write(tx).then(() => send(m.work.record(tx)));
  });
  for (const w of works) w.catch(() => {});
  try {
    await Promise.all(works);
    send(tx.unsafe("COMMIT").execute());
    const results = await Promise.all(sent);
    const commit = results[results.length - 1] as { command: string };
    if (commit.command === "ROLLBACK") throw new Error("destination rolled back the batch");
  } catch (e) {
    // Every statement sent has answered (failed, the transaction being aborted)
    // before the transaction is rolled back and the writer given up: none is
    // left in the driver's queue for a session it might open next.
    await Promise.allSettled([...works, ...sent]);
    await tx.unsafe("ROLLBACK").catch(() => {});
    throw e;
  }
}
