/**
 * The two PostgreSQL servers of the benchmark (source and destination, same
 * major and identical settings), SQL clients on them, and pgbench.
 */
import postgres from "postgres";
import { LocalCluster, startLocalCluster } from "../lib/pg/local_cluster.ts";
import { onCleanup } from "./cleanup.ts";
import { say } from "./util.ts";

/** A porsager client (values parsed the default way; the bench only reads numbers and text). */
export type Sql = postgres.Sql;

/** Settings given to both servers, so neither engine gets a better-tuned one. */
export const SERVER_SETTINGS: Record<string, string | number> = {
  shared_buffers: "256MB",
  max_wal_size: "4GB",
  checkpoint_timeout: "30min",
  max_connections: 150,
  max_wal_senders: 30,
  max_replication_slots: 30,
  max_logical_replication_workers: 4,
  max_sync_workers_per_subscription: 2,
  // Exact commit times of the latency ticks on both sides.
  track_commit_timestamp: "on",
};

/** One server with cached clients per database. */
export class Server {
  #clients = new Map<string, Sql>();
  /** Set once the server is stopped for good (cleanups of its slots then have nothing to do). */
  stopped = false;
  constructor(readonly name: string, readonly cluster: LocalCluster) {}

  /** Connection URL of `db` as the superuser, over plain TCP (sslmode=disable). */
  url(db = "postgres"): string {
    return `${this.cluster.url(db)}?sslmode=disable`;
  }

  /** Connection URL of `db` as the superuser over TLS (sslmode=require), once {@link enableTls} ran. */
  tlsUrl(db = "postgres"): string {
    return `${this.cluster.url(db)}?sslmode=require`;
  }

