/**
 * Polls the kvsz slots of every source for the metrics: WAL retained
 * (`kvsz_slot_retained_wal_bytes`), and WAL not yet confirmed
 * (`kvsz_lag_bytes`) of the sources that do not stream (a streaming source's
 * comes from its stream; the server's current LSN read here still counts
 * when it is ahead of what the stream said). Only the source can say these;
 * an unreachable server or a missing slot clears them. Each pipeline also
 * reports them once when it starts streaming (a new slot would otherwise
 * wait for the next poll).
 */
import type { Config } from "../config/types.ts";
import { connect, type Sql } from "../pg/connect.ts";
import { serverOf } from "../pg/conninfo.ts";
import { kvszObjectName } from "../pg/identifiers.ts";
import { readSlotLags } from "../source/slot.ts";
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

/** The sources of one server, polled through one connection. */
interface Server {
  /**
   * URLs to reach it through: the one its tenants are discovered through
   * first, then its sources'. Any database of the server shows every slot.
   */
  urls: string[];
  /** The URL polled through (its index in {@link urls}). */
  at: number;
  sources: { database: string; sid: string; slot: string }[];
  client?: Sql;
}

/**
 * Polls the slots of every source of `config` (its `urls` and, from the
 * supervisor's current list, the discovered ones) every `intervalMs` with one
 * query per source server (host and port), through one small connection per
 * server kept between polls, and feeds {@link Metrics.setLag}: a thousand
 * tenants of one server cost one connection, not a thousand.
 */
export function startSlotPoller(
  config: Pick<Config, "databases">,
  metrics: Metrics,
  opts: SlotPollerOptions = {},
): SlotPoller {
  const servers = new Map<string, Server>();
  for (const db of config.databases) {
    for (const u of db.urls) {
      const key = serverOf(u.url);
      const server = servers.get(key) ?? { urls: [], at: 0, sources: [] };
      const listing = u.discovered?.serverUrl;
      if (listing && server.urls[0] !== listing) server.urls.unshift(listing);
      server.urls.push(u.url);
      server.sources.push({
        database: db.database,
        sid: u.sid,
        slot: kvszObjectName(db.database, u.sid),
      });
      servers.set(key, server);
    }
  }
  let running: Promise<void> | null = null;
  let stopped = false;

  const read = async (server: Server) => {
    server.client ??= connect(server.urls[server.at], { connectTimeout: 5 });
    const lags = await readSlotLags(server.client, server.sources.map((s) => s.slot));
    for (const s of server.sources) metrics.setLag(s.database, s.sid, lags.get(s.slot)!);
  };
  const pollServer = async (server: Server) => {
    try {
      await read(server);
    } catch {
      if (stopped) return; // its connection was ended by stop()
      // The database polled through may be gone (a tenant dropped) while its server
      // serves the others: once more through the next source's database.
      server.client?.end({ timeout: 0 }).catch(() => {});
      server.client = undefined;
      server.at = (server.at + 1) % server.urls.length;
      try {
        await read(server);
      } catch {
        // Unreachable: what was known is stale now. (The pipelines log connection errors.)
        for (const s of server.sources) {
          metrics.setLag(s.database, s.sid, { bytes: null, retainedBytes: null });
        }
      }
    }
  };
  const poll = () => {
    if (stopped) return Promise.resolve();
    running ??= Promise.all([...servers.values()].map(pollServer)).then(() => {
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
      // Ended first: a poll waiting on a server that went silent fails now instead of
      // holding kvsz's exit for as long as the silence lasts.
      await Promise.all(
        [...servers.values()].map((s) => s.client?.end({ timeout: 1 }).catch(() => {})),
      );
      await running;
    },
  };
}
