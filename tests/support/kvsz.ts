/** Runs kvsz as a real process in tests, writes configs, and waits for conditions. */
import { stringify } from "yaml";
import type { Sql } from "../../lib/pg/connect.ts";
import { makeTempDir } from "./temp_dirs.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A running `kvsz` subprocess with its output collected. */
export class KvszProcess implements AsyncDisposable {
  #child: Deno.ChildProcess;
  #output = "";
  #status: Promise<Deno.CommandStatus>;
  #done: Promise<void>;

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this.#output += decoder.decode(chunk, { stream: true });
    };
    this.#done = Promise.all([collect(child.stdout), collect(child.stderr)]).then(() => {});
    this.#status = child.status;
  }

  /** Starts `kvsz <args>`. */
  static start(args: string[], env: Record<string, string> = {}): KvszProcess {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...args],
      env: { NO_COLOR: "1", ...env },
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
    }).spawn();
    return new KvszProcess(child);
  }

  /** Process id of the kvsz subprocess. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Everything printed so far (stdout and stderr interleaved by arrival). */
  get output(): string {
    return this.#output;
  }

  /** Waits until the output (from character `since` on) matches `pattern`. */
  async waitForOutput(pattern: RegExp, timeoutMs = 60_000, since = 0): Promise<void> {
    await waitFor(() => pattern.test(this.#output.slice(since)), {
      timeoutMs,
      what: `kvsz output matching ${pattern}`,
      context: () => this.#output.slice(-3000),
    });
  }

  /** Sends a signal and waits for exit; returns the exit code. */
  async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 60_000): Promise<number> {
    try {
      this.#child.kill(signal);
    } catch { /* already exited */ }
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* gone */ }
    }, timeoutMs);
    const status = await this.#status;
    clearTimeout(timer);
    await this.#done;
    return status.code;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

/**
 * Writes `config` as YAML into a new temp dir; returns the file path. The dir
 * is removed when the test ends (see `tests/support/temp_dirs.ts`).
 */
export async function writeConfig(config: unknown): Promise<string> {
  const dir = await makeTempDir("kvsz-test-");
  const path = `${dir}/kvsz.yaml`;
  await Deno.writeTextFile(path, stringify(config));
  return path;
}

/** Polls `check` until it returns true (or a truthy value), failing after `timeoutMs`. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  opts: { timeoutMs?: number; what?: string; context?: () => string | Promise<string> } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let lastError: unknown = null;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      lastError = e;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const ctx = opts.context ? `\n--- context ---\n${await opts.context()}` : "";
  throw new Error(
    `timed out waiting for ${opts.what ?? "condition"}${
      lastError ? ` (last error: ${(lastError as Error).message})` : ""
    }${ctx}`,
  );
}

/** All rows of a table as JSON text lines, sorted, for exact comparison across servers. */
export async function tableRows(
  sql: Sql,
  table: string,
  columns = "*",
  where = "true",
): Promise<string[]> {
  const rows = await sql.unsafe(
    `SELECT row_to_json(x)::text AS j FROM (SELECT ${columns} FROM ${table} WHERE ${where}) x`,
  );
  return rows.map((r) => r.j as string).sort();
}

/** Waits until two queries' rows are equal; on timeout shows the difference. */
export async function waitForEqualRows(
  a: () => Promise<string[]>,
  b: () => Promise<string[]>,
  opts: { timeoutMs?: number; what?: string; kvsz?: KvszProcess } = {},
): Promise<void> {
  let last: [string[], string[]] = [[], []];
  await waitFor(async () => {
    last = [await a(), await b()];
    return JSON.stringify(last[0]) === JSON.stringify(last[1]);
  }, {
    timeoutMs: opts.timeoutMs ?? 60_000,
    what: opts.what ?? "equal rows",
    context: () => {
      const [x, y] = last;
      const onlyA = x.filter((r) => !y.includes(r)).slice(0, 10);
      const onlyB = y.filter((r) => !x.includes(r)).slice(0, 10);
      return `source ${x.length} rows, destination ${y.length} rows\nonly in source: ${
        onlyA.join("\n")
      }\nonly in destination: ${onlyB.join("\n")}\n${opts.kvsz?.output.slice(-3000) ?? ""}`;
    },
  });
}
