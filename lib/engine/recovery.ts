/**
 * How a source's pipeline goes on after an error (see `lib/errors.ts`): the
 * error's class decides, and a server error's SQLSTATE for errors kvsz did
 * not raise itself. A problem that needs a person is said once and retried
 * slowly; a transient one is retried with a short backoff, and said once
 * more on its first repeat. Repeats are then quiet (debug level) until the
 * problem changes, or for ten minutes.
 */
import type { Logger } from "@logtape/logtape";
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
  /** Attempts in a row that failed with this same message, this one included. */
  repeats: number;
  /** The failure needs a person (retried slowly). */
  needsPerson: boolean;
}

/** Logs a failed attempt as `step` says: loud when it is to be said, else at debug level. */
export function sayFailure(logger: Logger, error: string, step: RetryStep): void {
  const seconds = step.delayMs / 1000;
  const repeats = step.repeats;
  if (!step.say) logger.debug("{error}; retrying in {seconds} s", { error, seconds });
  else if (repeats === 2) {
    logger.error(
      "{error}; retrying in {seconds} s (failed {repeats} times in a row: its repeats are logged " +
        "at debug level, said again in 10 minutes if it lasts)",
      { error, seconds, repeats },
    );
  } else if (repeats > 2) {
    logger.error("{error}; retrying in {seconds} s (failed {repeats} times in a row)", {
      error,
      seconds,
      repeats,
    });
  } else if (step.needsPerson) {
    logger.error(
      "{error}; retrying in {seconds} s, then at most every minute (said again in 10 minutes if it lasts)",
      { error, seconds },
    );
  } else logger.error("{error}; retrying in {seconds} s", { error, seconds });
}

/**
 * The waits between a pipeline's failed attempts, and which failures to say:
 * a problem is said when it first happens and, when it is transient, once
 * more on its first repeat (so that a reader sees it is retried); after that
 * its repeats are quiet until it changes, or for ten minutes. A thousand
 * tenants failing the same way do not flood the log.
 */
export class RetrySchedule {
  #backoffMs = BACKOFF.firstMs;
  #needsPersonMs = NEEDS_PERSON_RETRY.firstMs;
  #said = "";
  #saidAt = -Infinity;
  #last = "";
  #repeats = 0;
  #failures = 0;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Failed attempts in a row so far (0 after {@link reset}). */
  get failures(): number {
    return this.#failures;
  }

  /** The step after an attempt that ran `ranMs` and failed with `message` needing `recovery`. */
  next(recovery: Exclude<Recovery, "reconnect">, message: string, ranMs: number): RetryStep {
    const now = this.now();
    this.#failures++;
    this.#repeats = message === this.#last ? this.#repeats + 1 : 1;
    this.#last = message;
    const transient = recovery === "backoff";
    if (transient && ranMs > BACKOFF.resetAfterMs) {
      // It worked for a while: a new episode, said and backed off from the start.
      this.#backoffMs = BACKOFF.firstMs;
      this.#said = "";
      this.#repeats = 1;
    }
    const say = message !== this.#said || now - this.#saidAt >= REMIND_MS ||
      (transient && this.#repeats === 2);
    if (say) {
      this.#said = message;
      this.#saidAt = now;
    }
    if (!transient) {
      const delayMs = this.#needsPersonMs;
      this.#needsPersonMs = Math.min(delayMs * 2, NEEDS_PERSON_RETRY.maxMs);
      return { delayMs, say, repeats: this.#repeats, needsPerson: true };
    }
    this.#needsPersonMs = NEEDS_PERSON_RETRY.firstMs;
    const delayMs = this.#backoffMs;
    this.#backoffMs = Math.min(delayMs * 2, BACKOFF.maxMs);
    return { delayMs, say, repeats: this.#repeats, needsPerson: false };
  }

  /** The source works again: the next failure is said, and backed off from the start. */
  reset(): void {
    this.#backoffMs = BACKOFF.firstMs;
    this.#needsPersonMs = NEEDS_PERSON_RETRY.firstMs;
    this.#said = this.#last = "";
    this.#saidAt = -Infinity;
    this.#repeats = this.#failures = 0;
  }
}
