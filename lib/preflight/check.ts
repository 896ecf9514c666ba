/** The outcome of a check, shared by the source and destination checks. */

/** The outcome of one check: `ok`, `WARN` (works, with a caveat) or `FAIL` (will not work). */
export interface Check {
  status: "ok" | "WARN" | "FAIL";
  /** What was checked, naming the object. */
  check: string;
  /** What is wrong (WARN and FAIL). */
  problem?: string;
  /** How to fix it. */
  fix?: string;
}

/** Options for the preflight checks. */
export interface PreflightOptions {
  /** Seconds to wait for each connection (default 5). */
  connectTimeout?: number;
}
