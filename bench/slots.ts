/**
 * Replication slots on the benchmark's source server: dropping them (also at
 * cleanup, when a run fails) and reading the CPU of the walsenders that
 * stream them.
 */
import { onCleanup } from "./cleanup.ts";
import type { Server } from "./servers.ts";
import { processCpuSeconds, say, sleep } from "./util.ts";

const registered = new Set<string>();

/**
 * Drops `slot` on `server` when the benchmark exits (success or failure), if
 * it still exists. Registered once per server and slot name; the rounds drop
 * and recreate slots themselves, this only catches what a failure left.
 */
export function dropSlotAtCleanup(server: Server, slot: string): void {
  const key = `${server.name}\0${slot}`;
  if (registered.has(key)) return;
  registered.add(key);
  onCleanup(
    `slot ${slot} on the ${server.name} server`,
    () => server.stopped ? undefined : dropSlot(server, slot, 10_000),
  );
}

/**
 * Drops a slot if it exists; a walsender still holding it is terminated first
 * (a subscription's apply worker may reconnect, hence the retries).
 */
export async function dropSlot(server: Server, slot: string, timeoutMs = 60_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const rows = await server.sql().unsafe(
      `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`,
      [slot],
    );
    if (rows.length === 0) return;
    try {
      if (rows[0].active_pid) {
        await server.sql().unsafe(`SELECT pg_terminate_backend($1, 5000)`, [rows[0].active_pid]);
      }
      await server.sql().unsafe(`SELECT pg_drop_replication_slot($1)`, [slot]);
      return;
    } catch (e) {
      if (performance.now() > deadline) {
        say(`warning: could not drop slot ${slot}: ${(e as Error).message}`);
        return;
      }
      await sleep(100);
    }
  }
}

/** CPU seconds (total and in the kernel) and lifetime of a walsender. */
export interface WalsenderCpu {
  cpu: number;
  system: number;
  lifetime: number;
}

/** CPU seconds and lifetime of the walsenders streaming `slots`, summed; null when none runs. */
export async function walsenderCpu(server: Server, slots: string[]): Promise<WalsenderCpu | null> {
  const rows = await server.sql().unsafe(
    `SELECT r.pid FROM pg_stat_replication r
       JOIN pg_replication_slots s ON s.active_pid = r.pid
      WHERE s.slot_name = ANY($1::text[])`,
    [slots],
  );
  if (rows.length === 0) return null;
  let cpu = 0;
  let system = 0;
  let lifetime = 0;
  let found = 0;
  for (const { pid } of rows) {
    const c = processCpuSeconds(pid);
    const k = processSystemCpuSeconds(pid);
    const l = processLifetimeSeconds(pid);
    if (c === null || k === null || l === null) continue;
    cpu += c;
    system += k;
    lifetime += l;
    found++;
  }
  return found ? { cpu, system, lifetime } : null;
}

/** CPU seconds process `pid` spent in the kernel (stime), or null when it is gone. */
export function processSystemCpuSeconds(pid: number): number | null {
  const f = statFields(pid);
  return f ? Number(f[12]) / CLOCK_TICKS : null; // field 15: stime
}

const CLOCK_TICKS = 100; // USER_HZ on Linux

/** Seconds since process `pid` started (/proc/<pid>/stat starttime against /proc/uptime). */
export function processLifetimeSeconds(pid: number): number | null {
  const fields = statFields(pid);
  if (!fields) return null;
  const start = Number(fields[19]) / CLOCK_TICKS; // field 22: starttime
  const uptime = Number(Deno.readTextFileSync("/proc/uptime").split(" ")[0]);
  return uptime - start;
}

/** Fields of /proc/<pid>/stat from the third (state) on; null when the process is gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may contain spaces: fields start after the last ')'.
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}
