/** How a pipeline goes on after an error: the class (or SQLSTATE) decides, and the waits between attempts. */
import assert from "node:assert/strict";
import { recoveryOf, RetrySchedule } from "../../lib/engine/recovery.ts";
import { NeedsPersonError, StreamRestart } from "../../lib/errors.ts";
import { OneByOneRestart } from "../../lib/apply/one_by_one_restart.ts";
import { ConfigError } from "../../lib/config/errors.ts";

Deno.test("recoveryOf: kvsz's classes say it, server errors by their SQLSTATE", () => {
  assert.equal(recoveryOf(new StreamRestart(7, "why")), "reconnect");
  assert.equal(
    recoveryOf(new OneByOneRestart("m", { untilLsn: 1n, streamedXid: null, table: "t" })),
    "reconnect",
  );
  assert.equal(recoveryOf(new NeedsPersonError("slot in use")), "needs-person");
  assert.equal(recoveryOf(new ConfigError([])), "needs-person");
  for (const code of ["28P01", "28000", "3D000", "42501", "42P01", "42703"]) {
    assert.equal(recoveryOf(Object.assign(new Error("x"), { code })), "needs-person", code);
  }
  for (const code of ["57P01", "08006", "40001", "ECONNREFUSED", undefined]) {
    assert.equal(recoveryOf(Object.assign(new Error("x"), { code })), "backoff", String(code));
  }
  assert.equal(recoveryOf("a string"), "backoff");
});

Deno.test("RetrySchedule: a problem that needs a person is said once, retried slowly", () => {
  let now = 0;
  const retries = new RetrySchedule(() => now);
  const steps = [];
  for (let i = 0; i < 7; i++) {
    const step = retries.next("needs-person", "table t is missing", 10);
    steps.push(step);
    now += step.delayMs;
  }
  assert.deepEqual(steps.map((s) => s.delayMs), [
    5_000,
    10_000,
    20_000,
    40_000,
    60_000,
    60_000,
    60_000,
  ]);
  assert.deepEqual(steps.map((s) => s.say), [true, false, false, false, false, false, false]);
  // Said again when its text changes, and after ten minutes.
  assert.equal(retries.next("needs-person", "table u is missing", 10).say, true);
  assert.equal(retries.next("needs-person", "table u is missing", 10).say, false);
  now += 10 * 60_000;
  assert.equal(retries.next("needs-person", "table u is missing", 10).say, true);
});

Deno.test("RetrySchedule: transient failures back off 1 s doubling to 30 s, from 1 s after a minute of work", () => {
  const retries = new RetrySchedule(() => 0);
  const delays = Array.from({ length: 7 }, () => retries.next("backoff", "reset", 10).delayMs);
  assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
  assert.equal(retries.next("backoff", "reset", 61_000).delayMs, 1_000);
  // A transient failure between needs-person ones: the next one is said again, from 5 s.
  retries.next("needs-person", "missing", 10);
  retries.next("backoff", "reset", 10);
  assert.deepEqual(retries.next("needs-person", "missing", 10), {
    delayMs: 5_000,
    say: true,
    repeats: 1,
    needsPerson: true,
  });
});

Deno.test("RetrySchedule: a transient failure is said, said again on its first repeat, then quiet", () => {
  let now = 0;
  const retries = new RetrySchedule(() => now);
  const steps = [];
  for (let i = 0; i < 6; i++) {
    const step = retries.next("backoff", "connection refused", 10);
    steps.push(step);
    now += step.delayMs;
  }
  assert.deepEqual(steps.map((s) => s.say), [true, true, false, false, false, false]);
  assert.deepEqual(steps.map((s) => s.repeats), [1, 2, 3, 4, 5, 6]);
  assert.equal(retries.failures, 6);
  // Another problem is said at once; after ten minutes the same one is said again.
  assert.equal(retries.next("backoff", "timeout", 10).say, true);
  assert.equal(retries.next("backoff", "timeout", 10).say, true);
  assert.equal(retries.next("backoff", "timeout", 10).say, false);
  now += 10 * 60_000;
  assert.equal(retries.next("backoff", "timeout", 10).say, true);
  // After a minute of work it is a new episode: said, from 1 s.
  assert.deepEqual(retries.next("backoff", "timeout", 61_000), {
    delayMs: 1_000,
    say: true,
    repeats: 1,
    needsPerson: false,
  });
  // Working again (a commit): the count starts over.
  retries.reset();
  assert.equal(retries.failures, 0);
  assert.equal(retries.next("backoff", "timeout", 10).say, true);
});
