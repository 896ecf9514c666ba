/** The outcome of a check, shared by the source and destination checks. */
import type { Limiter } from "./bounded.ts";

/** The source a check is about. */
export interface CheckSource {
  database: string;
  sid: string;
  /** `host:port` of its server (see `serverOf`). */
  server: string;
  /** `host:port/database`, as the check's label names it. */
  endpoint: string;
}

/** The outcome of one check: `ok`, `WARN` (works, with a caveat) or `FAIL` (will not work). */
export interface Check {
  status: "ok" | "WARN" | "FAIL";
  /** What was checked, naming the object. */
  check: string;
  /** What is wrong (WARN and FAIL). */
  problem?: string;
  /** How to fix it. */
  fix?: string;
  /** The source checked (a source's checks only). */
  source?: CheckSource;
}

/** Options for the preflight checks. */
export interface PreflightOptions {
  /** Seconds to wait for each connection (default 5). */
  connectTimeout?: number;
  /**
   * Runs the replication connection check of a source (default: at once):
   * `validate` lets only a few per server run together, so that it does not
   * take the WAL senders it counts.
   */
  replicationLimiter?: Limiter;
}
