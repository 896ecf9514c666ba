/**
 * The copy turns: at most `size` at once; the tasks of copies under way go
 * before sources that have not started theirs; a source's starting turn is
 * taken over by its first task, or given back.
 */
import assert from "node:assert/strict";
import { CopySlots } from "../../lib/engine/copy_slots.ts";

/** Lets every settled promise's callbacks run. */
const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("CopySlots: tasks of copies under way are served before sources starting theirs", async () => {
  const slots = new CopySlots(1);
  const order: string[] = [];
  const first = await slots.start();
  assert.equal(first.take(), true, "the first task runs on the starting turn");
  assert.equal(first.take(), false, "once");
  slots.start().then(() => order.push("source b starts"));
  slots.start().then(() => order.push("source c starts"));
  slots.acquire().then(() => order.push("a's second task"));
  await tick();
  assert.deepEqual(order, []);
  assert.equal(slots.contended, true, "a task of a copy under way waits");
  slots.release(); // a's first task is done
  await tick();
  assert.deepEqual(order, ["a's second task"]);
  assert.equal(slots.contended, false, "only sources wait: a worker keeps its turn");
  slots.release();
  await tick();
  slots.release();
  await tick();
  assert.deepEqual(order, ["a's second task", "source b starts", "source c starts"]);
});

Deno.test("CopySlots: a starting turn no task took is given back; a stop ends a wait", async () => {
  const slots = new CopySlots(1);
  const turn = await slots.start();
  const stop = new AbortController();
  const waiting = slots.start(stop.signal);
  let granted = false;
  slots.acquire().then(() => (granted = true));
  stop.abort(new Error("stopping"));
  await assert.rejects(waiting, /stopping/);
  turn.release(); // the slot could not be made: nothing was copied on it
  turn.release(); // only once
  await tick();
  assert.equal(granted, true);
  slots.release();
  await slots.acquire(); // one turn, free again
});
