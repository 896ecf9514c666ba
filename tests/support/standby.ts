/**
 * A physical standby of a test cluster, set up as PostgreSQL 17 needs it to
 * synchronize failover slots: a physical slot on the primary
 * (`primary_slot_name`), `hot_standby_feedback`, `sync_replication_slots` and a
 * `dbname` in `primary_conninfo`; optionally listed in the primary's
 * `synchronized_standby_slots`. The embedded server packages have no
 * pg_basebackup, so the standby starts from a copy of the primary's data
 * directory taken while the primary is briefly stopped (a clean shutdown
 * leaves nothing to recover). The standby listens on its own free port and
 * is removed with its directory by `await using`, also when setting it up
 * fails.
 */
import postgres from "postgres";
import { freePort, LocalCluster } from "../../lib/pg/local_cluster.ts";
import { TestCluster } from "./cluster.ts";
import { waitFor } from "./kvsz.ts";
import { makeTempDir } from "./temp_dirs.ts";

/** Options of {@link startStandby}. */
export interface StandbyOptions {
  /** Name of the standby's physical slot on the primary (default `kvsz_standby`). */
  slot?: string;
  /** List that slot in the primary's `synchronized_standby_slots` (default true). */
  synchronized?: boolean;
}

/** Makes, starts and returns a streaming standby of `primary`. */
export async function startStandby(
  primary: TestCluster,
  opts: StandbyOptions = {},
): Promise<TestCluster> {
  const slot = opts.slot ?? "kvsz_standby";
  const server = primary.server;
  const admin = postgres(primary.url(), { max: 1, onnotice: () => {} });
  const dir = await makeTempDir(`kvsz-pg${server.major}-standby-`);
  const standby = new LocalCluster({
    major: server.major,
    port: freePort(),
    password: server.password,
    dir,
    binDir: server.binDir,
    runAs: server.runAs,
  });
  try {
    await admin.unsafe(`SELECT pg_create_physical_replication_slot($1, true)`, [slot]);
    await server.stop("fast");
    try {
      await command("cp", ["-a", `${server.dir}/data`, `${dir}/data`]);
    } finally {
      await server.start();
    }
    // The copy must not start with the primary's slots.
    for await (const entry of Deno.readDir(`${dir}/data/pg_replslot`)) {
      await Deno.remove(`${dir}/data/pg_replslot/${entry.name}`, { recursive: true });
    }
    await Deno.writeTextFile(`${dir}/data/standby.signal`, "");
    await standby.configure({
      port: standby.port,
      unix_socket_directories: dir,
      primary_conninfo:
        `host=${server.dir} port=${server.port} user=postgres dbname=postgres application_name=${slot}`,
      primary_slot_name: slot,
      hot_standby_feedback: "on",
      sync_replication_slots: "on",
    });
    if (server.runAs) await command("chown", ["-R", server.runAs, dir]);
    await standby.start();
    if (opts.synchronized ?? true) {
      await admin.unsafe(`ALTER SYSTEM SET synchronized_standby_slots = '${slot}'`);
      await admin.unsafe(`SELECT pg_reload_conf()`);
    }
    await waitFor(async () => {
      const [r] = await admin.unsafe(
        `SELECT active FROM pg_replication_slots WHERE slot_name = $1`,
        [slot],
      );
      return r?.active === true;
    }, { what: `the standby streaming from slot ${slot}`, timeoutMs: 60_000 });
    return new TestCluster(standby);
  } catch (e) {
    await standby.destroy();
    throw e;
  } finally {
    await admin.end({ timeout: 1 });
  }
}

/**
 * Waits until the standby's copy of logical slot `name` is synchronized,
 * persistent (usable after a promotion) and confirmed at least up to `lsn`.
 * `primary`, when given, logs a snapshot of running transactions now and
 * then: the slot's restart_lsn moves (and the standby's copy with it) only
 * past one of those, which the server otherwise writes every 15 s.
 */
export async function waitForSyncedSlot(
  standby: postgres.Sql,
  name: string,
  lsn: string,
  primary?: postgres.Sql,
): Promise<void> {
  let last: unknown = null;
  let polls = 0;
  await waitFor(async () => {
    if (primary && polls++ % 10 === 0) await primary.unsafe(`SELECT pg_log_standby_snapshot()`);
    const [r] = await standby.unsafe(
      `SELECT synced, NOT temporary AS persistent, confirmed_flush_lsn::text AS confirmed,
              synced AND NOT temporary AND confirmed_flush_lsn >= $2::pg_lsn AS ready
         FROM pg_replication_slots WHERE slot_name = $1`,
      [name, lsn],
    );
    last = r ?? null;
    return r?.ready === true;
  }, {
    what: `the standby's copy of slot ${name} synchronized up to ${lsn}`,
    timeoutMs: 120_000,
    context: () => JSON.stringify(last),
  });
}

async function command(program: string, args: string[]): Promise<void> {
  const out = await new Deno.Command(program, { args, stdout: "piped", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${program} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}
