/** A token bucket: at most `rate` units per second on average, `burst` at once. */
export class RateLimiter {
  #tokens: number;
  #last = performance.now();

  constructor(readonly rate: number, readonly burst: number) {
    this.#tokens = burst;
  }

  /** Accounts for `units` just done; resolves when the caller may go on, or returns nothing at once. */
  take(units: number): Promise<void> | undefined {
    const now = performance.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    this.#tokens -= units;
    if (this.#tokens >= 0) return undefined;
    const waitMs = (-this.#tokens / this.rate) * 1000;
    return new Promise((resolve) => setTimeout(resolve, waitMs));
  }
}
