/**
 * How a source's pipeline goes on after an error (see `lib/errors.ts`): the
 * error's class decides, and a server error's SQLSTATE for errors kvsz did
 * not raise itself. A problem that needs a person is said once and retried
 * slowly; a transient one is retried with a short backoff.
 */
import { KvszError, type Recovery } from "../errors.ts";
import { errorCode } from "../pg/errors.ts";

/** SQLSTATEs no retry fixes by itself: a role, password, database, table, column or privilege to fix. */
const NEEDS_PERSON = /^(28...|3D000|42501|42P01|42703)$/;

/** How to go on after `e`. */
export function recoveryOf(e: unknown): Recovery {
  if (e instanceof KvszError) return e.recovery;
  return NEEDS_PERSON.test(errorCode(e) ?? "") ? "needs-person" : "backoff";
}

/** Backoff of transient failures: 1 s, doubling to 30 s; from 1 s again after a minute of work. */
const BACKOFF = { firstMs: 1_000, maxMs: 30_000, resetAfterMs: 60_000 };
/** Retries of a problem that needs a person: 5 s, doubling to a minute. */
const NEEDS_PERSON_RETRY = { firstMs: 5_000, maxMs: 60_000 };
/** A problem that needs a person is said again after this long if it lasts. */
const REMIND_MS = 10 * 60_000;

/** What to do about one failed attempt. */
export interface RetryStep {
  /** Milliseconds to wait before the next attempt. */
  delayMs: number;
  /** False when the same problem was said recently: log it quietly. */
  say: boolean;
}

/** The waits between a pipeline's failed attempts. */
export class RetrySchedule {
  #backoffMs = BACKOFF.firstMs;
  #needsPersonMs = NEEDS_PERSON_RETRY.firstMs;
  #said = "";
  #saidAt = -Infinity;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** The step after an attempt that ran `ranMs` and failed with `message` needing `recovery`. */
  next(recovery: Exclude<Recovery, "reconnect">, message: string, ranMs: number): RetryStep {
    const now = this.now();
    if (recovery === "needs-person") {
      const say = message !== this.#said || now - this.#saidAt >= REMIND_MS;
      if (say) {
        this.#said = message;
        this.#saidAt = now;
      }
      const delayMs = this.#needsPersonMs;
      this.#needsPersonMs = Math.min(delayMs * 2, NEEDS_PERSON_RETRY.maxMs);
      return { delayMs, say };
    }
    this.#said = "";
    this.#needsPersonMs = NEEDS_PERSON_RETRY.firstMs;
    if (ranMs > BACKOFF.resetAfterMs) this.#backoffMs = BACKOFF.firstMs;
    const delayMs = this.#backoffMs;
    this.#backoffMs = Math.min(delayMs * 2, BACKOFF.maxMs);
    return { delayMs, say: true };
  }
}
