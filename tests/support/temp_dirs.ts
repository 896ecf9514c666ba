/**
 * Temporary directories of the tests, removed when the test that made them
 * ends (`await using _dirs = tempDirScope()`, as `clusterSuite` does), or at
 * the latest when its test module unloads, failed or not: a test run leaves
 * nothing in the system's temporary directory.
 */

const made = new Set<string>();

globalThis.addEventListener("unload", () => {
  for (const dir of made) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already gone */ }
  }
  made.clear();
});

/** A new temporary directory named `<prefix>…`, removed by {@link removeTempDirs}. */
export async function makeTempDir(prefix: string): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix });
  made.add(dir);
  return dir;
}

/** Removes every directory {@link makeTempDir} made so far. */
export async function removeTempDirs(): Promise<void> {
  const dirs = [...made];
  made.clear();
  await Promise.all(dirs.map((d) => Deno.remove(d, { recursive: true }).catch(() => {})));
}

/** `await using _dirs = tempDirScope()`: the directories made until the scope ends are removed then. */
export function tempDirScope(): AsyncDisposable {
  return { [Symbol.asyncDispose]: removeTempDirs };
}
