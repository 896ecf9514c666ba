/**
 * One timer for the once-a-second checks of every source (silence on the
 * replication connection, the shutdown watch, the periodic status update):
 * a thousand idle tenants cost one timer callback a second, not thousands.
 */

const tasks = new Set<() => void>();
let timer: ReturnType<typeof setInterval> | undefined;

/** Runs `task` about once a second until the returned function is called. */
export function everySecond(task: () => void): () => void {
  tasks.add(task);
  timer ??= setInterval(tick, 1000);
  return () => {
    tasks.delete(task);
    if (tasks.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };
}

function tick(): void {
  for (const task of tasks) {
    try {
      task();
    } catch {
      // A task reports its own failures; the others still run.
    }
  }
}
