/**
 * Turns to start streaming: at most STARTS_PER_SERVER sources of one server
 * prepare at once, the others wait in the order they asked; another server's
 * sources do not wait for them; a stopped source leaves the line.
 */
import assert from "node:assert/strict";
import { STARTS_PER_SERVER, startTurn } from "../../lib/source/start_turns.ts";

/** Lets every settled promise's callbacks run. */
const tick = () => new Promise((r) => setTimeout(r, 0));

const tenant = (i: number, port = 5432) => `postgres://kvsz@db.example:${port}/tenant_${i}`;

Deno.test("start turns: bounded per server, in order, other servers apart, a stop leaves the line", async () => {
  const running = await Promise.all(
    Array.from({ length: STARTS_PER_SERVER }, (_, i) => startTurn(tenant(i))),
  );
  const order: string[] = [];
  const stop = new AbortController();
  const late = startTurn(tenant(100), stop.signal);
  late.catch(() => order.push("stopped one left"));
  const waiting = [101, 102].map((i) =>
    startTurn(tenant(i)).then((t) => {
      order.push(`tenant_${i}`);
      return t;
    })
  );
  const elsewhere = await startTurn(tenant(103, 5433)); // another server: at once
  await tick();
  assert.deepEqual(order, [], "the server's turns are all taken");
  stop.abort(new Error("stopped"));
  await tick();
  assert.deepEqual(order, ["stopped one left"]);
  running[0].release();
  running[0].release(); // only the first release counts
  await tick();
  assert.deepEqual(order, ["stopped one left", "tenant_101"]);
  running[1].release();
  await tick();
  assert.deepEqual(order, ["stopped one left", "tenant_101", "tenant_102"]);
  for (const t of [...running.slice(2), elsewhere, ...await Promise.all(waiting)]) t.release();
  // Every turn given back: the next source starts at once.
  const again = await Promise.race([startTurn(tenant(1)), tick().then(() => null)]);
  assert.ok(again, "a turn at once once all are back");
  again.release();
});