  /** Turns TLS on with a self-signed certificate made by `openssl` (for the TLS scenario). */
  async enableTls(): Promise<void> {
    const data = `${this.cluster.dir}/data`;
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        `${data}/server.key`,
        "-out",
        `${data}/server.crt`,
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
      ],
      stdout: "null",
      stderr: "piped",
    }).output().catch((e) => {
      throw new Error(`the TLS scenario needs openssl: ${e.message}`);
    });
    if (!out.success) throw new Error(`openssl failed: ${new TextDecoder().decode(out.stderr)}`);
    await Deno.chmod(`${data}/server.key`, 0o600);
    if (this.cluster.runAs) {
      await new Deno.Command("chown", {
        args: [this.cluster.runAs, `${data}/server.key`, `${data}/server.crt`],
      }).output();
    }
    await this.cluster.configure({ ssl: "on" });
    await this.sql().unsafe("SELECT pg_reload_conf()");
  }

  /** A client on `db` (one connection, reused). */
  sql(db = "postgres"): Sql {
    let c = this.#clients.get(db);
    if (!c) {
      c = postgres(this.url(db), {
        max: 1,
        onnotice: () => {},
        idle_timeout: 0,
        connection: { application_name: "kvsz-bench" },
      });
      this.#clients.set(db, c);
    }
    return c;
  }

  /** Runs `task` on a connection of its own to `db`, closed afterwards (not cached). */
  async withSession<T>(db: string, task: (sql: Sql) => Promise<T>): Promise<T> {
    const sql = postgres(this.url(db), {
      max: 1,
      onnotice: () => {},
      connection: { application_name: "kvsz-bench" },
    });
    try {
      return await task(sql);
    } finally {
      await sql.end({ timeout: 2 });
    }
  }

  /** Closes the client on `db` (before the database is dropped). */
  async close(db: string): Promise<void> {
    const c = this.#clients.get(db);
    this.#clients.delete(db);
    await c?.end({ timeout: 2 });
  }

  /** Closes every client. */
  async closeAll(): Promise<void> {
    await Promise.all([...this.#clients.keys()].map((db) => this.close(db)));
  }

  /** Drops `db` if it exists (terminating its sessions) and creates it empty. */
  async recreateDatabase(db: string): Promise<void> {
    await this.close(db);
    await this.sql().unsafe(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    await this.sql().unsafe(`CREATE DATABASE "${db}"`);
  }

  /** Current WAL insert position as text. */
  async currentLsn(): Promise<string> {
    const [r] = await this.sql().unsafe(`SELECT pg_current_wal_lsn()::text AS l`);
    return r.l;
  }
}

/** Starts the source and destination servers (PostgreSQL `major`), stopped at cleanup. */
export async function startServers(major: number): Promise<{ source: Server; dest: Server }> {
  const source = (await startServer("source", major, SERVER_SETTINGS)).server;
  const dest = (await startServer("destination", major, SERVER_SETTINGS)).server;
  return { source, dest };
}

/**
 * Starts one throwaway server with `settings`, registered for cleanup (also
 * on an abrupt exit: `pg_ctl stop -m immediate`); `stop()` destroys it early.
 */
export async function startServer(
  name: string,
  major: number,
  settings: Record<string, string | number>,
): Promise<{ server: Server; stop(): Promise<void> }> {
  const cluster = await startLocalCluster({ major, settings });
  const server = new Server(name, cluster);
  const destroy = async () => {
    server.stopped = true;
    await server.closeAll().catch(() => {});
    await cluster.destroy();
  };
  const unregister = onCleanup(`${name} server`, destroy, () => stopServerSync(server));
  say(`${name} server: PostgreSQL ${major} on port ${cluster.port} (${cluster.dir})`);
  return {
    server,
    async stop() {
      await destroy();
      unregister();
    },
  };
}

/** Stops a server synchronously (pg_ctl stop -m immediate) and removes its directory. */
export function stopServerSync(server: Server): void {
  const c = server.cluster;
  try {
    Deno.statSync(`${c.dir}/data/postmaster.pid`);
  } catch {
    return; // already stopped
  }
  const pgCtl = [`${c.binDir}/pg_ctl`, "-D", `${c.dir}/data`, "stop", "-m", "immediate", "-w"];
  const [program, ...args] = c.runAs ? ["runuser", "-u", c.runAs, "--", ...pgCtl] : pgCtl;
  new Deno.Command(program, { args, stdout: "null", stderr: "null", cwd: "/tmp" }).outputSync();
  Deno.removeSync(c.dir, { recursive: true });
}

/**
 * Finds pgbench (on PATH or in /usr/lib/postgresql/<n>/bin); when missing and
 * running as root, installs Debian's postgresql-client with apt-get and says so.
 */
export async function findPgbench(): Promise<string> {
  const found = await locatePgbench();
  if (found) return found;
  if (Deno.uid() !== 0) {
    throw new Error(
      "pgbench not found: install the PostgreSQL client tools (Debian/Ubuntu: apt-get install postgresql-client)",
    );
  }
  say("pgbench not found: installing postgresql-client with apt-get");
  for (const args of [["update"], ["install", "-y", "postgresql-client"]]) {
    const out = await new Deno.Command("apt-get", {
      args,
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(
        `apt-get ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr).slice(-2000)}`,
      );
    }
  }
  const installed = await locatePgbench();
  if (!installed) throw new Error("postgresql-client installed, but pgbench is still not found");
  return installed;
}

async function locatePgbench(): Promise<string | null> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (dir && await isFile(`${dir}/pgbench`)) return `${dir}/pgbench`;
  }
  try {
    const versions = [];
    for await (const e of Deno.readDir("/usr/lib/postgresql")) versions.push(e.name);
    versions.sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const p = `/usr/lib/postgresql/${v}/bin/pgbench`;
      if (await isFile(p)) return p;
    }
  } catch { /* no system PostgreSQL */ }
  return null;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** `pgbench --version` output, e.g. "pgbench (PostgreSQL) 15.18". */
export async function pgbenchVersion(pgbench: string): Promise<string> {
  const out = await new Deno.Command(pgbench, { args: ["--version"], stdout: "piped" }).output();
  return new TextDecoder().decode(out.stdout).trim();
}
