/** Bounded concurrency for the reads `status` and `validate` make of many sources. */

/** Runs at most `limit` of the functions it is given at once; the others wait their turn. */
export type Limiter = <T>(fn: () => Promise<T>) => Promise<T>;

/** A {@link Limiter} letting `limit` (at least 1) functions run at once. */
export function limiter(limit: number): Limiter {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (running >= Math.max(1, limit)) await new Promise<void>((go) => waiting.push(go));
    else running++;
    try {
      return await fn();
    } finally {
      // Hand the slot straight to the next waiter (running stays counted).
      const next = waiting.shift();
      if (next) next();
      else running--;
    }
  };
}

/** `items.map(fn)` with at most `limit` calls running at once; results in the order of `items`. */
export function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const run = limiter(limit);
  return Promise.all(items.map((item, i) => run(() => fn(item, i))));
}
