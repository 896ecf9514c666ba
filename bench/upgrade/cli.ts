/** Runs a kvsz command (`switchover`, `verify`) as a child process that cleanup can stop. */
import { onCleanup } from "../cleanup.ts";
import { now } from "../util.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** What a kvsz command printed, its exit code, and its monotonic start and end (ms). */
export interface CliResult {
  code: number;
  stdout: string;
  output: string;
  startedAt: number;
  endedAt: number;
}

/** `deno run -A main.ts <args>`, killed after `timeoutMs`. */
export async function runKvsz(args: string[], timeoutMs = 600_000): Promise<CliResult> {
  const startedAt = now();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const kill = () => {
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
  };
  const unregister = onCleanup(`kvsz ${args[0]} ${child.pid}`, async () => {
    kill();
    await child.status;
  }, kill);
  const timer = setTimeout(kill, timeoutMs);
  try {
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    return {
      code: out.code,
      stdout,
      output: stdout + new TextDecoder().decode(out.stderr),
      startedAt,
      endedAt: now(),
    };
  } finally {
    clearTimeout(timer);
    unregister();
  }
}
