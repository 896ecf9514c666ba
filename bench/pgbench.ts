/** Runs pgbench (initialisation and loads) as a child process that cleanup can stop. */
import { onCleanup } from "./cleanup.ts";
import { now } from "./util.ts";

/** What a pgbench run printed and measured. */
export interface PgbenchResult {
  /** Transactions per second as pgbench reports it (without connection time). */
  tps: number | null;
  /** Transactions processed. */
  transactions: number | null;
  seconds: number;
  output: string;
}

/** Runs `pgbench <args> <url>`; throws with its output when it fails. */
export async function pgbench(binary: string, url: string, args: string[]): Promise<PgbenchResult> {
  const started = now();
  const child = new Deno.Command(binary, {
    args: [...args, url],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    env: { PGAPPNAME: "kvsz-bench-pgbench" },
  }).spawn();
  const unregister = onCleanup(`pgbench ${child.pid}`, async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* exited */ }
    await child.status;
  });
  try {
    const out = await child.output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (!out.success) {
      throw new Error(`pgbench ${args.join(" ")} failed (exit ${out.code}):\n${text.slice(-3000)}`);
    }
    const tps = text.match(/tps = ([\d.]+) \((?:without|excluding)/);
    const processed = text.match(/number of transactions actually processed: (\d+)/);
    return {
      tps: tps ? Number(tps[1]) : null,
      transactions: processed ? Number(processed[1]) : null,
      seconds: (now() - started) / 1000,
      output: text,
    };
  } finally {
    unregister();
  }
}

/** Creates the pgbench tables at `scale` (100,000 accounts per unit), logged, with keys. */
export async function pgbenchInit(binary: string, url: string, scale: number): Promise<void> {
  await pgbench(binary, url, ["-i", "-q", "-s", String(scale)]);
}

/**
 * The tpcb-like load: `transactions` in total over `clients` clients (3 UPDATEs
 * and 1 INSERT each), no vacuum first (pgbench's vacuum would truncate pgbench_history).
 */
export async function pgbenchLoad(
  binary: string,
  url: string,
  transactions: number,
  clients = 4,
): Promise<PgbenchResult> {
  const perClient = Math.max(1, Math.round(transactions / clients));
  return await pgbench(binary, url, [
    ...tpcbArgs(clients),
    "-t",
    String(perClient),
  ]);
}

/** pgbench's built-in tpcb-like script, prepared, with `clients` clients on up to 2 threads. */
export function tpcbArgs(clients: number): string[] {
  return [
    "-n",
    "-b",
    "tpcb-like",
    "-M",
    "prepared",
    "-c",
    String(clients),
    "-j",
    String(Math.min(clients, 2)),
  ];
}

/** A steady tpcb-like load at `rate` transactions per second for `seconds`. */
export async function pgbenchRate(
  binary: string,
  url: string,
  rate: number,
  seconds: number,
  clients = 4,
): Promise<PgbenchResult> {
  return await pgbench(binary, url, [
    ...tpcbArgs(clients),
    "-R",
    String(Math.round(rate)),
    "-T",
    String(seconds),
  ]);
}
