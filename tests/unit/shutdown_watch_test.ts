/** Which answers of a source mean "it stops": only those close kvsz's replication connection. */
import assert from "node:assert/strict";
import { stopping } from "../../lib/source/shutdown_watch.ts";

Deno.test("a server shutting down, terminating sessions or gone is stopping; too many clients is not", () => {
  const answer = (code: string) => ({ severity: "FATAL", code, message: code });
  assert.equal(stopping(answer("57P03")), true, "the database system is shutting down");
  assert.equal(
    stopping(answer("57P01")),
    true,
    "terminating connection due to administrator command",
  );
  assert.equal(stopping(answer("08006")), true, "connection failure");
  assert.equal(
    stopping(Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })),
    true,
  );
  assert.equal(stopping(Object.assign(new Error("write EPIPE"), { code: "EPIPE" })), true);
  assert.equal(stopping(answer("53300")), false, "too many clients");
  assert.equal(stopping(answer("28P01")), false, "password authentication failed");
});
