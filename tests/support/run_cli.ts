/** Runs the `kvsz` CLI as a subprocess (`deno run -A main.ts ...`), the way a user does. */

/** What a CLI run printed and returned. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr together, for "never prints X" assertions. */
  output: string;
}

/** Root of the repository (where main.ts lives). */
export const REPO_ROOT = new URL("../../", import.meta.url).pathname;

/**
 * Runs `kvsz ...args` in a fresh process with `env` added to a clean
 * environment (PATH, HOME and Deno's cache settings are kept), from `cwd`
 * (default: the repository root). Killed after `timeoutMs` (default 60 s).
 */
export async function runCli(
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  const keep = [
    "PATH",
    "HOME",
    "DENO_DIR",
    "KVSZ_PG_BIN",
    "KVSZ_PG_CACHE",
    "TMPDIR",
    "XDG_CACHE_HOME",
  ];
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const k of keep) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: kvszArgs(args),
    cwd: opts.cwd ?? REPO_ROOT,
    env: { ...env, ...opts.env },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, opts.timeoutMs ?? 60_000);
  try {
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    return { code: out.code, stdout, stderr, output: stdout + stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** A config file in its own temporary directory; `await using` removes the directory. */
export interface TempConfig extends AsyncDisposable {
  dir: string;
  path: string;
}

/** Writes `text` to `kvsz.yaml` in a new temporary directory. */
export async function tempConfig(text: string): Promise<TempConfig> {
  const dir = await Deno.makeTempDir({ prefix: "kvsz-cfg-" });
  const path = `${dir}/kvsz.yaml`;
  await Deno.writeTextFile(path, text);
  return {
    dir,
    path,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }).catch(() => {}),
  };
}

/** The arguments after `deno` that run the kvsz CLI from this checkout with `args`. */
export function kvszArgs(args: string[]): string[] {
  return [
    "run",
    "-A",
    "--quiet",
    "--config",
    `${REPO_ROOT}deno.json`,
    `${REPO_ROOT}main.ts`,
    ...args,
  ];
}
