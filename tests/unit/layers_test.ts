/**
 * The layering of DESIGN.md: imports run downwards only, `source/` and
 * `apply/` share only the decoded message types, and no module imports
 * itself through others.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const LIB = fileURLToPath(new URL("../../lib/", import.meta.url));

/** Each folder of lib/ (files at its top: "."), from the top floor down. */
const FLOOR: Record<string, number> = {
  cli: 8,
  demo: 7,
  api: 7,
  engine: 6,
  observe: 6,
  preflight: 5,
  verify: 5,
  upgrade: 5,
  schema: 5,
  source: 4,
  apply: 4,
  config: 3,
  pg: 2,
  ".": 1,
};

/** Imports across a floor's folders that DESIGN.md allows. */
const SIDEWAYS = new Set([
  "apply -> source/messages.ts", // as worker.c includes logicalproto.h
  "observe -> engine/events.ts", // what the engine reports, for metrics
  "verify -> preflight/servers.ts", // the configured sources, as validate lists them
  "verify -> preflight/bounded.ts", // bounded concurrency of read-only checks
]);

/** Every .ts file under lib/, relative to it, with the lib/ files it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(join(LIB, dir))) {
      const path = dir ? `${dir}/${e.name}` : e.name;
      if (e.isDirectory) walk(path);
      else if (e.name.endsWith(".ts")) {
        const text = Deno.readTextFileSync(join(LIB, path));
        const targets = [...text.matchAll(/(?:import|export)[^;]*?from\s+"(\.[^"]+)"/gs)]
          .map((m) => normalize(join(dirname(path), m[1])));
        graph.set(path, targets);
      }
    }
  };
  walk("");
  return graph;
}

function folderOf(path: string): string {
  return path.includes("/") ? path.slice(0, path.indexOf("/")) : ".";
}

Deno.test("lib/ imports run down the floors of DESIGN.md", () => {
  const wrong: string[] = [];
  for (const [file, targets] of importGraph()) {
    const from = folderOf(file);
    for (const target of targets) {
      const to = folderOf(target);
      assert.ok(to in FLOOR, `${file} imports ${target}: lib/${to} has no floor in this test`);
      if (from === to || FLOOR[to] < FLOOR[from]) continue;
      const rule = `${from} -> ${target}`;
      if (FLOOR[to] === FLOOR[from] && SIDEWAYS.has(rule)) continue;
      wrong.push(`${file} imports ${target}`);
    }
  }
  assert.deepEqual(wrong, []);
});
Deno.test("lib/ has no import cycle", () => {
  const graph = importGraph();
  const state = new Map<string, "open" | "done">();
  const cycles: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === "done") return;
    if (state.get(file) === "open") {
      cycles.push([...path.slice(path.indexOf(file)), file].join(" -> "));
      return;
    }
    state.set(file, "open");
    for (const t of graph.get(file) ?? []) visit(t, [...path, file]);
    state.set(file, "done");
  };
  for (const file of graph.keys()) visit(file, []);
  assert.deepEqual(cycles, []);
});
