/**
 * Polls every source's kvsz slot for the metrics: WAL not yet confirmed
 * (`kvsz_lag_bytes`) and WAL retained (`kvsz_slot_retained_wal_bytes`). Only
 * the source can say these; an unreachable source or a missing slot clears them.
 * Each pipeline also reports them once when it starts streaming (a new slot
 * would otherwise wait for the next poll).
 */
import type { Config } from "../config/types.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { readSlotLag } from "../source/slot.ts";
import type { Metrics } from "./metrics.ts";

/** Options of {@link startSlotPoller}. */
export interface SlotPollerOptions {
  /** Milliseconds between polls (default 10 000). */
  intervalMs?: number;
}

/** A running poller. */
export interface SlotPoller {
  /** Polls every source once now (resolves when done). */
  poll(): Promise<void>;
  /** Stops polling and closes the connections. */
  stop(): Promise<void>;
}

/**
 * Polls the slot of every configured source every `intervalMs` (one small
 * connection per source, kept between polls) and feeds {@link Metrics.setLag}.
 */
export function startSlotPoller(
  config: Pick<Config, "databases">,
  metrics: Metrics,
  opts: SlotPollerOptions = {},
): SlotPoller {
  const sources = config.databases.flatMap((db) =>
    db.urls.map((u) => ({ database: db.database, sid: u.sid, url: u.url }))
  );
  const clients = new Map<string, Sql>();
  let running: Promise<void> | null = null;
  let stopped = false;

  const pollOne = async (s: (typeof sources)[number]) => {
    let sql = clients.get(s.url);
    if (!sql) {
      sql = connect(s.url, { connectTimeout: 5 });
      clients.set(s.url, sql);
    }
    try {
      metrics.setLag(s.database, s.sid, await readSlotLag(sql, kvszObjectName(s.database, s.sid)));
    } catch {
      // Unreachable: what was known is stale now. (The pipeline logs connection errors.)
      metrics.setLag(s.database, s.sid, { bytes: null, retainedBytes: null });
    }
  };
  const poll = () => {
    if (stopped) return Promise.resolve();
    running ??= Promise.all(sources.map(pollOne)).then(() => {
      running = null;
    });
    return running;
  };
  const timer = setInterval(poll, opts.intervalMs ?? 10_000);
  poll();
  return {
    poll,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await running;
      await Promise.all([...clients.values()].map((c) => c.end({ timeout: 1 }).catch(() => {})));
      clients.clear();
    },
  };
}
