/**
 * The idle positions of every source, recorded together: WAL that held
 * nothing for a source (keepalives, other tenants' transactions) moves its
 * stored position before kvsz confirms that WAL to its slot. On a server
 * shared by many tenants every quiet tenant has such a position every few
 * seconds; one destination transaction records all those gathered within
 * {@link GATHER_MS} (one UPDATE, one writer lease), instead of one each.
 *
 * A position only moves forward (`end_lsn < new`), so a source's own commit
 * writing its progress row meanwhile is never undone; the recording holds no
 * other lock, so it cannot deadlock with them.
 */
import { LostOwnership, type OwnedSource } from "./ownership.ts";
import { formatLsn } from "../pg/lsn.ts";
import type { WriterPool } from "./writer_pool.ts";
import { recordIdlePositions } from "./progress.ts";

/** Milliseconds positions are gathered before they are written together. */
const GATHER_MS = 1000;

interface Gathered {
  key: OwnedSource;
  lsn: bigint;
  resolve: (recorded: boolean) => void;
  reject: (e: unknown) => void;
}

/** Records sources' idle positions in groups (see the module comment). */
export class IdlePositions {
  /** Positions waiting for the next write, by source. */
  #gathered = new Map<string, Gathered>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** The write running now: one at a time. */
  #writing: Promise<void> = Promise.resolve();

  constructor(private readonly writers: Pick<WriterPool, "lease">) {}

  /**
   * Records `lsn` as the position of source `key` with the next group
   * (`now`: write the group at once, e.g. a source shutting down waits for
   * it). Resolves true once committed, false when a later position of the
   * source replaced it; rejects when the write failed (the destination is in
   * trouble: the source fails as its next commit would, and is retried), and
   * with LostOwnership when the source's claim is another's (ownership.ts).
   */
  record(key: OwnedSource, lsn: bigint, now = false): Promise<boolean> {
    return new Promise((resolve, reject) => {
      const id = `${key.database}\u0000${key.sid}`;
      const before = this.#gathered.get(id);
      if (before) before.resolve(false); // superseded by a later position
      const at = before && before.lsn > lsn ? before.lsn : lsn;
      this.#gathered.set(id, { key, lsn: at, resolve, reject });
      if (now) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), GATHER_MS);
    });
  }

  /** Writes what is gathered (after the write running now). */
  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#writing = this.#writing.then(() => this.#write());
  }

  async #write(): Promise<void> {
    const group = [...this.#gathered.values()];
    this.#gathered.clear();
    if (group.length === 0) return;
    const write = async () => {
      const writer = await this.writers.lease(null);
      try {
        const recorded = await recordIdlePositions(
          writer.sql,
          group.map((g) => ({ key: g.key, lsn: formatLsn(g.lsn) })),
        );
        writer.release();
        return recorded;
      } catch (e) {
        writer.release(true);
        throw e;
      }
    };
    let recorded: Set<string>;
    try {
      recorded = await write();
    } catch (e) {
      for (const g of group) g.reject(e); // each source reports it (it fails)
      return;
    }
    for (const g of group) {
      if (recorded.has(`${g.key.database}\u0000${g.key.sid}`)) g.resolve(true);
      else g.reject(new LostOwnership(g.key)); // another process owns it now
    }
  }

  /** Writes what is gathered now and waits for it. */
  async close(): Promise<void> {
    this.#flush();
    await this.#writing;
  }
}
