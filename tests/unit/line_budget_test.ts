/** LineBudget: a table whose every row fails logs ten lines a minute, and then says how many it held. */
import assert from "node:assert/strict";
import { heldNote, LineBudget } from "../../lib/log.ts";

Deno.test("LineBudget: ten lines a minute per key, the held ones counted into the next line", () => {
  let now = 0;
  const lines = new LineBudget(10, () => now);
  const said = Array.from({ length: 1000 }, () => lines.take("public.t")).filter((l) => l.say);
  assert.equal(said.length, 10);
  assert.ok(said.every((l) => l.held === 0));
  assert.deepEqual(lines.take("public.other"), { say: true, held: 0 }); // keys apart
  now = 61_000;
  assert.deepEqual(lines.take("public.t"), { say: true, held: 990 });
  assert.deepEqual(lines.take("public.t"), { say: true, held: 0 });
  assert.match(heldNote(990), /990 more like it not logged/);
  assert.equal(heldNote(0), "");
});
