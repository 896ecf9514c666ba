/**
 * Notices a destination write that will never be answered. A write that runs
 * long is normal (a big batch, a lock held by someone else); one whose
 * connection died silently (a path that stopped carrying packets) waits for
 * ever. So when a write has gone unanswered for a while, the writing session
 * is looked at from a separate, short-lived connection: gone, or idle while
 * kvsz waits for its answer, means the connection is dead (the session is
 * ended, so it frees its locks, and the write fails so kvsz reconnects and
 * resumes from its stored progress); running or waiting for a lock is
 * reported and checked again later.
 */
import type { Logger } from "@logtape/logtape";
import { connect } from "../pg/connect.ts";
import { KvszError } from "../errors.ts";

/** The writing session is gone or unreachable: its connection is taken for dead. */
export class DeadSession extends KvszError {}

/** Options of {@link SessionWatchdog}. */
export interface WatchdogOptions {
  /** Seconds a write may go unanswered before the session is looked at; 0 never. */
  checkSeconds: number;
}

/** The session a write runs on, as the watchdog looks at it. */
export interface WatchedSession {
  /** Its backend pid, once known. */
  pid: number | null;
  /** Ends its connection, so that the write settles. */
  end(): void;
}

/**
 * Watches destination writes (see the module comment). One watchdog serves
 * every source: it looks at one session at a time, so its probes add at most
 * one connection to the destination.
 */
export class SessionWatchdog {
  /** The probe running now: the next one starts after it. */
  #probing: Promise<unknown> = Promise.resolve();

  constructor(private readonly url: string, private readonly opts: WatchdogOptions) {}

  /**
   * Resolves or rejects as `write` does; rejects with {@link DeadSession}
   * (after ending the session, which must make `write` settle) when the
   * session `session()` names at the time of a check is found dead. With no
   * session (the write waits for a writer), it is looked at again later.
   */
  async watch<T>(
    write: Promise<T>,
    session: () => WatchedSession | null,
    log: Logger,
  ): Promise<T> {
    if (this.opts.checkSeconds <= 0) return await write;
    write.catch(() => {}); // when found dead, its own failure comes later and says less
    let settled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const started = performance.now();
    const dead = new Promise<never>((_, reject) => {
      const check = async () => {
        if (settled) return;
        const watched = session();
        const pid = watched?.pid ?? null;
        const verdict = pid === null ? null : await this.#serially(() =>
          this.#inspect(pid, {
            seconds: (performance.now() - started) / 1000,
            settled: () => settled,
            log,
          })
        );
        if (settled) return;
        if (verdict === null) {
          timer = setTimeout(check, this.opts.checkSeconds * 1000);
          return;
        }
        watched!.end();
        reject(new DeadSession(verdict));
      };
      timer = setTimeout(check, this.opts.checkSeconds * 1000);
    });
    try {
      return await Promise.race([write, dead]);
    } finally {
      settled = true;
      clearTimeout(timer);
    }
  }

  /** Runs `probe` after the probes before it. */
  #serially<T>(probe: () => Promise<T>): Promise<T> {
    const run = this.#probing.then(probe);
    this.#probing = run.catch(() => {});
    return run;
  }

  /**
   * Null when session `pid` is alive (reported when slow) or the write settled
   * meanwhile (`settled`); otherwise why it is taken for dead.
   */
  async #inspect(
    pid: number,
    { seconds, settled, log }: { seconds: number; settled: () => boolean; log: Logger },
  ): Promise<string | null> {
    if (settled()) return null;
    const waited = `a destination write unanswered for ${seconds.toFixed(0)} s`;
    const probe = connect(this.url, { connectTimeout: Math.min(this.opts.checkSeconds, 10) });
    const look = async () =>
      (await probe.unsafe(
        `SELECT a.state, a.state_change::text AS since, a.wait_event_type, a.wait_event,
                left(a.query, 200) AS query,
                (SELECT string_agg(b.pid || ' (' || coalesce(b.application_name, '') || ', ' ||
                                   coalesce(b.state, '') || ': ' || left(b.query, 80) || ')', '; ')
                   FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(a.pid))) AS blockers
           FROM pg_stat_activity a WHERE a.pid = $1`,
        [pid],
      ))[0];
    try {
      let row = await look();
      if (!row) {
        return `${waited}: its session (pid ${pid}) is gone from the destination; reconnecting`;
      }
      if (row.state !== "active") {
        // An answer may be on its way right now: idle twice, unchanged, it is not.
        const first = row.since;
        await new Promise((r) => setTimeout(r, 1000));
        if (settled()) return null;
        row = await look();
        if (!row) return `${waited}: its session (pid ${pid}) is gone; reconnecting`;
        if (row.state === "active" || row.since !== first) return null;
        // The server answered and waits for kvsz: the answer was lost on the way.
        await probe.unsafe("SELECT pg_terminate_backend($1)", [pid]).catch(() => {});
        return `${waited}, while its session (pid ${pid}) is ${row.state}: ` +
          `the connection is dead; ended that session, reconnecting`;
      }
      if (row.wait_event_type === "Lock") {
        log.warn(
          "{waited}: it waits for a lock ({event}) held by {blockers}; kvsz keeps waiting (end those sessions or their transactions to go on)",
          { waited, event: row.wait_event, blockers: row.blockers ?? "another session" },
        );
      } else {
        log.info("{waited}: it is still running ({query})", {
          waited,
          query: row.query,
        });
      }
      return null;
    } catch (e) {
      return `${waited}, and the destination cannot be reached to look at it (${
        (e as Error).message
      }): the connection is taken for dead; reconnecting`;
    } finally {
      await probe.end({ timeout: 1 }).catch(() => {});
    }
  }
}
