/**
 * kvsz's peak memory depends on the V8 flags it runs with (young generation
 * size, old generation growth): every way of running or building it must
 * pass the same ones, the release build included.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url);

function v8Flags(text: string, where: string): string {
  const m = text.match(/--v8-flags=(\S+)/);
  assert.ok(m, `${where} passes no --v8-flags`);
  return m[1];
}

Deno.test("the kvsz, demo and compile tasks and the release build pass the same V8 flags", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT))).tasks;
  const expected = v8Flags(tasks.kvsz, "the kvsz task");
  assert.match(expected, /--max-semi-space-size=\d+/);
  assert.match(expected, /--heap-growing-percent=\d+/);
  for (const task of ["demo", "compile"]) {
    assert.equal(v8Flags(tasks[task], `the ${task} task`), expected, `the ${task} task`);
  }
  const release = await Deno.readTextFile(new URL(".github/workflows/release.yml", ROOT));
  assert.equal(v8Flags(release, "release.yml's deno compile"), expected, "release.yml");
});
