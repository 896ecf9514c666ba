/**
 * The tenants scenario's two sides on CPUs of their own, as on two machines.
 *
 * On one small machine the source server's walsenders (one per tenant, each
 * reading every tenant's WAL) take most of the CPU under load, and every
 * PostgreSQL backend is a scheduling group of its own (it calls setsid: the
 * kernel's autogroups share the CPU between sessions, not processes). One
 * kvsz process beside 200 walsenders would then get a two-hundredth of what
 * is left where native's 200 apply workers get 200 shares: the benchmark would
 * measure the scheduler, not the engines. In production the source server is
 * another machine. So the allowed CPUs are split in two halves: the source
 * server and its load (the benchmark process) on the first, the destination
 * server and the engine (kvsz, or native's workers inside the destination
 * server) on the second; the same for both engines.
 */
import { say } from "../util.ts";

/** The CPU lists (as `taskset -c` takes them) of the two sides. */
export interface CpuSplit {
  source: string;
  destination: string;
  /** Every CPU allowed at the start (the benchmark process goes back to it). */
  all: string;
}

/** The split of the CPUs this process may use; null with fewer than two or without `taskset`. */
export async function cpuSplit(): Promise<CpuSplit | null> {
  const status = await Deno.readTextFile("/proc/self/status").catch(() => "");
  const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1];
  if (!list || !(await taskset(["-V"]))) return null;
  const cpus = list.split(",").flatMap((part) => {
    const [a, b] = part.split("-").map(Number);
    return Array.from({ length: (b ?? a) - a + 1 }, (_, i) => a + i);
  });
  if (cpus.length < 2) return null;
  const half = Math.floor(cpus.length / 2);
  return {
    source: cpus.slice(0, half).join(","),
    destination: cpus.slice(half).join(","),
    all: list,
  };
}

/**
 * Pins `pid` (every thread) and its child processes to `cpus`; processes it
 * forks later inherit it (a postmaster's backends and workers).
 */
export async function pinTree(pid: number, cpus: string): Promise<void> {
  const children = await new Deno.Command("pgrep", { args: ["-P", String(pid)], stdout: "piped" })
    .output().then((o) => new TextDecoder().decode(o.stdout).split(/\s+/).filter(Boolean));
  for (const p of [String(pid), ...children]) {
    if (!(await taskset(["-a", "-p", "-c", cpus, p]))) say(`  tenants: could not pin ${p}`);
  }
}

/** The postmaster's pid of the server whose data directory is `dataDir`. */
export async function postmasterPid(dataDir: string): Promise<number> {
  const text = await Deno.readTextFile(`${dataDir}/postmaster.pid`);
  return Number(text.split("\n")[0]);
}

async function taskset(args: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command("taskset", { args, stdout: "null", stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}
