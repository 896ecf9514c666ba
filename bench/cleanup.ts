/**
 * Everything the benchmark starts (servers, replication slots, kvsz and
 * pgbench processes, client pools) is registered here and released on exit,
 * on error (also an uncaught one) and on Ctrl-C / SIGTERM / SIGHUP. Only what
 * was registered is ever stopped.
 *
 * A registration may carry a synchronous fallback: when the process exits
 * before the asynchronous release ran (a second signal, `Deno.exit`), the
 * `unload` handler runs the fallbacks of whatever is still registered, so the
 * servers are stopped even then.
 */
import { say } from "./util.ts";

type Release = () => Promise<void> | void;

interface Entry {
  what: string;
  release: Release;
  releaseSync?: () => void;
}

const releases = new Map<number, Entry>();
let nextId = 1;
let cleaning: Promise<void> | null = null;

/**
 * Registers something to release at exit, with an optional synchronous
 * fallback for an abrupt exit; the returned function unregisters it.
 */
export function onCleanup(what: string, release: Release, releaseSync?: () => void): () => void {
  const id = nextId++;
  releases.set(id, { what, release, releaseSync });
  return () => releases.delete(id);
}

/** Releases everything registered, newest first (processes before the servers they use). */
export function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    while (releases.size > 0) {
      const id = Math.max(...releases.keys());
      const { what, release } = releases.get(id)!;
      try {
        await release();
      } catch (e) {
        say(`cleanup of ${what} failed: ${(e as Error).message}`);
      }
      releases.delete(id); // only now: an abrupt exit meanwhile still runs its fallback
    }
  })();
  return cleaning;
}

/** Runs the synchronous fallbacks of everything not yet released, newest first. */
function cleanupSync(): void {
  const entries = [...releases.entries()].sort(([a], [b]) => b - a);
  releases.clear();
  for (const [, { what, releaseSync }] of entries) {
    if (!releaseSync) continue;
    try {
      releaseSync();
    } catch (e) {
      console.error(`cleanup of ${what} failed: ${(e as Error).message}`);
    }
  }
}

/**
 * On SIGINT, SIGTERM or SIGHUP, and on an uncaught error or unhandled
 * rejection: release everything, then exit (130 for a signal, 1 for an error).
 * A second signal exits at once, running only the synchronous fallbacks.
 */
export function installSignalHandlers(): void {
  let count = 0;
  const stopAll = (why: string, code: number) => {
    count++;
    if (count > 1) Deno.exit(code);
    say(`${why}: stopping everything the benchmark started`);
    cleanupAll().finally(() => Deno.exit(code));
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    Deno.addSignalListener(signal, () => stopAll(signal, 130));
  }
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    say(`uncaught error: ${(e.error as Error)?.stack ?? e.message}`);
    stopAll("uncaught error", 1);
  });
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    say(`unhandled rejection: ${(e.reason as Error)?.stack ?? e.reason}`);
    stopAll("unhandled rejection", 1);
  });
  globalThis.addEventListener("unload", cleanupSync);
}
