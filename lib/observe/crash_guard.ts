/**
 * Keeps one dying connection from taking the whole process down. porsager
 * (npm:postgres 3.4) can throw from a timer when a socket closes under a queued
 * write, and can reject promises nobody awaits; every pipeline already handles
 * its own connection failures (retry with backoff), so these are logged, not fatal.
 */
import { log } from "../log.ts";

/** Installs the guards once per process. */
export function installCrashGuards(): void {
  const logger = log("guard");
  globalThis.addEventListener("error", (event) => {
    const error = event.error as Error | undefined;
    if (error?.stack?.includes("/postgres/src/")) {
      event.preventDefault();
      logger.warn("ignored a driver error after a connection closed: {error}", {
        error: error.message,
      });
    }
  });
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    const reason = event.reason as Error | undefined;
    logger.warn("ignored an unawaited failure: {error}", {
      error: reason?.message ?? String(reason),
    });
  });
}
