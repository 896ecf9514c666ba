/**
 * While kvsz streams, the destination trails its source: before a difference
 * is believed, `verify` waits until the destination has applied the source's
 * WAL up to where it is now (kvsz.progress.end_lsn, idle positions included).
 */
import type { Sql } from "../pg/connect.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { parseLsn } from "../pg/lsn.ts";
import { readProgress } from "../apply/progress.ts";
import type { SourceKey } from "../config/types.ts";

/** How often the destination's progress is read while waiting. */
const POLL_MS = 200;

/** What {@link waitForDestination} found. */
export interface CatchUp {
  /** A kvsz process streams this source (its slot is active). */
  streaming: boolean;
  /** The destination reached the source's position before the deadline (always when not streaming). */
  caughtUp: boolean;
}

/** Options of {@link waitForDestination}. */
export interface CatchUpOptions {
  /** Which source. */
  source: SourceKey;
  /** Give up waiting at this time (ms since the epoch). */
  deadline: number;
}

/**
 * Reads the source's current WAL position and, when kvsz streams it (its slot
 * is active), waits until the destination's `kvsz.progress.end_lsn` for it is
 * at least that, or the deadline passes. Returns at once when nothing streams.
 */
export async function waitForDestination(
  source: Sql,
  destination: Sql,
  opts: CatchUpOptions,
): Promise<CatchUp> {
  const [row] = await source.unsafe(
    `SELECT (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
                  ELSE pg_catalog.pg_current_wal_insert_lsn() END)::text AS lsn,
            coalesce((SELECT active FROM pg_catalog.pg_replication_slots
                       WHERE slot_name = $1), false) AS active`,
    [kvszObjectName(opts.source.database, opts.source.sid)],
  );
  if (row.active !== true || row.lsn === null) return { streaming: false, caughtUp: true };
  const target = parseLsn(String(row.lsn));
  const [table] = await destination.unsafe(
    `SELECT to_regclass('kvsz.progress') IS NOT NULL AS present`,
  );
  if (table.present !== true) return { streaming: true, caughtUp: false };
  for (;;) {
    const progress = await readProgress(destination, opts.source.database, opts.source.sid);
    if (progress && progress.endLsn >= target) return { streaming: true, caughtUp: true };
    if (Date.now() >= opts.deadline) return { streaming: true, caughtUp: false };
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}
