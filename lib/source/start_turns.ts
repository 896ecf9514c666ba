/**
 * Turns to start streaming, per source server (host and port): at most
 * {@link STARTS_PER_SERVER} of a server's sources prepare at once. Preparing
 * opens two connections at the source (an ordinary one and a replication
 * one: each a new backend, authenticated) and asks about ten questions
 * before START_REPLICATION. A hundred tenants restarting together against a
 * server whose walsenders were busy reading a backlog made its connection
 * setup slower than the connect timeout: 43 of them failed and retried, and
 * the last one streamed 43 s after the first (200 tenants: 168 s). In turns,
 * each start is quick and they follow one another closely.
 *
 * A turn is held from the source's first question at the source until it
 * knows what it copies: a copy then waits for its copy turn (`CopySlots`)
 * without holding one.
 */
import { serverOf } from "../pg/conninfo.ts";

/** Sources of one server preparing at once. */
export const STARTS_PER_SERVER = 8;

/** A source's turn to prepare; {@link release} gives it back (only the first call counts). */
export interface StartTurn {
  release(): void;
}

interface ServerTurns {
  running: number;
  waiting: (() => void)[];
}

const servers = new Map<string, ServerTurns>();

/**
 * Resolves with a turn among the sources of `url`'s server, in the order
 * asked; rejects when `signal` aborts first.
 */
export function startTurn(url: string, signal?: AbortSignal): Promise<StartTurn> {
  const key = serverOf(url);
  let s = servers.get(key);
  if (!s) servers.set(key, s = { running: 0, waiting: [] });
  const server = s;
  const turn = (): StartTurn => {
    let released = false;
    return {
      release() {
        if (released) return;
        released = true;
        const next = server.waiting.shift();
        if (next) return next(); // the turn passes on
        server.running--;
        if (server.running === 0) servers.delete(key);
      },
    };
  };
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (server.running < STARTS_PER_SERVER) {
    server.running++;
    return Promise.resolve(turn());
  }
  return new Promise((resolve, reject) => {
    const take = () => {
      signal?.removeEventListener("abort", onAbort);
      resolve(turn());
    };
    const onAbort = () => {
      server.waiting = server.waiting.filter((w) => w !== take);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    server.waiting.push(take);
  });
}
