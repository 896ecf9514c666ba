/**
 * Everything the benchmark starts (servers, kvsz and pgbench processes, client
 * pools) is registered here and released on exit, on error and on Ctrl-C /
 * SIGTERM. Only what was registered is ever stopped.
 */
import { say } from "./util.ts";

type Release = () => Promise<void> | void;

const releases = new Map<number, { what: string; release: Release }>();
let nextId = 1;
let cleaning: Promise<void> | null = null;

/** Registers something to release at exit; the returned function unregisters it. */
export function onCleanup(what: string, release: Release): () => void {
  const id = nextId++;
  releases.set(id, { what, release });
  return () => releases.delete(id);
}

/** Releases everything registered, newest first (processes before the servers they use). */
export function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    const entries = [...releases.entries()].reverse();
    releases.clear();
    for (const [, { what, release }] of entries) {
      try {
        await release();
      } catch (e) {
        say(`cleanup of ${what} failed: ${(e as Error).message}`);
      }
    }
  })();
  return cleaning;
}

/** On SIGINT or SIGTERM: release everything, then exit 130 (a second signal exits at once). */
export function installSignalHandlers(): void {
  let count = 0;
  const handler = (name: string) => () => {
    count++;
    if (count > 1) Deno.exit(130);
    say(`${name}: stopping everything the benchmark started`);
    cleanupAll().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", handler("SIGINT"));
  Deno.addSignalListener("SIGTERM", handler("SIGTERM"));
}
