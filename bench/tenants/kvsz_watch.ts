/**
 * Follows kvsz's JSON log lines in the `tenants` scenario: which sources are
 * streaming (`streaming from`, per sid), when the last one started, and the
 * warnings and errors kvsz logged, counted by message, for the report when
 * kvsz does not get every tenant streaming.
 */
import { now } from "../util.ts";

/** A warning or error message kvsz logged, with how often. */
export interface LoggedProblem {
  message: string;
  count: number;
  /** sids it was logged for (at most a few kept). */
  sids: Set<string>;
}

/** State read from kvsz's log lines. */
export class KvszWatch {
  /** sids that printed `streaming from` since {@link reset}. */
  readonly streaming = new Set<string>();
  /** sids that printed `copied <table>` since {@link reset}. */
  readonly copied = new Set<string>();
  /** Monotonic time (ms) a new sid was last seen streaming or copied. */
  progressAt = now();
  readonly problems = new Map<string, LoggedProblem>();

  /** Forgets what was seen (before kvsz is started again). */
  reset(): void {
    this.streaming.clear();
    this.copied.clear();
    this.problems.clear();
    this.progressAt = now();
  }

  /** Reads one line kvsz printed. */
  line = (line: string): void => {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line);
    } catch {
      // Not a log line: a failed start-up check ("FAIL source … — fix: …"), a stack trace.
      if (line.startsWith("FAIL ")) this.#problem(line, line.match(/ sid (\S+)/)?.[1] ?? null);
      return;
    }
    const message = String(rec.message ?? "");
    const sid = typeof rec.sid === "string" ? rec.sid : null;
    if (sid && message.startsWith("streaming from") && !this.streaming.has(sid)) {
      this.streaming.add(sid);
      this.progressAt = now();
    }
    if (sid && message.startsWith("copied ") && !this.copied.has(sid)) {
      this.copied.add(sid);
      this.progressAt = now();
    }
    if (rec.level === "warning" || rec.level === "error") this.#problem(message, sid);
  };

  /** Counts a problem by its message without numbers (seconds, LSNs, names vary between repeats). */
  #problem(message: string, sid: string | null): void {
    const key = message.replace(/\d+(\.\d+)?/g, "N").slice(0, 300);
    const p = this.problems.get(key) ?? { message, count: 0, sids: new Set<string>() };
    p.count++;
    p.message = message;
    if (sid && p.sids.size < 3) p.sids.add(sid);
    this.problems.set(key, p);
  }

  /** The `top` most frequent warnings and errors, one line each, e.g. `×12 "…" (t0001, …)`. */
  summary(top = 3): string[] {
    return [...this.problems.values()]
      .sort((a, b) => b.count - a.count)
      .slice(0, top)
      .map((p) =>
        `×${p.count} ${JSON.stringify(p.message.slice(0, 240))}${
          p.sids.size ? ` (${[...p.sids].join(", ")}${p.count > p.sids.size ? ", …" : ""})` : ""
        }`
      );
  }
}
