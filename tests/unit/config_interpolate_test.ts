/** `${VAR}` expansion and did-you-mean suggestions, string by string. */

import assert from "node:assert/strict";
import { interpolate } from "../../lib/config/interpolate.ts";
import { editDistance, suggest } from "../../lib/config/suggest.ts";

Deno.test("interpolate: ${VAR} takes the variable's value", () => {
  assert.deepEqual(interpolate("a${X}b${Y}", { X: "1", Y: "" }), { value: "a1b", problems: [] });
});

Deno.test("interpolate: ${VAR:-default} when unset or empty", () => {
  assert.equal(interpolate("${X:-d}", {}).value, "d");
  assert.equal(interpolate("${X:-d}", { X: "" }).value, "d");
  assert.equal(interpolate("${X:-d}", { X: "v" }).value, "v");
  assert.equal(interpolate("${X:-}", {}).value, "");
  assert.equal(interpolate("${X:-a:b/c}", {}).value, "a:b/c");
});

Deno.test("interpolate: an unset variable is a problem naming it", () => {
  const { problems } = interpolate("pw=${KVSZ_PW}", {});
  assert.equal(problems.length, 1);
  assert.match(problems[0], /environment variable KVSZ_PW is not set/);
});

Deno.test("interpolate: $$ is a dollar; other dollars stay", () => {
  assert.equal(interpolate("a$$b", {}).value, "a$b");
  assert.equal(interpolate("$${X}", { X: "no" }).value, "${X}");
  assert.equal(interpolate("pa$word $1 $", {}).value, "pa$word $1 $");
});

Deno.test("interpolate: malformed references", () => {
  assert.match(interpolate("${", {}).problems[0], /without a closing "}"/);
  assert.match(interpolate("${1X}", {}).problems[0], /is not a valid reference/);
  assert.match(interpolate("${}", {}).problems[0], /is not a valid reference/);
});

Deno.test("suggest: close keys within edit distance 2", () => {
  assert.equal(editDistance("tagret", "target"), 1, "a swap is one edit");
  assert.equal(editDistance("kitten", "sitting"), 3);
  assert.equal(suggest("tagret", ["target", "type", "partitions_regex"]), "target");
  assert.equal(
    suggest("partition_regex", ["target", "type", "partitions_regex"]),
    "partitions_regex",
  );
  assert.equal(suggest("colour", ["batch_size", "queue_size"]), undefined);
  assert.equal(suggest("warn", ["debug", "info", "warning", "error"]), "warning");
});
